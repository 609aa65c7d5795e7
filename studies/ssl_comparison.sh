#!/usr/bin/env bash
# Study (b) of docs/results.md: TCL-SSL against SimCLR, MoCo v2, TCL-MoCo, BYOL, SimSiam, Barlow Twins, VICReg
# and SwAV at one equal budget, plus TCL-SSL's own controls (k1 sweep, three views at k1 = 0 and 5000).
#   bash studies/ssl_comparison.sh [OUT]     (default OUT: runs/ssl; about 2 h 20 min on a 2-core EPYC)
# Equal budget: all 60,000 Fashion-MNIST training images, EPOCHS epochs, batch 256, two SimAugment views,
# the small CNN; each method at its own preset's lr, optimizer, temperature and heads (tunedcl list presets).
# Seeds go round the methods (seed 0 of every method, then seed 1, ...), so a cut study still pairs.
# Restartable: finished runs are skipped, cut-off ones resumed.
set -euo pipefail
# One block, read whole before it runs: a study runs for hours, and bash reads a script as it goes, so an edit
# of this file (a git checkout) would otherwise run from the middle of a line.
{
OUT=${1:-runs/ssl}
TUNEDCL=${TUNEDCL:-.venv/bin/tunedcl}
EPOCHS=${EPOCHS:-3}
BUDGET=(train.epochs=$EPOCHS data.augment=simaug data.n_views=2 train.batch_size=256)
mkdir -p "$OUT"

run() {  # run NAME PRESET SEEDS ARGS...: one sweep point, timed
    local name=$1 preset=$2 seeds=$3 start=$SECONDS
    shift 3
    echo "== $name seeds<$seeds: $(date -u +%FT%TZ)"
    "$TUNEDCL" sweep --config "$preset" --seeds "$seeds" --out "$OUT/$name" "${BUDGET[@]}" "$@" >/dev/null
    echo "== $name seeds<$seeds: $((SECONDS - start)) s"
}

for seeds in 1 2 3; do
    run tcl-ssl ssl-fashion-mnist $seeds loss.method=tcl-ssl
    run simclr ssl-fashion-mnist $seeds loss.method=simclr
    for method in mocov2 tcl-moco byol simsiam barlow vicreg swav; do
        run $method $method-fashion-mnist $seeds
    done
done
# TCL-SSL's controls: k1 = 0 is SupCon's L_out with instance positives; the default k1 = 5000 is the run above
for seeds in 1 2 3; do
    run tcl-ssl-k1 ssl-fashion-mnist $seeds loss.method=tcl-ssl --grid loss.k1=0,100,1000,50000
    run tcl-ssl-3-views ssl-fashion-mnist $seeds loss.method=tcl-ssl data.n_views=3 \
        data.last_view_augment=crop-flip --grid loss.k1=0,5000
done
"$TUNEDCL" report "$OUT"/*/ >/dev/null
echo "== done: $(date -u +%FT%TZ)"
exit
}
