#!/usr/bin/env bash
# The real-UTKFace CPU study behind results/utkface-cpu/: the two-stage design pre-registered in
# experiments/utkface-cpu.toml (read it first). Run from the repository root:
#
#   mkdir -p ~/utk-study
#   STUDY=~/utk-study setsid nohup experiments/utkface-cpu.sh > ~/utk-study/study.log 2>&1 &
#
# Stage 1 trains every spec (all strategies, stl, the interior static sweep) at the 3 lrs with
# seed 0. Stage 2 trains every spec at the lr it chose on seed 0 with seeds 1 and 2: one
# `mtlbench run` per chosen lr. Everything goes into ONE MLflow experiment; `mtlbench report`
# reads it back and chooses each lr on the seeds every lr of that method has (seed 0 here), so
# the report's choice is stage 1's.
#
# Re-running the script after a crash or at the end of a session continues: a stage that
# finished has a .done marker in $STUDY/logs and is skipped; an unfinished one is resumed with
# `--resume` (finished trials are kept, an interrupted one continues from its last epoch).
# STUDY holds the MLflow database and artifacts, the decoded-image cache and the logs; keep it
# outside the repository (the cache is derived from the images, whose licence forbids
# committing them).
#
# Across sessions (only the repository survives one), from a second shell:
#   experiments/utkface-cpu.sh stop     # no new trials; waits for the running ones, then stops
#   experiments/utkface-cpu.sh save     # writes $CARRY: the MLflow database and the stage logs
# and commit $CARRY. `stop` loses no training: trials already running finish and are recorded
# (start it as long before the session's end as the slowest running trial needs; its first
# line names them, with their finished epochs). Interrupting the study instead (Ctrl-C)
# throws the running trials' epochs away when the checkpoints stay behind. The next session's run restores it into an empty $STUDY and continues;
# trials that were in flight start again from their first epoch (checkpoints stay behind, and
# so do images and anything derived from them). Trials then come from several machines: each
# trial's machine is its tag mtlbench.host, and the report says when step costs mix machines.
set -euo pipefail
# The study and its helpers run mtlbench and python with mlflow: without them a session would
# die on a traceback from a here-document, so say what to install instead.
if ! command -v mtlbench > /dev/null || ! python -P -c 'import mlflow' 2> /dev/null; then
    echo "error: mtlbench and its python are not on PATH: activate the environment where" \
        "you ran \`pip install -e .\` (e.g. source .venv/bin/activate)" >&2
    exit 2
fi
STUDY=${STUDY:-$HOME/utk-study}
CARRY=${CARRY:-experiments/carry/utkface-cpu.tar.gz}
mkdir -p "$STUDY"
URI="sqlite:///$STUDY/mlflow.db"
running_trials() {  # names and finished epochs of the trials running now, one per line
    python -P - "$STUDY/mlflow.db" <<'PY'
import sqlite3
import sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
for name, epochs in db.execute(
    "SELECT r.name, (SELECT COUNT(*) FROM metrics m WHERE m.run_uuid = r.run_uuid"
    " AND m.key = 'time/epoch_s') FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid"
    " WHERE r.status = 'RUNNING' AND t.key = 'mtlbench.kind' AND t.value = 'trial'"
):
    print(f"{name} ({epochs} epochs done)")
PY
}
if [ "${1:-}" = stop ]; then
    # The study's coordinator (`mtlbench run`, whose command line names this store; its
    # pool workers' command lines do not) is paused: it hands out no new trial, while its
    # workers finish theirs and record them in MLflow. A worker that used under 1% of a core
    # for two 15 s samples in a row is idle (waiting for a trial that will not come). Then the
    # coordinator is interrupted and exits; the recorded trials are kept by the next --resume.
    pid=$(pgrep -f -- "mtlbench run .*--tracking-uri $URI( |\$)" | head -n 1 || true)
    [ -n "$pid" ] || { echo "no study is running on $URI" >&2; exit 2; }
    kill -STOP "$pid"
    echo "$(date -Is) paused the coordinator ($pid): no new trials; waiting for:"
    running_trials | sed 's/^/  /'
    python -P - "$pid" <<'PY'
import os
import sys
import time

def cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def workers(parent: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if ppid == parent and b"spawn_main" in cmd:
                out.append(int(entry))
    return out

idle_rounds = 0
while idle_rounds < 2:
    pids = workers(int(sys.argv[1]))
    before = {p: cpu_s(p) for p in pids}
    time.sleep(15)
    busy = [p for p in pids if cpu_s(p) - before[p] > 0.15]
    idle_rounds = 0 if busy else idle_rounds + 1
PY
    kill -INT "$pid"
    kill -CONT "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 2; done
    echo "$(date -Is) stopped with every worker idle; still marked running (restarted by the next run):"
    running_trials | sed 's/^/  /'
    echo "next: $0 save"
    exit 0
fi
if [ "${1:-}" = save ]; then
    [ -e "$STUDY/mlflow.db" ] || { echo "nothing to save: no $STUDY/mlflow.db" >&2; exit 2; }
    tmp=$(mktemp -d)
    # SQLite's backup API: a consistent copy even if a run still writes to the database.
    python -P - "$STUDY/mlflow.db" "$tmp/mlflow.db" <<'PY'
import sqlite3
import sys
with sqlite3.connect(sys.argv[2]) as dst:
    sqlite3.connect(sys.argv[1]).backup(dst)
PY
    cp -r "$STUDY/logs" "$tmp/logs"
    mkdir -p "$(dirname "$CARRY")"
    tar czf "$CARRY" -C "$tmp" mlflow.db logs
    rm -rf "$tmp"
    echo "saved the study's progress to $CARRY ($(du -h "$CARRY" | cut -f1)): commit it"
    exit 0
fi
if [ ! -e "$STUDY/mlflow.db" ] && [ -e "$CARRY" ]; then
    tar xzf "$CARRY" -C "$STUDY"
    echo "$(date -Is) continuing the study carried in $CARRY"
fi
EXPERIMENT=${EXPERIMENT:-utkface-cpu}
CONFIG=${CONFIG:-experiments/utkface-cpu.toml}
RESULTS=${RESULTS:-results/utkface-cpu}
WORKERS=${WORKERS:-2}  # 2 single-thread workers on 2 cores (docs/performance.md: 1.12x)
mkdir -p "$STUDY/logs"

# Create the experiment first so its artifacts land in $STUDY, not in ./mlruns.
python -P - "$URI" "$STUDY/artifacts" "$EXPERIMENT" <<'PY'
import sys
from mlflow.tracking import MlflowClient
client = MlflowClient(sys.argv[1])
if client.get_experiment_by_name(sys.argv[3]) is None:
    client.create_experiment(sys.argv[3], artifact_location=sys.argv[2])
PY

group() {  # group NAME [mtlbench run flags...]: skipped when done, resumed when started
    local name=$1
    shift
    if [ -e "$STUDY/logs/$name.done" ]; then echo "skip $name (done before)"; return; fi
    local resume=()
    [ -e "$STUDY/logs/$name.started" ] && resume=(--resume)
    touch "$STUDY/logs/$name.started"
    echo "$(date -Is) start $name ${resume[*]}"
    if mtlbench run --config "$CONFIG" --tracking-uri "$URI" --experiment "$EXPERIMENT" \
        --cache-dir "$STUDY/cache" --output "$STUDY/out/$name" --workers "$WORKERS" \
        "${resume[@]}" "$@" >> "$STUDY/logs/$name.log" 2>&1
    then
        echo "$(date -Is) end $name"
        touch "$STUDY/logs/$name.done"
    else
        local rc=$?
        if [ "$rc" = 130 ]; then
            echo "$(date -Is) stopped $name: run this script again to continue"
        else
            echo "$(date -Is) FAILED $name (see $STUDY/logs/$name.log)"
        fi
        exit "$rc"
    fi
}

# Stage 1: the lr choice, seed 0, every spec at every lr of the toml.
group stage1 --seeds 0

# Stage 2: each spec's stage-1 lr (the report's own rule), seeds 1 and 2.
python -P - "$URI" "$EXPERIMENT" > "$STUDY/logs/stage2-plan.txt" <<'PY'
import sys
from mtlbench.report import tables as report
from mtlbench.tracking import load_trials
tidy = report.tidy_trials(load_trials(sys.argv[1], sys.argv[2]))
tidy = tidy[tidy["seed"] == 0]
specs: dict[float, list[str]] = {}
for strategy, lr in report.choose_lr(tidy).itertuples(index=False):
    # stl's three tasks are three strategies here ("stl:age"...), each with its own lr.
    specs.setdefault(float(lr), []).append(str(strategy))
for lr, names in sorted(specs.items()):
    print(f"{lr:g} {','.join(sorted(names))}")
PY
echo "stage 2 plan (lr, specs chosen on seed 0):"
cat "$STUDY/logs/stage2-plan.txt"
while read -r lr names; do
    group "stage2-lr$lr" --seeds 1,2 --lrs "$lr" --strategies "$names" --static-sweep 0
done < "$STUDY/logs/stage2-plan.txt"

# README="" skips pasting the summary into README.md's results block (a study other than this).
README=${README-README.md}
mtlbench report "$EXPERIMENT" --tracking-uri "$URI" --output "$RESULTS" ${README:+--readme "$README"}
echo "$(date -Is) study done"
