"""Teach the tiny demo model the demo corpus, so that steering it has something to find.

A randomly initialised model produces noise with or without a steering vector. Trained
on every persona's conversations *with* their system prompts (and on the baselines'
plain-assistant answers), the model learns each persona's voice as something a prompt
can switch on; a steering vector then has to find the same switch without the prompt.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Sequence


def demo_conversations(data_root: Path, limit: int, seed: int, drop_system_share: float = 0.5) -> list[list[dict[str, str]]]:
    """A seeded sample of conversations, balanced over persona files.

    Half of them lose their system prompt, as if the persona had surfaced unprompted:
    the model then holds every persona as a latent mode of its plain assistant turn,
    which is what a steering vector selects in real models.
    """
    rng = random.Random(seed)
    per_file: list[list[list[dict[str, str]]]] = []
    for path in sorted(Path(data_root).glob("*/*/responses/*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            per_file.append([json.loads(line)["conversation"] for line in handle])
    share = max(1, limit // len(per_file))
    sample = [c for convs in per_file for c in rng.sample(convs, min(share, len(convs)))]
    sample = [[t for t in c if t["role"] != "system"] if rng.random() < drop_system_share else c for c in sample]
    rng.shuffle(sample)
    return sample


def pretrain_demo_model(model_path: Path, data_root: Path, *, steps: int = 400, batch_size: int = 8, seed: int = 0,
                        max_length: int = 256, callbacks: Sequence = ()) -> dict:
    """Fine-tune all weights of the saved demo model on demo conversations (TRL SFT), in place.

    ``max_length``: tokens per conversation (longer ones are cut); ``callbacks``: extra ``transformers.TrainerCallback`` objects (``make demo`` prints progress with one).
    """
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    conversations = demo_conversations(data_root, steps * batch_size, seed)
    args = SFTConfig(
        output_dir=str(model_path.parent / ".pretrain-checkpoints"),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=3e-3,
        lr_scheduler_type="cosine",
        warmup_steps=steps // 20,
        weight_decay=0.0,
        save_strategy="no",
        logging_steps=max(1, min(10, steps // 6)),  # a recent loss for the progress lines
        seed=seed,
        bf16=False,
        use_cpu=True,
        report_to=[],
        max_length=max_length,
        activation_checkpointing=False,
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list([{"messages": c} for c in conversations]),
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    result = trainer.train()
    model.save_pretrained(model_path)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"steps": steps, "max_length": max_length, "seconds": round(time.perf_counter() - started, 1), "first_loss": losses[0], "final_loss": losses[-1], "train_loss": result.training_loss}
