#!/usr/bin/env bash
# Prepares the folder `.gpu/` that one device call carries (see docs/performance.md, "Planning
# the one device call"): the Python 3.12 wheels mtlbench needs beyond the device image (which has
# torch, torchvision, pandas, seaborn, typer, rich, pytest ...), mlflow without its web-UI assets
# (7.5 MB of JavaScript a GPU run never serves), and the 64 px UTKFace archive. cvxpy and torchjd
# are left out: only cagrad, nash_mtl, imtl, aligned_mtl and upgrad import them, and the GPU check
# runs sum, uncertainty and dwa. Then run, with the device tool:
#   command: bash experiments/gpu-check.sh     carry: [".gpu"]     timeout_s: 600
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .git/info && touch .git/info/exclude
grep -qxF '/.gpu/' .git/info/exclude || echo '/.gpu/' >>.git/info/exclude
rm -rf .gpu && mkdir -p .gpu/whl

# Tested together on 2026-11-27 (a grid run, --workers 2, an Optuna study, the bench).
WHEELS=(
    alembic==1.20.1 annotated-types==0.7.0 blinker==1.9.0 cachetools==7.3.3 cffi==2.0.0
    colorlog==6.12.0 cryptography==48.0.0 databricks-sdk==0.162.0 fastapi==0.165.0 flask==3.1.3
    gitdb==4.0.12 gitpython==3.2.1 importlib-metadata==9.1.0 itsdangerous==2.2.0 mako==1.4.3
    mlflow==3.17.2 mlflow-skinny==3.17.2 mlflow-tracing==3.17.2 opentelemetry-api==1.45.2
    opentelemetry-proto==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-semantic-conventions==0.66b2
    optuna==5.0.0 prettytable==3.18.0 pycparser==3.0 pydantic==2.13.4 pydantic-core==2.46.4
    python-dotenv==1.2.2 skops==0.16.0 smmap==5.0.3 sqlalchemy==2.1.9 sqlparse==0.6.1
    starlette==1.10.0 typing-inspection==0.4.2 wcwidth==0.7.0
)
platforms=()
for p in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${p}_x86_64")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .gpu/whl "${WHEELS[@]}"

python3 - <<'PY'
import pathlib
import zipfile

(src,) = pathlib.Path(".gpu/whl").glob("mlflow-[0-9]*.whl")
tmp = src.with_suffix(".tmp")
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
    for item in zin.infolist():
        if not item.filename.startswith("mlflow/server/js/"):
            zout.writestr(item, zin.read(item.filename))
tmp.replace(src)
PY

cp ../shared/data/UTKFace-64px.tar.gz .gpu/
carried=$(du -sb .gpu | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
echo ".gpu/: $((carried / 1048576)) MiB; with the tracked tree: $(((carried + tree) / 1048576)) MiB (limit 64)"
