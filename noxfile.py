"""Nox sessions. Settings come from pyproject.toml (dev dependency group, pytest markers).

nox -s tests     # the test suite (default)
nox -s lint      # ruff + mypy on mtlbench/
nox -s browser   # report.html and the MLflow UI in headless chromium (Debian's chromium +
                 # chromium-driver); screenshots kept in .ci/artifacts/
nox -s postgres  # two Optuna workers on a real PostgreSQL server (needs Debian's postgresql)
nox -s bench     # the tutorial's pipeline against mtlbench's (real UTKFace when present)
"""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"

PYPROJECT = nox.project.load_toml("pyproject.toml")
DEV = nox.project.dependency_groups(PYPROJECT, "dev")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, integration and end-to-end tests (a few minutes on 2 CPU cores)."""
    session.install("-e", ".", *DEV)
    # The browser and PostgreSQL tests need system packages and run in their own sessions.
    args = session.posargs or ["--ignore=tests/browser", "--ignore=tests/postgres"]
    session.run("python", "-m", "pytest", *args)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint + format check) and mypy on the package."""
    session.install("-e", ".", *DEV)
    session.run("ruff", "check", "mtlbench", "tests", "noxfile.py")
    session.run("ruff", "format", "--check", "mtlbench", "tests", "noxfile.py")
    session.run("mypy", "mtlbench")


ARTIFACTS = ".ci/artifacts"  # screenshots CI keeps (the CI job uploads this folder)


@nox.session
def browser(session: nox.Session) -> None:
    """Open a generated report.html and the MLflow UI of a small generated study in headless
    chromium: the report renders, the UI lands on the training runs with their datasets, a run
    opens on its metric sections. Screenshots go to .ci/artifacts/. Fails (never skips) when
    chromium, chromedriver or selenium is missing."""
    session.install("-e", ".", *DEV, "selenium>=4.20")
    shots = os.path.abspath(ARTIFACTS)
    os.makedirs(shots, exist_ok=True)
    session.run(
        "python",
        "-m",
        "pytest",
        "tests/browser",
        "-m",
        "browser",
        *session.posargs,
        env={"MTLBENCH_REQUIRE_BROWSER": "1", "MTLBENCH_SCREENSHOT_DIR": shots},
    )
    for name in sorted(os.listdir(shots)):
        session.log(f"screenshot: {os.path.join(shots, name)}")


@nox.session
def postgres(session: nox.Session) -> None:
    """Two Optuna workers sharing one study on a PostgreSQL server the test starts on
    127.0.0.1 (Debian's postgresql package). Fails (never skips) when it is missing."""
    session.install("-e", ".", *DEV, "psycopg[binary]>=3.1")
    session.run(
        "python",
        "-m",
        "pytest",
        "tests/postgres",
        *session.posargs,
        env={"MTLBENCH_REQUIRE_POSTGRES": "1"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """`mtlbench bench` on real UTKFace when ../shared/data has it, else on synthetic faces.
    Not part of CI: it measures speed, which a shared CI machine cannot judge."""
    session.install("-e", ".")
    real = "../shared/data/UTKFace.tar.gz"
    data = ["--data", real] if os.path.exists(real) else []
    session.run("mtlbench", "bench", *data, *session.posargs)
