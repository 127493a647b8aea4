"""Ctrl-C and SIGTERM that never land inside a database call.

A ``KeyboardInterrupt`` raised in the middle of an MLflow or Optuna call can leave a SQLite
statement half-stepped: its cursor, kept alive by the traceback, holds the database lock, and
the writes that follow ("mark this run KILLED") wait out the busy timeout and fail with
``database is locked``. CI saw exactly that: an interrupted study exited 1 with a traceback
instead of 130 with a ``--resume`` hint.

So the handlers installed by :func:`install` look at what the main thread is doing. Inside a
:func:`shielded` block (a database call) the signal is only remembered, and raised as
``KeyboardInterrupt`` when the outermost shielded block ends. Elsewhere, or inside an
:func:`interruptible` block nested in a shielded one (training, waiting), it is raised at once.

Three more rules, each from a failure seen while interrupting real runs at random moments:
signals right after an interrupt are ignored for ``REPEAT_GRACE_S`` (so a forwarded Ctrl-C does
not cut the cleanup short); an interrupt that Python dropped in a finalizer is sent again; and
an interrupt that C code reported as another error comes out of ``interruptible`` as itself.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, NoReturn, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


# After an interrupt, signals are ignored this long: the cleanup (marking runs KILLED) must not
# be cut short by a second Ctrl-C or by the coordinator forwarding the terminal's Ctrl-C to its
# workers. A Ctrl-C after that raises again, in case some library swallowed the first one.
REPEAT_GRACE_S = 5.0


@dataclass
class _State:
    # The main thread's open blocks, innermost last: True = shielded, False = interruptible.
    # Signal handlers run in the main thread only, so only its blocks matter.
    stack: list[bool] = field(default_factory=list)
    pending: bool = False  # a signal arrived inside a shielded block
    raised_at: float | None = None  # time.monotonic() when the interrupt was raised
    signum: signal.Signals = signal.SIGINT  # the last signal received


_state = _State()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _shielded_now() -> bool:
    return bool(_state.stack) and _state.stack[-1]


def _interrupt() -> NoReturn:
    _state.pending = False
    _state.raised_at = time.monotonic()
    raise KeyboardInterrupt


def _handler(signum: int, frame: object) -> None:
    if _state.raised_at is not None and time.monotonic() - _state.raised_at < REPEAT_GRACE_S:
        return
    _state.signum = signal.Signals(signum)
    if _shielded_now():
        _state.pending = True
        return
    _interrupt()


def _unraisable(info: Any) -> None:
    if isinstance(info.exc_value, KeyboardInterrupt) and _state.raised_at is not None:
        # The interrupt landed in a finalizer or weakref callback, where Python prints the
        # exception and drops it. Deliver it again from another thread: it lands once the
        # main thread has left the finalizer.
        _state.raised_at = None
        resend = threading.Timer(0.01, _resend, (_state.signum,))
        resend.daemon = True
        resend.start()
        return
    _previous_unraisable(info)


def _resend(signum: signal.Signals) -> None:
    if _state.raised_at is None:  # no interrupt raised since the one that was dropped
        # Not os.kill: a real signal that arrives while the interpreter shuts down (handlers
        # back to SIG_DFL) kills the process with -SIGINT (seen once in 40 stress rounds);
        # interrupt_main does nothing when no Python handler is installed.
        _thread.interrupt_main(signum)


_previous_unraisable = sys.unraisablehook


def install(signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM)) -> None:
    """Route ``signals`` through the deferring handler (main thread only, as Python requires)
    and start from a clean state. SIGTERM (kill, a batch scheduler) then takes the same clean
    path as Ctrl-C."""
    global _previous_unraisable
    _state.pending, _state.raised_at = False, None
    if sys.unraisablehook is not _unraisable:
        _previous_unraisable = sys.unraisablehook
        sys.unraisablehook = _unraisable
    for sig in signals:
        signal.signal(sig, _handler)


def stopping() -> bool:
    """Whether an interrupt was received (raised, or waiting for a shielded block to end)."""
    return _state.raised_at is not None or _state.pending


def _raise_pending() -> None:
    if _state.pending and not _shielded_now():
        _interrupt()


@contextmanager
def _block(shield: bool) -> Iterator[None]:
    if not _main_thread():
        yield
        return
    _state.stack.append(shield)
    try:
        if not shield:
            _raise_pending()  # an interrupt that waited for this moment
        yield
    except Exception as exc:
        if not shield and _state.raised_at is not None:
            # The interrupt was raised in a callback of C code that reported it as another
            # error (torch's zip writer turns it into RuntimeError): it is still an interrupt.
            raise KeyboardInterrupt from exc
        raise
    finally:
        _state.stack.pop()
        # Also while another exception propagates: the user asked to stop, and that wins.
        _raise_pending()


def shielded() -> AbstractContextManager[None]:
    """A block that a signal does not interrupt; a signal received meanwhile is raised as
    ``KeyboardInterrupt`` once the block (and every shielded block around it) has ended."""
    return _block(True)


def interruptible() -> AbstractContextManager[None]:
    """A block that a signal interrupts at once, even inside a shielded one; an interrupt
    that surfaces from it disguised as another exception comes out as ``KeyboardInterrupt``."""
    return _block(False)


def shield(fn: F) -> F:
    """Decorator form of :func:`shielded`."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with shielded():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class ShieldedProxy:
    """Every method of ``target`` called through this proxy runs shielded.

    Used for the MLflow client, the one object through which mtlbench reaches the tracking
    store: wrapping it covers each store call without a ``with`` at every call site."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        return shield(value) if callable(value) else value
