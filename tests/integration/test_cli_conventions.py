"""Typer conventions: shell completion, flags without values, option panels in `run --help`."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtlbench.cli.app import app

PANELS = ("Data", "Model", "Training", "Search", "Optuna", "Tracking", "Execution")


def _complete(words: str) -> list[str]:
    env = {
        "_MTLBENCH_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1),
    }
    result = CliRunner().invoke(app, [], prog_name="mtlbench", env=env)
    assert result.exit_code == 0, result.output
    return result.output.split()


@pytest.fixture
def named_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the shell from the command line, as Typer's own tests do: otherwise Typer asks
    shellingham, which finds no shell when pytest runs detached (``nohup``, CI runners), and
    the test would depend on how it was started."""
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")


def test_completion_script_and_completions(named_shell: None) -> None:
    script = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="mtlbench")
    assert script.exit_code == 0, script.output
    assert "complete -o default -F _mtlbench_completion mtlbench" in script.output
    assert _complete("mtlbench pre") == ["predict"]
    assert "--log-model" in _complete("mtlbench run --log")
    assert "--no-system-metrics" in _complete("mtlbench run --no-sys")


def test_install_completion_writes_the_shell_setup(tmp_path: Path, named_shell: None) -> None:
    env = {"HOME": str(tmp_path), "SHELL": "/bin/bash"}
    result = CliRunner().invoke(
        app, ["--install-completion", "bash"], prog_name="mtlbench", env=env
    )
    assert result.exit_code == 0, result.output
    assert "mtlbench" in (tmp_path / ".bashrc").read_text()
    scripts = list(tmp_path.rglob("mtlbench*"))
    assert scripts and "_MTLBENCH_COMPLETE" in scripts[0].read_text()


def test_flags_take_no_value_and_help_shows_none() -> None:
    version = CliRunner().invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.startswith("mtlbench ")
    text = CliRunner().invoke(app, ["run", "--help"], terminal_width=200).output
    for flag in ("--resume", "--compile", "--no-prune"):
        line = next(ln for ln in text.splitlines() if flag in ln)
        assert "<bool>" not in line, line
    assert "--system-metrics" in text and "--no-system-metrics" in text


def test_run_help_groups_every_option_into_the_panels_in_order() -> None:
    text = CliRunner().invoke(app, ["run", "--help"], terminal_width=200).output
    titles = [ln.split("─ ", 1)[1].split(" ─")[0] for ln in text.splitlines() if "╭─ " in ln]
    assert titles == ["Options", *PANELS], titles
    # The generic panel holds --help only: every run option has its own panel.
    options = text.split("╭─ Options")[1].split("╰")[0]
    assert [ln.split()[1] for ln in options.splitlines() if "--" in ln] == ["--help"]
