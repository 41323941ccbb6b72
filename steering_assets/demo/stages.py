"""Named stages of a long command, timed as they run, and the profile table at the end.

``make demo`` runs for minutes on two CPU cores; each stage prints a line when it starts and
one with its wall-clock and CPU seconds when it ends, every line prefixed with the time since
the command started, and long training loops print a progress line every ``every_s`` seconds
(``training_progress``). The profile at the end lists every stage with its share of the total.
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
               parts: tuple[tuple[str, float], ...] = ()) -> None:
        """Add a stage measured elsewhere (e.g. the install, before this process started)."""
        self.stages.append(StageTime(name, wall_s, cpu_s, note, tuple(parts)))
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
            self.record(name, self.wall_clock() - wall, self.cpu_clock() - cpu, note.note, tuple(note.parts.items()))

    def progress(self, message: str) -> None:
        """A progress line inside the current stage."""
        self.line(f"  {self._current + ': ' if self._current else ''}{message}")

    def profile_rows(self) -> list[list[str]]:
        """One row per stage: name, wall seconds, CPU seconds, share of the total wall time, note, each
        stage's parts indented under it (not added to the total again); then the time outside every
        stage and the total (wall time since ``started``)."""
        total = max(self.elapsed(), 1e-9)
        rows = []
        for s in self.stages:
            rows.append([s.name, f"{s.wall_s:.1f}", "-" if s.cpu_s is None else f"{s.cpu_s:.1f}", f"{s.wall_s / total:.0%}", s.note])
            rows += [[f"  {part}", f"{seconds:.1f}", "", f"{seconds / total:.0%}", "part of the stage above"]
                     for part, seconds in s.parts]
        timed = sum(s.wall_s for s in self.stages)
        rows.append(["other (start-up, between stages)", f"{max(total - timed, 0.0):.1f}", "-",
                     f"{max(total - timed, 0.0) / total:.0%}", ""])
        rows.append(["total", f"{total:.1f}", "", "100%", format_elapsed(total)])
        return rows


@dataclass
class StageNote:
    """What a running stage may add to its record: a note ("cached") and the seconds of its parts."""

    note: str = ""
    parts: dict[str, float] = field(default_factory=dict)


def training_progress(clock: StageClock, every_s: float = 20.0):
    """A ``transformers.TrainerCallback`` printing ``step N/M, loss L`` through ``clock`` at most every
    ``every_s`` seconds (and at the last step); the loss is the latest one the trainer logged."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def __init__(self):
            self.last_print = time.monotonic()
            self.loss: float | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_step_end(self, args, state, control, **kwargs):
            now = time.monotonic()
            if now - self.last_print >= every_s or state.global_step >= state.max_steps:
                self.last_print = now
                loss = "" if self.loss is None else f", loss {self.loss:.3f}"
                clock.progress(f"step {state.global_step}/{state.max_steps}{loss}")

    return _Progress()


@contextmanager
def trainer_progress(clock: StageClock, every_s: float = 20.0) -> Iterator[None]:
    """Every ``transformers.Trainer`` built inside the block prints progress through ``clock``.

    For training code that takes no callbacks argument (the demo judge's): the callback joins
    transformers' default callbacks (``transformers.trainer.DEFAULT_CALLBACKS``) for the length of
    the block. Where that list is missing (another transformers version), one line says so and
    training runs without progress lines.
    """
    import transformers.trainer as trainer_module

    defaults = getattr(trainer_module, "DEFAULT_CALLBACKS", None)
    if not isinstance(defaults, list):
        clock.progress("(no training progress lines: transformers.trainer.DEFAULT_CALLBACKS not found)")
        yield
        return
    callback = training_progress(clock, every_s)
    trainer_module.DEFAULT_CALLBACKS = [*defaults, callback]
    try:
        yield
    finally:
        trainer_module.DEFAULT_CALLBACKS = defaults
