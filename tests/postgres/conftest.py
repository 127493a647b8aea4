"""A throwaway PostgreSQL server on 127.0.0.1 for the multi-machine Optuna test.

The server is Debian's (``apt-get install postgresql``; ``.ci/run`` installs it for the
``postgres`` nox session): ``initdb`` into a temporary folder, ``pg_ctl start`` on a free port,
stopped by the PID in ``postmaster.pid`` at the end. PostgreSQL refuses to run as root, so as
root the server runs as the ``postgres`` OS user (``runuser``). Without the binaries or a
Python driver the tests skip, unless ``MTLBENCH_REQUIRE_POSTGRES=1`` (the nox session) makes
that a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _missing(reason: str) -> None:
    if os.environ.get("MTLBENCH_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL test required but {reason}")
    pytest.skip(reason)


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Debian keeps the server binaries off PATH, per major version.
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _driver() -> str | None:
    """The SQLAlchemy dialect+driver to use (psycopg 3, else psycopg2)."""
    for module, dialect in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        try:
            __import__(module)
        except ImportError:
            continue
        return dialect
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        _missing("PostgreSQL server binaries (initdb, pg_ctl) not found")
    dialect = _driver()
    if dialect is None:
        _missing("no PostgreSQL driver for Python (pip install 'psycopg[binary]')")
    assert initdb is not None and pg_ctl is not None and dialect is not None
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="mtlbench-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            _missing("running as root and there is no 'postgres' OS user to run the server")
        as_user = ["runuser", "-u", "postgres", "--"]
        os.chown(root, user.pw_uid, user.pw_gid)
    data, log = root / "data", root / "server.log"
    port = _free_port()
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
         "--no-sync"],
        check=True, capture_output=True,
    )  # fmt: skip
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off"
    started = subprocess.run(
        [*as_user, pg_ctl, "start", "-D", str(data), "-w", "-t", "60", "-l", str(log),
         "-o", options],
        capture_output=True, text=True,
    )  # fmt: skip
    if started.returncode != 0:
        text = log.read_text() if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {started.stderr}\n{text}")
    pid = int((data / "postmaster.pid").read_text().split()[0])
    try:
        yield f"{dialect}://postgres@127.0.0.1:{port}/postgres"
    finally:
        os.kill(pid, signal.SIGINT)  # "fast" shutdown: end sessions, stop cleanly
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
