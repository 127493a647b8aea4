#!/usr/bin/env bash
# The real-UTKFace CPU study behind results/utkface-cpu/ (see experiments/utkface-cpu.toml).
# Several `mtlbench run` invocations into ONE experiment, so a crash loses one group only;
# `mtlbench report` then reads every trial back from MLflow. Run from the repository root:
#
#   mkdir -p /work/utk-study
#   STUDY=/work/utk-study setsid nohup experiments/utkface-cpu.sh > /work/utk-study/study.log 2>&1 &
#
# Re-running it after a crash skips the groups that finished (their .done marker in
# $STUDY/logs). STUDY holds the MLflow database, the decoded-image cache and one log per group; keep it
# outside the repository (the cache is derived from the images, whose licence forbids
# committing them).
set -euo pipefail
STUDY=${STUDY:-/work/utk-study}
URI="sqlite:///$STUDY/mlflow.db"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # leave the second core to everyone else
mkdir -p "$STUDY/logs"

# Create the experiment first so its artifacts land in $STUDY, not in ./mlruns.
python -P - "$URI" "$STUDY/artifacts" <<'PY'
import sys
from mlflow.tracking import MlflowClient
client = MlflowClient(sys.argv[1])
if client.get_experiment_by_name("utkface-cpu") is None:
    client.create_experiment("utkface-cpu", artifact_location=sys.argv[2])
PY

group() {  # group NAME [mtlbench run flags...]; a group that finished before is skipped
    local name=$1
    shift
    if [ -e "$STUDY/logs/$name.done" ]; then echo "skip $name (done before)"; return; fi
    echo "$(date -Is) start $name"
    if mtlbench run --config experiments/utkface-cpu.toml --tracking-uri "$URI" \
        --cache-dir "$STUDY/cache" --output "$STUDY/out/$name" "$@" > "$STUDY/logs/$name.log" 2>&1
    then
        echo "$(date -Is) end $name"
        touch "$STUDY/logs/$name.done"
    else
        echo "$(date -Is) FAILED $name (see $STUDY/logs/$name.log)"
    fi
}

# Single-task baselines first: delta-m needs them.
group stl --strategies stl
group loss --strategies sum,uncertainty,dwa
# The fixed-weight sweep (K=3 simplex grid without its vertices, which are stl, and without its
# centre 1,1,1, which is sum) at ONE learning rate: the one sum chose on validation.
SUM_LR=$(python -P - "$URI" <<'PY'
import sys
from mtlbench.report import tables as report
from mtlbench.tracking import load_trials
tidy = report.tidy_trials(load_trials(sys.argv[1], "utkface-cpu"))
chosen = report.choose_lr(tidy[tidy["strategy"] == "sum"])
print(f"{float(chosen['lr'].iloc[0]):g}")
PY
)
echo "sum chose lr=$SUM_LR on validation; the sweep uses it"
group sweep --lrs "$SUM_LR" \
    --strategies static:2,1,0,static:2,0,1,static:1,2,0,static:1,0,2,static:0,2,1,static:0,1,2
group gradient --strategies mgda_ub,pcgrad
group famo --strategies famo
# Second pass (the first took 59 min, leaving room in the 2-hour budget): the sweep at the grid's
# other learning rate too, so fixed weights are tuned on the same grid as every method, and
# three more methods.
OTHER_LR=0.001
[ "$SUM_LR" = 0.001 ] && OTHER_LR=0.0003  # the grid of experiments/utkface-cpu.toml
group sweep2 --lrs "$OTHER_LR" \
    --strategies static:2,1,0,static:2,0,1,static:1,2,0,static:1,0,2,static:0,2,1,static:0,1,2
group more --strategies db_mtl,imtl,gradnorm
mtlbench report utkface-cpu --tracking-uri "$URI" --output results/utkface-cpu
echo "$(date -Is) study done"
