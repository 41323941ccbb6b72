"""Named stages of a long command, timed as they run, and the profile table at the end.

``make demo`` runs for minutes on two CPU cores; each stage prints a line when it starts and
one with its wall-clock and CPU seconds when it ends, every line prefixed with the time since
the command started, and the runs' own progress lines in between (``StageClock.progress``). The
profile at the end lists every stage with its share of the total; stages recorded as overlapping
(the install, timed from before this process) are counted once.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator


@dataclass(frozen=True)
class StageTime:
    name: str
    wall_s: float
    cpu_s: float | None  # None: measured outside this process (the install)
    note: str = ""
    parts: tuple[tuple[str, float], ...] = ()  # (part, seconds) within the stage, e.g. a backfill's asset steps
    start_s: float = 0.0  # seconds from the command's start to the stage's


def format_elapsed(seconds: float) -> str:
    """``83.4`` -> ``1m23s``; under a minute ``42s``."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class StageClock:
    """Times stages and prints them as they go.

    ``started``: when the command started, on ``wall_clock``'s scale (``time.time()``, seconds
    since the epoch); by default now. ``write`` receives each printed line. CPU seconds are
    this process's (all its threads), from ``cpu_clock``.
    """

    def __init__(self, write: Callable[[str], None] = print, *, started: float | None = None,
                 wall_clock: Callable[[], float] = time.time, cpu_clock: Callable[[], float] = time.process_time):
        self.write = write
        self.wall_clock = wall_clock
        self.cpu_clock = cpu_clock
        self.started = wall_clock() if started is None else started
        self.stages: list[StageTime] = []
        self._current: str | None = None

    def elapsed(self) -> float:
        return self.wall_clock() - self.started

    def line(self, message: str) -> None:
        self.write(f"[{format_elapsed(self.elapsed()):>6}] {message}")

    def record(self, name: str, wall_s: float, cpu_s: float | None = None, note: str = "",
               parts: tuple[tuple[str, float], ...] = (), start_s: float | None = None) -> None:
        """Add a stage measured elsewhere (e.g. the install, before this process started); by default it ended now."""
        start_s = self.elapsed() - wall_s if start_s is None else start_s
        self.stages.append(StageTime(name, wall_s, cpu_s, note, tuple(parts), start_s))
        details = [f"{cpu_s:.0f}s CPU"] if cpu_s is not None else []
        self.line(f"{name}: {wall_s:.0f}s" + (f" ({', '.join(details + ([note] if note else []))})" if details or note else ""))

    @contextmanager
    def stage(self, name: str) -> Iterator["StageNote"]:
        """Time the block as stage ``name``; the yielded object's ``note`` is printed with its time
        (e.g. "cached"). A stage that raises is recorded with the note "failed" before the error goes on."""
        note = StageNote()
        self.line(f"{name} ...")
        wall, cpu = self.wall_clock(), self.cpu_clock()
        outer, self._current = self._current, name
        try:
            yield note
        except BaseException:
            note.note = "failed"
            raise
        finally:
            self._current = outer
            self.record(name, self.wall_clock() - wall, self.cpu_clock() - cpu, note.note, tuple(note.parts.items()),
                        start_s=wall - self.started)

    def progress(self, message: str) -> None:
        """A progress line inside the current stage."""
        self.line(f"  {self._current + ': ' if self._current else ''}{message}")

    def profile_rows(self) -> list[list[str]]:
        """One row per stage: name, wall seconds, CPU seconds, share of the total wall time, note, each
        stage's parts indented under it (not added to the total again); then the time no stage
        covered and the total (wall time since ``started``). Stages that ran side by side (a
        background job) are each shown whole, so their shares can add up to more than 100%."""
        total = max(self.elapsed(), 1e-9)
        rows = []
        for s in self.stages:
            rows.append([s.name, f"{s.wall_s:.1f}", "-" if s.cpu_s is None else f"{s.cpu_s:.1f}", f"{s.wall_s / total:.0%}", s.note])
            rows += [[f"  {part}", f"{seconds:.1f}", "", f"{seconds / total:.0%}", "part of the stage above"]
                     for part, seconds in s.parts]
        uncovered = max(total - _covered(self.stages), 0.0)
        rows.append(["other (start-up, between stages)", f"{uncovered:.1f}", "-", f"{uncovered / total:.0%}", ""])
        rows.append(["total", f"{total:.1f}", "", "100%", format_elapsed(total)])
        return rows


def _covered(stages: list[StageTime]) -> float:
    """Seconds covered by at least one stage (the union of their intervals)."""
    covered, end = 0.0, float("-inf")
    for begin, finish in sorted((s.start_s, s.start_s + s.wall_s) for s in stages):
        if finish > end:
            covered += finish - max(begin, end)
            end = finish
    return covered


@dataclass
class StageNote:
    """What a running stage may add to its record: a note ("cached") and the seconds of its parts."""

    note: str = ""
    parts: dict[str, float] = field(default_factory=dict)
