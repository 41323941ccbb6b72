"""Stage timing of `make demo`: stages print in order with their times, training prints progress, the profile adds up."""

import re
import time
from pathlib import Path

import pytest

from steering_assets.demo.stages import StageClock, format_elapsed, trainer_progress, training_progress


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


def _tiny_trainer(tmp_path, steps: int, callbacks=None):
    import torch
    from transformers import Trainer, TrainingArguments

    class Regression(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)

        def forward(self, x, y):
            return {"loss": torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), y)}

    torch.manual_seed(0)
    x = torch.randn(64, 4)
    rows = [{"x": row, "y": row.sum()} for row in x]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=8, logging_steps=1,
                             learning_rate=0.05, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True)
    return Trainer(model=Regression(), args=args, train_dataset=rows, callbacks=callbacks)


def test_training_progress_prints_step_and_loss(tmp_path):
    lines = []
    clock = StageClock(lines.append)
    with clock.stage("fit"):
        _tiny_trainer(tmp_path, 4, callbacks=[training_progress(clock, every_s=0)]).train()
    progress = [line for line in lines if "step" in line]
    steps = [int(re.search(r"step (\d+)/4", line).group(1)) for line in progress]
    assert steps == [1, 2, 3, 4]
    # The loss is the one the trainer logged last (logging_steps=1: the previous step's).
    assert all(re.search(r"fit: step \d+/4, loss \d+\.\d{3}$", line) for line in progress[1:])


def test_training_progress_is_quiet_between_intervals(tmp_path):
    lines = []
    clock = StageClock(lines.append)
    _tiny_trainer(tmp_path, 5, callbacks=[training_progress(clock, every_s=3600)]).train()
    assert len(lines) == 1 and re.search(r"\]   step 5/5, loss \d+\.\d{3}$", lines[0])


def test_trainer_progress_reaches_trainers_built_inside_the_block_only(tmp_path):
    import transformers.trainer

    before = list(transformers.trainer.DEFAULT_CALLBACKS)
    lines = []
    clock = StageClock(lines.append)
    with trainer_progress(clock, every_s=0):
        _tiny_trainer(tmp_path / "a", 2).train()
    assert [re.search(r"step (\d)/2", line).group(1) for line in lines] == ["1", "2"]
    assert transformers.trainer.DEFAULT_CALLBACKS == before
    _tiny_trainer(tmp_path / "b", 2).train()
    assert len(lines) == 2


def test_cached_workspace_build_says_so_through_the_clock(demo_workspace):
    from steering_assets.demo.build import build_demo_workspace

    lines = []
    workspace, built = build_demo_workspace(demo_workspace.root, pretrain_steps=0, clock=StageClock(lines.append),
                                            steering_judge_steps=0)
    assert not built
    assert [re.sub(r"^\[ *\w+\] ", "", line).split(":")[0] for line in lines] == [
        "demo corpus and demo model", "demo steering judge", "concepts and SAEs", "scenarios and demo judge"]
    assert all("cached" in line or "none (0 steps)" in line for line in lines)


def test_overlapping_stages_are_counted_once_in_the_uncovered_time():
    clocks, lines = FakeClocks(), []
    clock = clock_with(lines, clocks)
    clock.record("judge (second process)", 40.0, 38.0, start_s=10.0)  # 10-50, beside the stage below
    with clock.stage("pretraining"):  # 0-60
        clocks.advance(60, cpu=60)
    clocks.advance(15)  # 60-75: no stage
    rows = {r[0]: r for r in clock.profile_rows()}
    assert rows["other (start-up, between stages)"][1] == "15.0"
    assert rows["total"][1] == "75.0"


def job_writing_stages(count: int, fail: bool = False, *, clock: StageClock) -> int:
    """A cheap background job: two stages, the second raising when ``fail``."""
    with clock.stage("first job stage"):
        time.sleep(0.05)
    with clock.stage("second job stage"):
        if fail:
            raise ValueError(f"bad item {count}")
    return count * 2


def test_background_job_prints_on_the_same_clock_and_joins_the_profile(capfd):
    from steering_assets.demo.stages import BackgroundJob

    lines, done = [], []
    clock = StageClock(lines.append, started=time.time() - 100)
    job = BackgroundJob(clock, job_writing_stages, 21, on_done=lambda: done.append(True))
    with clock.stage("main stage"):
        pass
    assert job.result() == 42 and done == [True]
    child_lines = [line for line in capfd.readouterr().out.splitlines() if "job stage" in line]
    assert [re.sub(r"^\[ *\w+\] ", "", line) for line in child_lines][0::2] == ["first job stage ...", "second job stage ..."]
    # The command started 100 s before: the second process's lines count from the same start.
    assert all(re.match(r"\[ *1m\d\ds\]", line) for line in child_lines)
    names = [s.name for s in clock.stages]
    assert names == ["main stage", "first job stage", "second job stage"]
    assert all(s.note == "second process, in parallel" for s in clock.stages[1:])
    assert all(s.start_s >= 99 for s in clock.stages)
    assert job.poll() and not clock.listeners


def test_background_job_raises_its_error_here_and_records_the_failed_stage():
    from steering_assets.demo.stages import BackgroundJob

    clock = StageClock(lambda line: None)
    job = BackgroundJob(clock, job_writing_stages, 5, True)
    with pytest.raises(ValueError, match="bad item 5"):
        job.result()
    assert [(s.name, s.note) for s in clock.stages] == [
        ("first job stage", "second process, in parallel"), ("second job stage", "failed, second process, in parallel")]


def _wait_for(path: Path) -> None:
    deadline = time.time() + 60
    while not path.exists() and time.time() < deadline:
        time.sleep(0.02)


def job_counting_threads(folder: str, *, clock: StageClock) -> list[int]:
    """Torch's thread count in the second process at its start, and after a tick once the parent has lent more."""
    import torch

    seen = [torch.get_num_threads()]
    (Path(folder) / "started").touch()
    _wait_for(Path(folder) / "lent")
    clock.tick()  # a training step: the lent threads take effect here
    seen.append(torch.get_num_threads())
    return seen


def test_a_waiting_process_lends_its_threads_to_the_background_job(tmp_path):
    from steering_assets.demo.stages import BackgroundJob

    job = BackgroundJob(StageClock(lambda line: None), job_counting_threads, str(tmp_path), threads=1)
    _wait_for(tmp_path / "started")
    job.lend_threads(2)
    (tmp_path / "lent").touch()
    assert job.result() == [1, 2]


def test_background_job_is_polled_at_each_tick():
    from steering_assets.demo.stages import BackgroundJob

    clock = StageClock(lambda line: None)
    job = BackgroundJob(clock, job_writing_stages, 1)
    deadline = time.time() + 60
    while not job.poll() and time.time() < deadline:
        clock.tick()
        time.sleep(0.05)
    assert job.poll() and len(clock.stages) == 2
