"""Named stages of a long command, timed as they run, and the profile table at the end.

``make demo`` runs for minutes on two CPU cores; each stage prints a line when it starts and
one with its wall-clock and CPU seconds when it ends, every line prefixed with the time since
the command started, and long training loops print a progress line every ``every_s`` seconds
(``training_progress``). The profile at the end lists every stage with its share of the total.
A stage may run in a second process beside the others (``BackgroundJob``); its lines carry
the same clock, and the profile counts the time the stages overlap once.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator


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
        self.listeners: list[Callable[[], None]] = []  # called at each stage start and training step (tick)
        self._current: str | None = None

    def elapsed(self) -> float:
        return self.wall_clock() - self.started

    def line(self, message: str) -> None:
        self.write(f"[{format_elapsed(self.elapsed()):>6}] {message}")

    def tick(self) -> None:
        """Let the listeners look at the world (e.g. whether a background job has finished)."""
        for listener in list(self.listeners):
            listener()

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
        self.tick()
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


def training_progress(clock: StageClock, every_s: float = 20.0):
    """A ``transformers.TrainerCallback`` printing ``step N/M, loss L`` through ``clock`` at most every
    ``every_s`` seconds (and at the last step); the loss is the latest one the trainer logged.
    Each step also ticks the clock (its listeners run)."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def __init__(self):
            self.last_print = time.monotonic()
            self.loss: float | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_step_end(self, args, state, control, **kwargs):
            clock.tick()
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


def _print_flushed(line: str) -> None:
    # Two processes write to one terminal or pipe: each line goes out whole and at once.
    print(line, flush=True)


def _follow_thread_share(share) -> Callable[[], None]:
    """A clock listener for the second process: torch's intra-op threads follow ``share.value``.

    Called from the training loop's own thread (each step ticks the clock): OpenMP's thread
    count is a per-thread setting, so setting it from another thread would not take."""
    import torch

    def follow() -> None:
        wanted = max(1, share.value)
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)

    follow()
    return follow


def _run_job(connection, fn: Callable[..., Any], args: tuple, started: float, setup: Callable[[], None] | None,
             threads=None) -> None:
    """In the second process: ``fn(*args, clock=...)`` with a clock on the command's start; sends back
    ("ok", result, stages) or ("error", exception, stages)."""
    clock = StageClock(_print_flushed, started=started)
    try:
        if setup is not None:
            setup()
        if threads is not None:
            clock.listeners.append(_follow_thread_share(threads))
        outcome = ("ok", fn(*args, clock=clock), clock.stages)
    except BaseException as error:  # sent to the parent, which raises it
        outcome = ("error", error, clock.stages)
    try:
        connection.send(outcome)
    except Exception as error:  # an exception or result that does not pickle
        connection.send(("error", RuntimeError(f"{outcome[1]!r} (could not be sent back: {error})"), clock.stages))
    connection.close()


class BackgroundJob:
    """``fn(*args, clock=clock)`` run in a second process (spawned) while this one goes on.

    ``fn`` and ``args`` must pickle (a module-level function). The job's stage lines print as
    they happen, on ``clock``'s time; when it has finished (``poll`` sees it at every ``clock.tick``,
    or ``result`` waits for it), its stages join ``clock``'s profile, marked as run in parallel,
    and ``on_done`` is called. ``setup`` runs first in the second process.
    ``threads``: torch's intra-op threads in the second process, followed at each clock tick there
    (each training step), so ``lend_threads`` can give it more while this process only waits.
    ``result`` returns what ``fn`` returned, or raises what it raised. The second process is a
    daemon: it ends when this process ends, so an error here never leaves it training on.
    """

    def __init__(self, clock: StageClock, fn: Callable[..., Any], *args: Any,
                 setup: Callable[[], None] | None = None, on_done: Callable[[], None] | None = None,
                 threads: int | None = None):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.clock = clock
        self.on_done = on_done
        self._threads = None if threads is None else context.Value("i", threads, lock=False)
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_run_job, args=(send, fn, args, clock.started, setup, self._threads),
                                        daemon=True, name=f"background {getattr(fn, '__name__', 'job')}")
        self._process.start()
        send.close()  # the child holds the only sending end: its exit ends the pipe
        self._outcome: tuple[Any, BaseException | None] | None = None
        clock.listeners.append(self.poll)

    def lend_threads(self, threads: int) -> None:
        """Let the second process use ``threads`` torch threads from its next training step on (a job
        started without ``threads`` keeps its own)."""
        if self._threads is not None:
            self._threads.value = threads

    def poll(self) -> bool:
        """True once the job has finished (and its stages are in the profile)."""
        if self._outcome is None and (self._receive.poll() or not self._process.is_alive()):
            self._finish()
        return self._outcome is not None

    def result(self) -> Any:
        if self._outcome is None:
            self._finish()
        value, error = self._outcome
        if error is not None:
            raise error
        return value

    def _finish(self) -> None:
        try:
            status, value, stages = self._receive.recv()
        except EOFError:
            self._process.join()
            status, value, stages = "error", RuntimeError(
                f"{self._process.name} ended (exit code {self._process.exitcode}) without a result"), []
        self._process.join()
        self._outcome = (value, None) if status == "ok" else (None, value)
        self.clock.stages += [replace(s, note=", ".join(filter(None, [s.note, "second process, in parallel"])))
                              for s in stages]
        self.clock.listeners.remove(self.poll)
        if self.on_done is not None:
            self.on_done()
