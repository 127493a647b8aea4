"""Progress in logs (stderr not a terminal): plain lines, throttled, with a linear ETA."""

from __future__ import annotations

from mtlbench.infra.progress import LogTask


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lines_are_throttled_and_carry_elapsed_time_and_eta():
    lines: list[str] = []
    clock = FakeClock()
    task = LogTask(lines.append, "trials", 100, every=60, clock=clock)
    clock.now += 30
    task.advance(loss=0.25)  # the first step is always shown
    assert lines == ["trials 1/100 (1%)  elapsed 0:00:30  ETA 0:49:30  loss=0.25"]
    clock.now += 29
    task.advance(9)  # 59 s after the first line: quiet
    assert len(lines) == 1
    clock.now += 31  # 10 of 100 after 90 s: 810 s to go
    task.advance(0)
    assert lines[-1] == "trials 10/100 (10%)  elapsed 0:01:30  ETA 0:13:30  loss=0.25"
    clock.now += 5
    task.advance(90)  # the end is always shown, without an ETA
    assert lines[-1] == "trials 100/100 (100%)  elapsed 0:01:35  loss=0.25"
    task.close()  # nothing new to say
    assert len(lines) == 3


def test_an_unfinished_task_reports_where_it_stopped():
    lines: list[str] = []
    clock = FakeClock()
    task = LogTask(lines.append, "epochs", 4, clock=clock)
    task.update(status="warming up")  # no step yet: nothing to report
    assert lines == []
    clock.now += 3725
    task.advance()
    clock.now += 10
    task.advance()
    task.close()
    assert lines == [
        "epochs 1/4 (25%)  elapsed 1:02:05  ETA 3:06:15  status=warming up",
        "epochs 2/4 (50%)  elapsed 1:02:15  ETA 1:02:15  status=warming up",
    ]


def test_in_a_log_only_the_outer_bar_reports(capsys):
    from mtlbench.infra.progress import RichReporter

    reporter = RichReporter()  # pytest's captured stderr is not a terminal
    with reporter.progress("trials", total=2) as trials:
        for _ in range(2):
            with reporter.progress("epoch", total=3) as epoch:
                for _ in range(3):
                    epoch.advance(loss=0.5)
            trials.advance()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert [line.split("  ")[0] for line in lines] == ["trials 1/2 (50%)", "trials 2/2 (100%)"]
