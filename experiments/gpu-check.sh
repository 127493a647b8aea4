#!/usr/bin/env bash
# Everything GPU-specific in one device call (issue 7, and results/utkface-gpu for issue 6).
# Prepare `.gpu/` here first with experiments/gpu-prepare.sh, then call the device tool with
#   command: bash experiments/gpu-check.sh     carry: [".gpu"]     timeout_s: 600
# Every step has a time cap and the whole script stops starting steps past DEADLINE_S, so the
# logs always come back. Results land in $OUT: summary.txt (one line per step: rc and seconds),
# one log per step, gpu-util.csv (nvidia-smi every second during the study), study.txt (the
# study's per-trial numbers from MLflow) and utkface-gpu/ (leaderboard and report).
# The knobs below also allow a dry run on a CPU (DEVICE=cpu, tiny sizes, SKIP_INSTALL=1).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/mtlbench-gpu-out}
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-.gpu/UTKFace-64px.tar.gz}
MAX_SAMPLES=${MAX_SAMPLES:-}            # empty: the whole archive
STUDY_EPOCHS=${STUDY_EPOCHS:-20}
STUDY_LRS=${STUDY_LRS:-3e-4,1e-3,3e-3}
STUDY_SEEDS=${STUDY_SEEDS:-0,1,2}
WORKERS=${WORKERS:-4}
DEADLINE_S=${DEADLINE_S:-560}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MTLBENCH_CACHE=${MTLBENCH_CACHE:-/tmp/mtlbench-cache}
start=$(date +%s)

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .gpu/whl/*.whl || exit 3
    export PYTHONPATH=/tmp/site:$PWD
fi
PY=${PY:-python3}
subset=()
[ -n "$MAX_SAMPLES" ] && subset=(--max-samples "$MAX_SAMPLES")

step() {  # step NAME CAP_S COMMAND...: run it with a time cap, log it, note rc and seconds
    local name=$1 cap=$2 left t0 rc
    shift 2
    left=$((DEADLINE_S - ($(date +%s) - start)))
    if [ "$left" -lt 20 ]; then
        echo "$name: skipped (deadline)" | tee -a "$OUT/summary.txt"
        return
    fi
    [ "$cap" -gt "$left" ] && cap=$left
    t0=$(date +%s%N)
    timeout --signal=INT --kill-after=15 "$cap" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    echo "$name: rc=$rc in $((($(date +%s%N) - t0) / 1000000)) ms (cap $cap s)" |
        tee -a "$OUT/summary.txt"
}

{ nvidia-smi || true; "$PY" -c "import torch; print(torch.__version__, torch.cuda.is_available())"; } \
    >"$OUT/machine.txt" 2>&1
step gpu-tests 90 "$PY" -m pytest -q -p no:cacheprovider tests/gpu
# Epoch time on the whole archive: one strategy, 2 epochs (the first pays the decode and warm-up).
step epoch-32px 90 "$PY" -m mtlbench run --device "$DEVICE" --data "$DATA" "${subset[@]}" \
    --image-size 32 --strategies sum --epochs 2 --experiment epoch-32px --output "$OUT/epoch-32px"
step epoch-64px 90 "$PY" -m mtlbench run --device "$DEVICE" --data "$DATA" "${subset[@]}" \
    --image-size 64 --strategies sum --epochs 2 --experiment epoch-64px --output "$OUT/epoch-64px"

# The study from issue 7: 3 strategies x 3 lrs x 3 seeds x 20 epochs at 64 px (target < 5 min).
util_pid=
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 \
        >"$OUT/gpu-util.csv" 2>&1 &
    util_pid=$!
fi
step study-64px 330 "$PY" -m mtlbench run --device "$DEVICE" --data "$DATA" "${subset[@]}" \
    --image-size 64 --strategies sum,uncertainty,dwa --lrs "$STUDY_LRS" --seeds "$STUDY_SEEDS" \
    --epochs "$STUDY_EPOCHS" --workers "$WORKERS" --experiment utkface-gpu \
    --output "$OUT/utkface-gpu"
[ -n "$util_pid" ] && kill "$util_pid" 2>/dev/null

# Per-trial numbers of every experiment above, straight from MLflow.
"$PY" - >"$OUT/study.txt" 2>&1 <<'PY'
import statistics

from mlflow import MlflowClient

client = MlflowClient("sqlite:///mlflow.db")
for exp in client.search_experiments():
    runs = [r for r in client.search_runs([exp.experiment_id]) if "time/trial_s" in r.data.metrics]
    if not runs:
        continue
    img_s = [
        m.value
        for r in runs
        for m in client.get_metric_history(r.info.run_id, "throughput/train_img_s")
    ]
    m = [r.data.metrics for r in runs]
    print(
        f"{exp.name}: {len(runs)} trials, trial_s mean {statistics.mean(x['time/trial_s'] for x in m):.1f}, "
        f"overhead {statistics.mean(x['time/overhead_pct'] for x in m):.1f}%, "
        f"train img/s median {statistics.median(img_s):.0f} (max {max(img_s):.0f})"
    )
PY
step concurrency 120 "$PY" -m mtlbench bench --device "$DEVICE" --concurrency "$WORKERS"
echo "total: $(($(date +%s) - start)) s" | tee -a "$OUT/summary.txt"
