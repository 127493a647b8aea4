"""The one channel through which library code reports progress and messages.

Library modules never print: they receive a :class:`Reporter`. The CLI passes a
:class:`RichReporter` (progress bars on stderr); tests and library callers get the silent
:class:`NullReporter` by default.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class ProgressTask(Protocol):
    def advance(self, n: float = 1, **fields: Any) -> None: ...
    def update(self, **fields: Any) -> None: ...


class Reporter(Protocol):
    def info(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def progress(self, description: str, total: float | None) -> Any:
        """A context manager yielding a :class:`ProgressTask`."""
        ...


class _NullTask:
    def advance(self, n: float = 1, **fields: Any) -> None:
        pass

    def update(self, **fields: Any) -> None:
        pass


class NullReporter:
    """Discards everything; the default for library calls and tests."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def info(self, message: str) -> None:
        self.messages.append(message)

    def warn(self, message: str) -> None:
        self.messages.append(f"warning: {message}")

    @contextmanager
    def progress(self, description: str, total: float | None) -> Iterator[_NullTask]:
        yield _NullTask()


def status_text(fields: dict[str, Any]) -> str:
    """``loss=0.25  lr=0.001``: a task's status fields as one line (floats to 4 digits)."""
    return "  ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()
    )


class _RichTask:
    def __init__(self, progress: Any, task_id: Any) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, n: float = 1, **fields: Any) -> None:
        self._progress.update(self._id, advance=n, **self._fields(fields))

    def update(self, **fields: Any) -> None:
        self._progress.update(self._id, **self._fields(fields))

    @staticmethod
    def _fields(fields: dict[str, Any]) -> dict[str, Any]:
        return {"status": status_text(fields)} if fields else {}


LOG_EVERY_S = 60.0


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class LogTask:
    """A progress bar for logs (nohup, CI, a pipe), where a redrawn bar shows nothing until it
    ends: one plain line on the first step, then at most every ``every`` seconds, and at the
    end, with the elapsed time and a linear ETA (hours-long studies are watched with ``tail``)."""

    def __init__(
        self,
        write: Callable[[str], None],
        description: str,
        total: float,
        every: float = LOG_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write, self._description, self._total = write, description, total
        self._every, self._clock = every, clock
        self._start = clock()
        self._last: float | None = None
        self.done = 0.0
        self._status = ""

    def advance(self, n: float = 1, **fields: Any) -> None:
        self.done += n
        self.update(**fields)

    def update(self, **fields: Any) -> None:
        if fields:
            self._status = status_text(fields)
        now = self._clock()
        finished = self.done >= self._total
        due = finished or self._last is None or now - self._last >= self._every
        if due and (self.done > 0 or finished):
            self._emit(now)

    def close(self) -> None:
        if self._last is None or self.done < self._total:
            self._emit(self._clock())

    def _emit(self, now: float) -> None:
        self._last = now
        elapsed = now - self._start
        pct = 100.0 * self.done / self._total if self._total else 100.0
        line = f"{self._description} {self.done:g}/{self._total:g} ({pct:.0f}%)"
        line += f"  elapsed {_clock(elapsed)}"
        if 0 < self.done < self._total:
            line += f"  ETA {_clock(elapsed * (self._total - self.done) / self.done)}"
        self._write(f"{line}  {self._status}".rstrip())


class RichReporter:
    """Progress bars and messages on stderr, for the CLI."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.console import Console

        # Logs (CI, nohup, a pipe) get a wide fixed width instead of 80 columns, so the
        # summary tables are not truncated.
        self.console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
        self.quiet = quiet
        self._live: Any = None
        self._logging = False

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)

    @contextmanager
    def progress(self, description: str, total: float | None) -> Iterator[Any]:
        if self.quiet or (not sys.stderr.isatty() and total is None):
            yield _NullTask()
            return
        if not sys.stderr.isatty() and total is not None:
            if self._logging:  # in a log only the outer bar speaks (trials, not each epoch)
                yield _NullTask()
                return
            task = LogTask(
                lambda line: self.console.print(line, highlight=False), description, total
            )
            self._logging = True
            try:
                yield task
            finally:
                self._logging = False
                task.close()
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        if self._live is not None:
            # Nested bars share the outer Progress display instead of fighting over the terminal.
            task_id = self._live.add_task(description, total=total, status="")
            try:
                yield _RichTask(self._live, task_id)
            finally:
                self._live.remove_task(task_id)
            return
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            transient=False,
        )
        with progress:
            self._live = progress
            try:
                task_id = progress.add_task(description, total=total, status="")
                yield _RichTask(progress, task_id)
            finally:
                self._live = None
