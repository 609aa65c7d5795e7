#!/usr/bin/env bash
# The laptop-scale studies of docs/results.md, in order; each line is one `tunedcl sweep` (3 seeds).
#   bash studies/laptop.sh [OUT]        (default OUT: runs/studies; about 65 minutes of training and 10 of
#                                        evaluation on the 2-core CPU of docs/results.md)
# Restartable: finished runs are skipped, cut-off ones resumed. --reuse links a run whose exact config
# already finished in an earlier study (the shared base points) instead of training it again.
set -euo pipefail
# One block, read whole before it runs: a study runs for hours, and bash reads a script as it goes, so an edit
# of this file (a git checkout) would otherwise run from the middle of a line.
{
OUT=${1:-runs/studies}
TUNEDCL=${TUNEDCL:-.venv/bin/tunedcl}
BASE=(--config study-fashion-mnist --seeds 3)
mkdir -p "$OUT"

study() {  # study NAME ARGS...: one sweep, timed
    local name=$1 start=$SECONDS
    shift
    echo "== $name: $(date -u +%FT%TZ)"
    "$TUNEDCL" sweep "${BASE[@]}" --out "$OUT/$name" --reuse "$OUT" "$@"
    echo "== $name: $((SECONDS - start)) s"
}

# (a) supervised: cross-entropy vs SupCon vs TCL (k1 = 5000, k2 = 1), equal epochs and batch
study a-supervised --grid loss.method=ce,supcon,tcl
# (a') cross-entropy at equal compute: it sees one view per image, so twice the epochs
study a-ce-equal-compute --grid train.epochs=12 loss.method=ce
# (c) Figure 3: top-1 and gradients against k1 (k1 = 0 is SupCon L_out exactly)
study c-k1 --grid loss.k1=0,10,100,1000,5000,50000,100000
# (c') Figure 3: the push from negatives at (k1, k2) = (50000, 1) and (50000, 3)
study c-k2 --grid loss.k1=50000 loss.k2=1,3
# (e) the k1 term with and without the temperature: k1 exp(-s) vs k1 exp(-s/tau)
study e-k1-temperature --grid loss.k1_uses_temperature=false,true loss.k1=10,100,5000
# (d) Figure 2: SupCon vs TCL across batch size, projector dimension and augmentation
study d-batch --grid loss.method=supcon,tcl train.batch_size=64,128,256,512
study d-projector --grid loss.method=supcon,tcl model.projection_dim=64,128,256
study d-augment --grid loss.method=supcon,tcl data.augment=crop-flip,simaug,autoaug
# (b) self-supervised: nine methods at their own recipes and TCL-SSL's controls, in studies/ssl_comparison.sh
# (d) Figure 2, encoder: a narrow ResNet-18 (width 0.25: 16-128 channels); the small CNN is in a-supervised
study d-encoder-resnet18 --grid loss.method=supcon,tcl model.encoder=resnet18 model.width=0.25
# (e') the tempered k1 term at the scale where it is no longer negligible (e^{-s/tau} ~ 1e-4 at s = 0.93)
study e-k1-temperature-large --grid loss.k1_uses_temperature=true loss.k1=1000000,100000000
# Embedding geometry (alignment, uniformity, tolerance of 2,000 test features) of every run: a
# re-evaluation of its checkpoint (kNN and the linear probe come out identical), then every summary again
for run in "$OUT"/*/*/seed*; do
    [ -L "$run" ] || grep -q '"tolerance"' "$run/results.json" || "$TUNEDCL" eval "$run" eval.geometry=true >/dev/null
done
"$TUNEDCL" report "$OUT"/*/ >/dev/null
echo "== all studies done: $(date -u +%FT%TZ)"
exit
}
