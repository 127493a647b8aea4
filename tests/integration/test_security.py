"""Where mtlbench writes, what it binds, and what it refuses to execute."""

from __future__ import annotations

import subprocess

from typer.testing import CliRunner

from mtlbench.cli.app import app


def test_ui_binds_loopback_by_default_and_warns_otherwise(monkeypatch, tmp_path):
    calls: list[list[str]] = []

    real_popen = subprocess.Popen

    class _Server:  # stands in for the MLflow server process: exits at once with status 0
        def wait(self) -> int:
            return 0

        def poll(self) -> int:
            return 0

    def popen(cmd, *args, **kwargs):  # type: ignore[no-untyped-def]
        if cmd[1:4] == ["-m", "mlflow", "ui"]:
            calls.append(cmd)
            return _Server()
        return real_popen(cmd, *args, **kwargs)  # anything else MLflow starts runs for real

    monkeypatch.setattr(subprocess, "Popen", popen)
    store = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(app, ["ui", "--tracking-uri", store, "--no-browser"])
    assert result.exit_code == 0, result.output
    assert calls[-1][calls[-1].index("--host") + 1] == "127.0.0.1"
    assert "warning" not in result.output

    result = CliRunner().invoke(
        app, ["ui", "--host", "0.0.0.0", "--tracking-uri", store, "--no-browser"]
    )
    assert result.exit_code == 0, result.output
    assert calls[-1][calls[-1].index("--host") + 1] == "0.0.0.0"
    assert "warning: binding 0.0.0.0" in result.output


def test_a_run_writes_only_where_it_was_told(faces_dir, session_cache, tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    store = tmp_path / "store"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--strategies",
            "sum",
            "--backbone",
            "tiny",
            "--epochs",
            "1",
            "--data",
            str(faces_dir),
            "--cache-dir",
            str(session_cache),
            "--tracking-uri",
            f"sqlite:///{store / 'mlflow.db'}",
            "--output",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert list(elsewhere.iterdir()) == [], "nothing lands in the working directory"
    assert (store / "mlflow.db").is_file()
    assert (store / "mlruns").is_dir(), "artifacts sit beside the chosen store"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "out", "store"]
