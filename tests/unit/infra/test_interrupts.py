"""Deferred Ctrl-C / SIGTERM: never inside a shielded block (a database call), raised right after;
at once elsewhere; and an MLflow SQLite store stays writable after an interrupted call."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mtlbench.infra import interrupts


@pytest.fixture(autouse=True)
def handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    interrupts.install()
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    assert interrupts._state.stack == [], "a block leaked"
    interrupts.install(())  # reset the state for the next test


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["int", "term"])
def test_outside_any_block_the_signal_interrupts_at_once(sig: signal.Signals) -> None:
    reached = False
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(sig)
        reached = True
    assert not reached


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["int", "term"])
def test_a_shielded_block_finishes_then_the_interrupt_is_raised(sig: signal.Signals) -> None:
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.shielded():
            signal.raise_signal(sig)
            steps.append("after the signal")
        steps.append("after the block")
    assert steps == ["after the signal"]


def test_nested_shielded_blocks_raise_at_the_outermost_end() -> None:
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt), interrupts.shielded():
        with interrupts.shielded():
            signal.raise_signal(signal.SIGINT)
        steps.append("outer block goes on")
    assert steps == ["outer block goes on"]


def test_interruptible_inside_shielded_raises_at_once() -> None:
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt), interrupts.shielded(), interrupts.interruptible():
        signal.raise_signal(signal.SIGINT)
        steps.append("not reached")
    assert steps == []


def test_entering_an_interruptible_block_delivers_a_deferred_interrupt() -> None:
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt), interrupts.shielded():
        signal.raise_signal(signal.SIGINT)
        steps.append("shielded work done")
        with interrupts.interruptible():
            steps.append("not reached")
    assert steps == ["shielded work done"]


def test_a_shielded_block_inside_interruptible_defers_again() -> None:
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt), interrupts.shielded(), interrupts.interruptible():
        with interrupts.shielded():
            signal.raise_signal(signal.SIGINT)
            steps.append("write finished")
        steps.append("not reached")
    assert steps == ["write finished"]


def test_the_interrupt_wins_over_an_error_raised_meanwhile() -> None:
    with pytest.raises(KeyboardInterrupt) as info, interrupts.shielded():
        signal.raise_signal(signal.SIGINT)
        raise RuntimeError("the store failed too")
    assert isinstance(info.value.__context__, RuntimeError)


def test_after_the_interrupt_later_signals_do_not_break_the_cleanup() -> None:
    cleanup: list[str] = []
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        assert interrupts.stopping()
        signal.raise_signal(signal.SIGINT)  # a second Ctrl-C, or a forwarded one
        signal.raise_signal(signal.SIGTERM)
        cleanup.append("runs marked KILLED")
    assert cleanup == ["runs marked KILLED"]
    interrupts.install()
    assert not interrupts.stopping(), "install starts from a clean state"
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_a_signal_after_the_grace_period_interrupts_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """In case something swallowed the first interrupt, a later Ctrl-C still works."""
    monkeypatch.setattr(interrupts, "REPEAT_GRACE_S", 0.05)
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    signal.raise_signal(signal.SIGINT)  # within the grace period: ignored
    time.sleep(0.1)
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_an_interrupt_swallowed_by_a_finalizer_is_delivered_later() -> None:
    """Python prints and drops an exception raised in ``__del__`` or a weakref callback;
    the interrupt must come back at the next block boundary, not be lost."""

    class Finalised:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGINT)

    interrupts.install()  # inside the test: wraps pytest's own per-test unraisable hook
    obj = Finalised()
    waited = 0
    with pytest.raises(KeyboardInterrupt):
        del obj  # the handler raises inside __del__, where Python drops the exception
        for waited in range(1, 201):  # noqa: B007
            time.sleep(0.01)
    assert waited < 200, "the signal was sent again"


def test_without_a_signal_blocks_change_nothing() -> None:
    with interrupts.shielded(), interrupts.interruptible(), interrupts.shielded():
        value = 1 + 1
    assert value == 2 and not interrupts.stopping()


def test_other_threads_neither_defer_nor_push_blocks() -> None:
    seen: list[list[bool]] = []

    def work() -> None:
        with interrupts.shielded():
            seen.append(list(interrupts._state.stack))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [[]]


def test_shield_decorator_and_proxy() -> None:
    calls: list[str] = []

    class Store:
        version = "1.0"

        def write(self, value: int) -> int:
            signal.raise_signal(signal.SIGINT)
            calls.append(f"wrote {value}")
            return value * 2

    proxy = interrupts.ShieldedProxy(Store())
    assert proxy.version == "1.0"
    with pytest.raises(KeyboardInterrupt):
        proxy.write(3)
    assert calls == ["wrote 3"], "the call ran to its end before the interrupt"

    @interrupts.shield
    def double(x: int) -> int:
        return 2 * x

    assert double(4) == 8 and double.__name__ == "double"


def test_an_interrupted_mlflow_call_completes_and_the_store_stays_writable(
    tmp_path: Path,
) -> None:
    """The CI failure: SIGINT inside a SQLite statement of ``log_batch`` left the statement
    half-stepped, the database locked, and marking the run KILLED failed. Now the call runs
    to its end (unshielded, the metric was lost here), then the interrupt comes."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from mtlbench.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = Tracker(uri, "interrupts").start_run("r", params={}, tags={})
    armed = [True]

    def mid_statement(conn, cursor, statement, parameters, context, executemany) -> None:
        if armed[0] and statement.lstrip().upper().startswith("SELECT"):
            armed[0] = False
            signal.raise_signal(signal.SIGINT)  # lands while the SELECT's rows are unread

    event.listen(Engine, "after_cursor_execute", mid_statement)
    try:
        with pytest.raises(KeyboardInterrupt):
            run.log_metrics({"val/score": 0.5}, step=0)
    finally:
        event.remove(Engine, "after_cursor_execute", mid_statement)
    assert not armed[0], "the signal was sent"
    start = time.monotonic()
    run.set_tags({"mtlbench.status": "interrupted"})
    run.end("KILLED")
    assert time.monotonic() - start < 5, "the store was locked"
    stored = run.client.get_run(run.run_id)
    assert stored.info.status == "KILLED"
    assert stored.data.metrics == {"val/score": 0.5}


def test_an_interrupt_disguised_by_c_code_comes_out_as_keyboard_interrupt() -> None:
    def writer_callback() -> None:
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            raise RuntimeError("unexpected pos 35072 vs 34968") from None  # torch's zip writer

    with pytest.raises(KeyboardInterrupt) as info, interrupts.interruptible():
        writer_callback()
    assert isinstance(info.value.__cause__, RuntimeError)


def test_without_an_interrupt_errors_pass_through_unchanged() -> None:
    with pytest.raises(ValueError, match="bad"), interrupts.interruptible():
        raise ValueError("bad")
    with pytest.raises(ValueError, match="bad"), interrupts.shielded():
        raise ValueError("bad")


def test_a_checkpoint_save_finishes_before_the_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from mtlbench.training import checkpoint

    real_save = torch.save

    def interrupted_save(obj: object, handle: object) -> None:
        signal.raise_signal(signal.SIGTERM)  # lands inside the write
        real_save(obj, handle)

    monkeypatch.setattr(checkpoint.torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save({"epoch": 3}, tmp_path, checkpoint.LAST)
    assert checkpoint.load(tmp_path, checkpoint.LAST) == {"epoch": 3}
