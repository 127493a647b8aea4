"""Nox sessions. Settings come from pyproject.toml (dev dependency group, pytest markers).

nox -s tests     # the test suite (default)
nox -s lint      # ruff + mypy on mtlbench/
"""

from __future__ import annotations

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
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint + format check) and mypy on the package."""
    session.install("-e", ".", *DEV)
    session.run("ruff", "check", "mtlbench", "tests", "noxfile.py")
    session.run("ruff", "format", "--check", "mtlbench", "tests", "noxfile.py")
    session.run("mypy", "mtlbench")
