#!/usr/bin/env bash
# The real-UTKFace CPU study behind results/utkface-cpu/ (see experiments/utkface-cpu.toml).
# Several `mtlbench run` invocations into ONE experiment, so a crash loses one group only;
# `mtlbench report` then reads every trial back from MLflow. Run from the repository root:
#
#   STUDY=/work/utk-study setsid nohup experiments/utkface-cpu.sh > /work/utk-study/study.log 2>&1 &
#
# STUDY holds the MLflow database, the decoded-image cache and one log per group; keep it
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

group() {  # group NAME [mtlbench run flags...]
    local name=$1
    shift
    echo "$(date -Is) start $name"
    mtlbench run --config experiments/utkface-cpu.toml --tracking-uri "$URI" \
        --cache-dir "$STUDY/cache" --output "$STUDY/out/$name" "$@" > "$STUDY/logs/$name.log" 2>&1 \
        && echo "$(date -Is) end $name" || echo "$(date -Is) FAILED $name (see $STUDY/logs/$name.log)"
}

# Single-task baselines first: delta-m needs them.
group stl --strategies stl
group loss --strategies sum,uncertainty,dwa
# The fixed-weight sweep (K=3 simplex grid without its vertices, which are stl, and without its
# centre 1,1,1, which is sum) at ONE learning rate: the one sum chose on validation.
SUM_LR=$(python -P - "$URI" <<'PY'
import sys
from mtlbench import report
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
mtlbench report utkface-cpu --tracking-uri "$URI" --output results/utkface-cpu
echo "$(date -Is) study done"
