"""Training a demo judge: TRL SFT on rating conversations, loss on the answer only, swapped in whole.

Shared by the vetting judge (``demo/vetting.py``, a fresh tiny model) and the steering judge
(``demo/steering_judge.py``, the demo model fine-tuned); each decides its model, tokenizer and
conversations, this trains and saves.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any


def train_judge_sft(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], judge_path: Path, *,
                    steps: int, batch_size: int, learning_rate: float, max_length: int, seed: int) -> dict:
    """Fine-tune ``model`` on ``conversations`` (``[{"role": "user", ...}, {"role": "assistant", ...}]``)
    with TRL's ``SFTTrainer`` (cosine schedule, 5% warmup, ``assistant_only_loss``) for ``steps``
    steps of ``batch_size``, and save model and tokenizer to ``judge_path``.

    The judge is written to a staging folder beside ``judge_path`` and renamed into place when
    complete, so a crash never leaves a half-written judge. Returns ``steps``, ``examples``,
    ``seconds`` (training wall time), ``first_loss``, ``final_loss`` and ``train_loss``.
    """
    import datasets
    import torch
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()
    judge_path = Path(judge_path)
    torch.manual_seed(seed)
    staging = judge_path.parent / f".{judge_path.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    args = SFTConfig(
        output_dir=str(staging / "checkpoints"), max_steps=steps, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, lr_scheduler_type="cosine", warmup_steps=steps // 20, weight_decay=0.0,
        save_strategy="no", logging_steps=max(1, steps // 6), seed=seed, bf16=False, use_cpu=True, report_to=[],
        max_length=max_length, activation_checkpointing=False, disable_tqdm=True, assistant_only_loss=True,
    )
    trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer,
                         train_dataset=datasets.Dataset.from_list([{"messages": c} for c in conversations]))
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    result = trainer.train()
    shutil.rmtree(staging / "checkpoints", ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(judge_path, ignore_errors=True)
    staging.rename(judge_path)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"steps": steps, "examples": len(conversations), "seconds": round(time.perf_counter() - started, 1),
            "first_loss": losses[0], "final_loss": losses[-1], "train_loss": result.training_loss}
