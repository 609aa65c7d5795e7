#!/usr/bin/env bash
# The supervised studies of docs/results.md that can carry a verdict: every choice made on a validation split,
# 5 seeds where a verdict is drawn, paired differences, compact records committed as each stage ends.
#   bash studies/supervised.sh OUT STAGE...      stages, in order (each reads what `tune` chose):
#     tune       CE: lr; SupCon and TCL (k1 = 5000, k2 = 1): lr x tau; then TCL's k1 x k2 at its chosen lr, tau.
#                Validation: 1,000 images per class held out of Fashion-MNIST's 60,000 training images before the
#                study's 10,000 are drawn (data.validation), as large as the test set: with 100 per class, two
#                seeds of one point differed by up to 3.5 points on validation (0.2 on test), more than the grid
#                points differ. 2 seeds per grid point, select on the linear probe, then 5 seeds on test.
#     main       the three tuned methods at the main job's budget (60,000 images, 15 epochs), 5 seeds, with the
#                paper's probe protocol as well as the fast probe (eval.linear_probe=both)
#     budget     SupCon vs TCL, tuned, at 6, 12, 24 and 48 epochs of the study size, 5 seeds (about 2.5 h in fp32
#                on a 2-core Xeon without BF16/AMX; the 48-epoch point is half of it)
#     few        few positives: batch 16, 32, 64 at one number of steps, k1 in {0, 5000, 50000}; and training on
#                four groups of the ten classes (positives far apart), evaluated on the ten
#     animal     animal-mnist: CE / SupCon / TCL with the tuned values, and the k1 study, 5 seeds
#     stability  SupCon vs TCL across batch size at a fixed number of steps, projector size and augmentation
#                (randaug included), 5 seeds; measured by the spread across settings and the interaction
#                method x setting, with paired intervals
#     stability-lr  the batch axis of stability again, with SupCon at TCL's tuned lr and tau as a third arm and
#                as the baseline: is TCL steadier than SupCon at the same lr, or only than SupCon's own lr? 5 seeds
#     stability-lr-axes  the projector and augmentation axes of stability with the same three arms, 5 seeds
#                (LR_AXES=augment for one axis)
#     control    the A/A control: TCL's dense and chunked loss paths (the same function, computed differently), 5
#                seeds, paired like every comparison: what "no effect" looks like at this budget, on this machine
#                (CONTROL=control-NAME for a machine other than the first: one control per machine)
# Restartable: finished runs are skipped, cut-off ones resumed. Records go to docs/results/runs/<stage>-*/ with
# `tunedcl export`; `tunedcl report docs/results/runs/* --fill docs/results.md` rebuilds the tables.
# Machines: run a whole stage on one machine (its records name the CPU); never compare across stages' machines.
# What `tune` chose is committed as docs/results/chosen/<sweep>.json, so the later stages can run in another
# session, on another machine, without the tuning runs' folders.
set -euo pipefail
# One block, read whole before it runs: a study runs for hours, and bash reads a script as it goes, so an edit
# of this file (a git checkout) would otherwise run from the middle of a line.
{
OUT=${1:?usage: studies/supervised.sh OUT STAGE...}
shift
TUNEDCL=${TUNEDCL:-.venv/bin/tunedcl}
PYTHON=${PYTHON:-.venv/bin/python}
RECORDS=${RECORDS:-docs/results/runs}
CHOSEN=${CHOSEN:-docs/results/chosen}
SEEDS=${SEEDS:-5}
MAIN_SEEDS=${MAIN_SEEDS:-5}  # the main job's budget: 5 seeds
CONTROL=${CONTROL:-control}  # the A/A control's study name: one per machine
[[ $CONTROL =~ ^[A-Za-z0-9][A-Za-z0-9_-]*$ ]] || { echo "studies/supervised.sh: CONTROL must be a folder name \
(letters, digits, '-', '_'); got '$CONTROL'" >&2; exit 2; }
# EXTRA: overrides put before every run's own (a smoke test of this script: a tiny dataset, one epoch)
VAL=(data.validation=1000)
mkdir -p "$OUT"

sweep() {  # sweep NAME ARGS...: one tunedcl sweep under OUT/NAME, timed (PRESET: study-fashion-mnist)
    local name=$1 start=$SECONDS
    shift
    echo "== $name: $(date -u +%FT%TZ)"
    # shellcheck disable=SC2086 # EXTRA is words
    "$TUNEDCL" sweep --config "${PRESET:-study-fashion-mnist}" --out "$OUT/$name" ${EXTRA:-} "$@" >/dev/null
    echo "== $name: $((SECONDS - start)) s"
}
load_chosen() {  # CE, SUPCON, TCL: the overrides `tune` chose for each (lr, tau, k1, k2), as words. A plain
    # assignment, so under set -e a missing choice stops the script instead of running an untuned method.
    CE=$("$PYTHON" studies/chosen.py "$CHOSEN/tune-ce.json" ce --drop loss.method)
    SUPCON=$("$PYTHON" studies/chosen.py "$CHOSEN/tune-lr-tau.json" supcon --drop loss.method)
    TCL=$("$PYTHON" studies/chosen.py "$CHOSEN/tune-lr-tau.json" tcl --drop loss.method)
    TCL="$TCL $("$PYTHON" studies/chosen.py "$CHOSEN/tune-k1-k2.json" - --drop loss.method)"
    TCL_NO_K1=$(echo "$TCL" | sed 's/ loss.k1=[^ ]*//')  # for the stages that sweep k1 themselves
    # The k1 studies (few, animal-k1) run TCL's tuned lr at the paper's tau = 0.1 and k2 = 1. At a tuned tau of
    # 0.05 the untempered k1 term is inert: k1 e^{-s} against a positive's e^{s/tau} ~ e^{19} (s ~ 0.96) is a
    # ratio under 1e-4 even at k1 = 50,000 (the tuning runs log its share of D_i as 0.000).
    TCL_K1_STUDY="$TCL_NO_K1 loss.temperature=0.1 loss.k2=1"  # later overrides win
    # SupCon at TCL's chosen lr and tau (later overrides win): what is left of TCL - SupCon at equal lr
    SUPCON_AT_TCL_LR="$SUPCON $("$PYTHON" studies/chosen.py "$CHOSEN/tune-lr-tau.json" tcl --drop loss.method)"
    echo "== tuned: ce: $CE; supcon: $SUPCON; tcl: $TCL"
}
export_records() {  # export_records STUDY SWEEP...: commit-ready records of the named sweeps (the study's
    # earlier records are replaced, so a point that left the study leaves no stale record; git keeps the old)
    local study=$1
    shift
    rm -rf "${RECORDS:?}/$study"
    "$TUNEDCL" export "${@/#/$OUT/}" --to "$RECORDS/$study" >/dev/null
}
link_chosen() {  # link_chosen NAME SWEEP METHOD: OUT/a-tuned/NAME/base -> the point SWEEP chose for METHOD
    local point
    point=$("$PYTHON" studies/chosen.py "$OUT/$2/selected.json" "$3" --point)
    mkdir -p "$OUT/a-tuned/$1"
    ln -s "../../$2/selected/$point" "$OUT/a-tuned/$1/base"
}
tuned() {  # tuned METHOD: its chosen overrides (after load_chosen)
    case $1 in ce) echo "$CE" ;; supcon) echo "$SUPCON" ;; tcl) echo "$TCL" ;; esac
}
three_arms() {  # three_arms STUDY ARGS...: SupCon at TCL's lr and tau (the baseline), TCL and SupCon at their tuned
    # points, as sweeps OUT/STUDY-ARM with the same ARGS (after load_chosen)
    local study=$1 arm
    shift
    for arm in supcon-at-tcl-lr tcl supcon; do
        # shellcheck disable=SC2046,SC2086 # the overrides are words
        case $arm in
        supcon-at-tcl-lr) sweep "$study-$arm" loss.method=supcon $SUPCON_AT_TCL_LR "$@" ;;
        *) sweep "$study-$arm" loss.method=$arm $(tuned $arm) "$@" ;;
        esac
    done
}
# At a fixed number of steps (few, stability: batch axis) the warm-up must not be counted in epochs: batch 16
# would never leave a 1-epoch warm-up of 10,000 images in 234 steps. No warm-up there, for every batch size.
STEPS=(train.max_steps=234 optim.warmup_epochs=0)

for stage in "$@"; do
    [ "$stage" = tune ] || load_chosen
    case $stage in
    tune)
        sweep tune-ce "${VAL[@]}" --grid loss.method=ce optim.lr=0.03,0.1,0.3,1.0 --seeds 2 \
            --select-on linear --final-seeds "$SEEDS"
        sweep tune-lr-tau "${VAL[@]}" --grid loss.method=supcon,tcl optim.lr=0.03,0.1,0.3,1.0 \
            loss.temperature=0.05,0.1,0.2 --seeds 2 --select-on linear --final-seeds "$SEEDS"
        tcl_lr_tau=$("$PYTHON" studies/chosen.py "$OUT/tune-lr-tau/selected.json" tcl --drop loss.method)
        # shellcheck disable=SC2086 # the chosen overrides are words
        sweep tune-k1-k2 "${VAL[@]}" loss.method=tcl $tcl_lr_tau \
            --grid loss.k1=1000,5000,50000 loss.k2=1,2,3 --seeds 2 --select-on linear --final-seeds "$SEEDS"
        export_records tune tune-ce tune-lr-tau tune-k1-k2  # every grid point, with its validation numbers
        # The chosen points, on test with SEEDS seeds, as one study (paired by seed): ce, supcon, TCL with its own
        # lr and tau at the reference code's k1 = 5000, k2 = 1, and TCL with k1 and k2 chosen as well
        rm -rf "$OUT/a-tuned"
        link_chosen ce tune-ce ce
        link_chosen supcon tune-lr-tau supcon
        link_chosen tcl-k1-5000-k2-1 tune-lr-tau tcl
        link_chosen tcl tune-k1-k2 -
        export_records a-tuned a-tuned/ce a-tuned/supcon a-tuned/tcl-k1-5000-k2-1 a-tuned/tcl
        mkdir -p "$CHOSEN"
        for sweep in tune-ce tune-lr-tau tune-k1-k2; do cp "$OUT/$sweep/selected.json" "$CHOSEN/$sweep.json"; done
        ;;
    main)
        # Seed by seed, the methods in turn, records exported after each seed: a run here is about 25 minutes in
        # fp32 (15 epochs of 60,000 images, then the paper's 50-epoch probe), so a session cut off mid-stage
        # keeps paired seeds.
        for seeds in $(seq 1 "$MAIN_SEEDS"); do
            for method in ce supcon tcl; do
                # shellcheck disable=SC2046
                PRESET=default sweep "main-$method" loss.method=$method $(tuned $method) eval.linear_probe=both \
                    --seeds "$seeds"
            done
            export_records main main-ce main-supcon main-tcl
        done
        ;;
    budget)
        # One budget at a time, both methods, records exported after each: a session cut off mid-stage keeps
        # whole, paired budgets. The longest (48 epochs, half the stage) goes seed by seed, the methods
        # alternating, so a cut there still leaves paired seeds. A sweep's grid may grow: finished runs are kept.
        epochs=
        for budget in 6 12 24; do
            epochs=${epochs:+$epochs,}$budget
            for method in supcon tcl; do
                # shellcheck disable=SC2046
                sweep "budget-$method" loss.method=$method $(tuned $method) --grid train.epochs=$epochs --seeds "$SEEDS"
            done
            export_records budget budget-supcon budget-tcl
        done
        for seeds in $(seq 1 "$SEEDS"); do
            for method in supcon tcl; do
                # shellcheck disable=SC2046
                sweep "budget-$method" loss.method=$method $(tuned $method) --grid train.epochs=6,12,24,48 --seeds "$seeds"
            done
            export_records budget budget-supcon budget-tcl
        done
        ;;
    few)
        # 234 steps at every batch size (the base's 6 epochs of batch 256): fewer positives per anchor, same steps.
        # The lr scales with the batch (lr x B / 256, the linear rule for SGD): at the unscaled lr, batches of 16
        # and 32 with no warm-up collapsed in 3 of 30 runs and the rest scattered by up to 8.6 points of kNN.
        # shellcheck disable=SC2046
        sweep few-batch-scaled loss.method=tcl $TCL_K1_STUDY optim.lr_scaling=linear "${STEPS[@]}" \
            --grid train.batch_size=16,32,64 loss.k1=0,5000,50000 --seeds "$SEEDS"
        # Tops {T-shirt, pullover, coat, shirt}, {trouser, dress}, footwear {sandal, sneaker, ankle boot}, {bag}
        # shellcheck disable=SC2046
        sweep few-groups loss.method=tcl $TCL_K1_STUDY \
            "data.train_label_groups=[[0,2,4,6],[1,3],[5,7,9],[8]]" --grid loss.k1=0,5000,50000 --seeds "$SEEDS"
        export_records few few-batch-scaled few-groups
        ;;
    animal)
        for method in ce supcon tcl; do
            # shellcheck disable=SC2046
            sweep "animal-$method" data.dataset=animal-mnist data.per_class=null loss.method=$method \
                $(tuned $method) --seeds "$SEEDS"
        done
        # shellcheck disable=SC2046
        sweep animal-k1 data.dataset=animal-mnist data.per_class=null loss.method=tcl \
            $TCL_K1_STUDY --grid loss.k1=0,1000,5000,50000 --seeds "$SEEDS"
        export_records animal animal-ce animal-supcon animal-tcl
        export_records animal-k1 animal-k1
        ;;
    stability)
        # One axis at a time, both methods, its records exported when it ends: a session cut off mid-stage keeps
        # whole axes. The measure (`tunedcl report --baseline stability-AXIS-supcon`): per seed, the spread of each
        # method across the axis's settings, and the interaction (TCL - SupCon at a setting minus at the first
        # setting), each with its paired interval. The batch axis at a fixed number of steps, lr as in few.
        for axis in batch projector augment; do
            case $axis in
            batch) grid=(optim.lr_scaling=linear "${STEPS[@]}" --grid train.batch_size=64,128,256,512) ;;
            projector) grid=(--grid model.projection_dim=64,128,256) ;;
            augment) grid=(--grid data.augment=crop-flip,simaug,autoaug,randaug) ;;
            esac
            for method in supcon tcl; do
                # The base setting (batch 256 at 6 epochs, projector 128, crop-flip) is budget's 6-epoch run of the
                # same config: linked when this machine ran budget, not rerun (the batch axis differs: no warm-up).
                reuse=()
                [ -d "$OUT/budget-$method" ] && reuse=(--reuse "$OUT/budget-$method")
                # shellcheck disable=SC2046
                sweep "stability-$axis-$method" loss.method=$method $(tuned $method) "${grid[@]}" --seeds "$SEEDS" \
                    "${reuse[@]}"
            done
            export_records "stability-$axis" "stability-$axis-supcon" "stability-$axis-tcl"
            "$TUNEDCL" report "$RECORDS/stability-$axis" --baseline "stability-$axis-supcon" >/dev/null
        done
        ;;
    stability-lr)
        # stability's batch axis (same settings) on one machine, seed by seed, records after each seed. The
        # baseline is SupCon at TCL's lr: TCL minus it is the loss at equal lr, SupCon's own lr minus it the lr.
        for seeds in $(seq 1 "$SEEDS"); do
            three_arms stability-lr optim.lr_scaling=linear "${STEPS[@]}" --grid train.batch_size=64,128,256,512 \
                --seeds "$seeds"
            export_records stability-lr stability-lr-supcon-at-tcl-lr stability-lr-tcl stability-lr-supcon
            "$TUNEDCL" report "$RECORDS/stability-lr" --baseline stability-lr-supcon-at-tcl-lr >/dev/null
        done
        ;;
    stability-lr-axes)
        # stability's projector and augmentation axes (the study base otherwise: 6 epochs with a warm-up epoch) with
        # the three arms of stability-lr, seed by seed, records after each seed. The base setting (projector 128,
        # crop-flip) is one run per arm and seed: the augment sweeps link the projector sweeps' base runs (--reuse
        # looks in all three projector sweeps and links only a run of the identical config).
        for axis in ${LR_AXES:-projector augment}; do
            case $axis in
            projector | augment) ;;
            *) echo "studies/supervised.sh: LR_AXES holds '$axis'; allowed: projector, augment" >&2; exit 2 ;;
            esac
        done
        for seeds in $(seq 1 "$SEEDS"); do
            for axis in ${LR_AXES:-projector augment}; do
                case $axis in
                projector) grid=(--grid model.projection_dim=64,128,256) ;;
                augment) grid=(--grid data.augment=crop-flip,simaug,autoaug,randaug) ;;
                esac
                reuse=()
                for arm in supcon-at-tcl-lr tcl supcon; do
                    [ -d "$OUT/stability-lr-projector-$arm" ] && reuse+=("$OUT/stability-lr-projector-$arm")
                done
                three_arms "stability-lr-$axis" "${grid[@]}" --seeds "$seeds" ${reuse[@]+--reuse "${reuse[@]}"}
                export_records "stability-lr-$axis" "stability-lr-$axis-supcon-at-tcl-lr" "stability-lr-$axis-tcl" \
                    "stability-lr-$axis-supcon"
                "$TUNEDCL" report "$RECORDS/stability-lr-$axis" --baseline "stability-lr-$axis-supcon-at-tcl-lr" \
                    >/dev/null
            done
        done
        ;;
    control)
        # One control per machine (CONTROL names its study: control on the first machine, e.g. control-xeon on
        # another). budget's 6-epoch TCL runs, the same config, are linked, not rerun: run both stages on one
        # machine (run identity does not include the hardware).
        reuse=()
        [ -d "$OUT/budget-tcl" ] && reuse=(--reuse "$OUT/budget-tcl")
        # shellcheck disable=SC2046
        sweep "$CONTROL-aa" loss.method=tcl $TCL --grid loss.chunk_size=0,null --seeds "$SEEDS" "${reuse[@]}"
        export_records "$CONTROL" "$CONTROL-aa"
        "$TUNEDCL" report "$RECORDS/$CONTROL" --baseline loss.chunk_size=0 >/dev/null  # paired.md from the records
        ;;
    *)
        echo "studies/supervised.sh: unknown stage '$stage'; the stages are tune main budget few animal stability stability-lr stability-lr-axes control" >&2
        exit 2
        ;;
    esac
done
echo "== done: $(date -u +%FT%TZ)"
exit
}
