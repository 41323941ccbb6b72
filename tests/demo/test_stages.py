"""Stage timing of `make demo`: stages print in order with their times, and the profile adds up."""

import re

import pytest

from demo.stages import StageClock, format_elapsed


class FakeClocks:
    """Wall and CPU clocks the test moves by hand."""

    def __init__(self):
        self.wall, self.cpu = 1000.0, 0.0

    def advance(self, wall: float, cpu: float = 0.0):
        self.wall += wall
        self.cpu += cpu


def clock_with(lines: list[str], clocks: FakeClocks, started: float | None = None) -> StageClock:
    return StageClock(lines.append, started=started, wall_clock=lambda: clocks.wall, cpu_clock=lambda: clocks.cpu)


def test_format_elapsed():
    assert [format_elapsed(s) for s in (0, 42.4, 59.6, 60, 83.4, 754)] == ["0s", "42s", "1m00s", "1m00s", "1m23s", "12m34s"]


def test_stages_print_in_order_with_their_times_and_the_profile_adds_up():
    clocks, lines = FakeClocks(), []
    clock = clock_with(lines, clocks, started=clocks.wall - 30)  # the install took 30 s before this process
    clock.record("install", clock.elapsed())
    with clock.stage("pretraining") as note:
        clocks.advance(25, cpu=45)
        clock.progress("step 200/400, loss 2.100")
        clocks.advance(25, cpu=45)
        note.parts["steering_vector"] = 20.0
    clocks.advance(5)  # between stages: counted as "other"
    with clock.stage("vetting") as note:
        note.note = "cached"
        clocks.advance(40, cpu=60)

    assert lines == [
        "[   30s] install: 30s",
        "[   30s] pretraining ...",
        "[   55s]   pretraining: step 200/400, loss 2.100",
        "[ 1m20s] pretraining: 50s (90s CPU)",
        "[ 1m25s] vetting ...",
        "[ 2m05s] vetting: 40s (60s CPU, cached)",
    ]
    rows = clock.profile_rows()
    assert [r[0] for r in rows] == ["install", "pretraining", "  steering_vector", "vetting",
                                    "other (start-up, between stages)", "total"]
    by_name = {r[0]: r for r in rows}
    assert by_name["install"][1:4] == ["30.0", "-", "24%"]
    assert by_name["pretraining"][1:4] == ["50.0", "90.0", "40%"]
    assert by_name["other (start-up, between stages)"][1] == "5.0"
    assert by_name["total"][1] == "125.0" and by_name["total"][4] == "2m05s"
    # Parts are shown under their stage but not counted twice: stages + other = total.
    assert sum(float(r[1]) for r in rows[:-1] if not r[0].startswith("  ")) == float(by_name["total"][1])


def test_a_failing_stage_is_recorded_and_the_error_goes_on():
    clocks, lines = FakeClocks(), []
    clock = clock_with(lines, clocks)
    with pytest.raises(RuntimeError, match="judge stuck"):
        with clock.stage("demo judge"):
            clocks.advance(12, cpu=20)
            raise RuntimeError("judge stuck")
    assert lines[-1] == "[   12s] demo judge: 12s (20s CPU, failed)"
    assert clock.stages[0].note == "failed"


def test_overlapping_stages_are_counted_once_in_the_uncovered_time():
    clocks, lines = FakeClocks(), []
    clock = clock_with(lines, clocks)
    clock.record("install (before this process)", 40.0, 38.0, start_s=10.0)  # 10-50, beside the stage below
    with clock.stage("rollouts"):  # 0-60
        clocks.advance(60, cpu=60)
    clocks.advance(15)  # 60-75: no stage
    rows = {r[0]: r for r in clock.profile_rows()}
    assert rows["other (start-up, between stages)"][1] == "15.0"
    assert rows["total"][1] == "75.0"
