"""Training steering vectors with TRL's SFTTrainer, one persona or K personas in the same forward pass.

The base model is frozen, so K personas can share every forward pass: each example
adds its own persona's vector (a per-example index travels from the batch to the
hook). To make K-together equal K-alone, everything that could couple personas is
kept per persona:

- data order: persona k's batches come from its own seeded stream (seeded by its
  name, not its position), whatever the other personas are;
- loss: each persona's loss is the mean over its own assistant tokens, and the total
  is their sum, so the gradient of vector k is the gradient of persona k's loss;
- optimiser: AdamW is elementwise, so the rows of one ``[K, d]`` parameter have
  independent moments;
- gradient clipping: each row is clipped to ``max_grad_norm`` on its own (a global
  norm would let one persona shrink another's step);
- validation and early stopping: tracked per persona, each keeping its best vector.

Checkpoints hold only the steering state (never the frozen base model), so resuming
after a crash reloads vectors, best vectors, optimiser, scheduler and RNG state and
continues with the exact next batch.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from steering_assets.steering.config import SteeringTrainingConfig
from steering_assets.steering.errors import CheckpointMismatchError, EmptyTrainingSplitError, NonFiniteLossError
from steering_assets.steering.hook import SteeringHandle, attach_steering, check_layer, default_layer, freeze, hidden_size

STATE_FILE = "steering_state.safetensors"
META_FILE = "steering_checkpoint.json"
HISTORY_FILE = "steering_history.json"
LAST_GOOD_FILE = "last_good_vectors.safetensors"


@dataclass
class PersonaData:
    """One persona's training and validation conversations (lists of {role, content} turns)."""

    name: str
    train: list[list[dict[str, str]]]
    validation: list[list[dict[str, str]]] = field(default_factory=list)


@dataclass
class TrainedVector:
    name: str
    vector: torch.Tensor  # best vector by validation loss (final vector when never validated)
    best_validation_loss: float | None
    best_step: int | None
    steps: int
    train_loss: list[tuple[int, float]]  # (optimizer step, loss)
    validation_loss: list[tuple[int, float]]


@dataclass
class TrainingOutcome:
    vectors: list[TrainedVector]
    layer: int
    tokens_per_second: float
    resumed_from: str | None
    assistant_only_loss: bool


def persona_seed(seed: int, name: str) -> int:
    # crc32 is stable across processes (unlike hash()), so a persona's stream never depends on K.
    return zlib.crc32(f"{seed}:{name}".encode())


def _epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(size)


def rows_needed(size: int, micro_steps: int, batch_size: int, seed: int) -> list[int]:
    """The rows of a persona that ``micro_steps`` batches will draw (all of them once an epoch completes)."""
    if micro_steps * batch_size >= size:
        return list(range(size))
    return sorted(_epoch_permutation(seed, 0, size)[: micro_steps * batch_size].tolist())


class StepBatches(torch.utils.data.Dataset):
    """Item s is micro-step s: one batch from every persona's own seeded stream, collated together.

    Persona k's stream permutes all its ``sizes[k]`` training rows every epoch, whatever
    subset was tokenised; ``lookup[k]`` maps a persona row to its row in ``dataset``.
    """

    def __init__(self, dataset, lookup: list[dict[int, int]], sizes: list[int], names: list[str], batch_size: int, n_micro_steps: int, seed: int, collator):
        self.dataset = dataset
        self.lookup = lookup
        self.sizes = sizes
        self.seeds = [persona_seed(seed, name) for name in names]
        self.batch_size = batch_size
        self.n_micro_steps = n_micro_steps
        self.collator = collator
        self._permutations: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return self.n_micro_steps

    def rows_for(self, k: int, step: int) -> list[int]:
        per_epoch = math.ceil(self.sizes[k] / self.batch_size)
        epoch, position = divmod(step, per_epoch)
        if (k, epoch) not in self._permutations:
            self._permutations = {key: v for key, v in self._permutations.items() if key[0] != k}
            self._permutations[(k, epoch)] = _epoch_permutation(self.seeds[k], epoch, self.sizes[k])
        chosen = self._permutations[(k, epoch)][position * self.batch_size : (position + 1) * self.batch_size]
        return [self.lookup[k][int(i)] for i in chosen]

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        examples, index = [], []
        for k in range(len(self.sizes)):
            for row in self.rows_for(k, step):
                item = self.dataset[row]
                examples.append({"input_ids": item["input_ids"], "labels": item["labels"]})
                index.append(k)
        batch = self.collator(examples)
        batch["persona_index"] = torch.tensor(index, dtype=torch.long)
        return batch


def _only_item(items: list):
    return items[0]


def per_persona_token_losses(logits: torch.Tensor, labels: torch.Tensor, persona_index: torch.Tensor, n_personas: int):
    """Sum of next-token losses and number of counted tokens, per persona."""
    shifted = logits[:, :-1, :].float()
    targets = labels[:, 1:]
    mask = targets != -100
    token_loss = F.cross_entropy(shifted.transpose(1, 2), targets.clamp(min=0), reduction="none") * mask
    sums = torch.zeros(n_personas, device=logits.device, dtype=torch.float32).index_add(0, persona_index, token_loss.sum(1))
    counts = torch.zeros(n_personas, device=logits.device, dtype=torch.float32).index_add(0, persona_index, mask.sum(1).float())
    return sums, counts


def _build_trainer_class():
    from transformers import TrainerCallback
    from trl import SFTTrainer

    class PerPersonaGradClip(TrainerCallback):
        """Clip each persona's gradient row on its own, just before the optimiser step."""

        def __init__(self, parameter: torch.nn.Parameter, max_norm: float):
            self.parameter, self.max_norm = parameter, max_norm

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            grad = self.parameter.grad
            if grad is not None and self.max_norm > 0:
                norms = grad.norm(dim=1, keepdim=True)
                grad.mul_((self.max_norm / (norms + 1e-6)).clamp(max=1.0))

    class SteeringTrainer(SFTTrainer):
        def __init__(self, *args, steering_handle: SteeringHandle, persona_names: list[str], persona_sizes: list[int], meta: dict, config: SteeringTrainingConfig, **kwargs):
            self.handle = steering_handle
            self.names = persona_names
            self.persona_sizes = persona_sizes
            self.meta = meta
            self.steering_config = config
            k = len(persona_names)
            self.best_vectors = torch.zeros_like(steering_handle.steering.vectors.data)
            self.best_loss = torch.full((k,), float("inf"))
            self.best_step = torch.full((k,), -1, dtype=torch.long)
            self.bad_evals = torch.zeros(k, dtype=torch.long)
            self.history: dict[str, list] = {"train": [[] for _ in range(k)], "validation": [[] for _ in range(k)]}
            self.trained_tokens = 0
            super().__init__(*args, **kwargs)
            # Our loss is a per-persona mean: let the Trainer divide it across accumulation steps.
            self.loss_is_scaled_for_ga = False
            self.add_callback(PerPersonaGradClip(steering_handle.steering.vectors, config.max_grad_norm))

        # ---- data ----
        def _row_lookup(self, dataset) -> list[dict[int, int]]:
            lookup: list[dict[int, int]] = [{} for _ in self.names]
            for row, (k, source) in enumerate(zip(dataset["persona_index"], dataset["source_row"])):
                lookup[k][source] = row
            return lookup

        def get_train_dataloader(self):
            steps = self.args.max_steps * self.args.gradient_accumulation_steps
            batches = StepBatches(
                self.train_dataset, self._row_lookup(self.train_dataset), self.persona_sizes, self.names,
                self.args.per_device_train_batch_size, steps, self.steering_config.seed, self.data_collator,
            )
            # batch_size=1 + unwrap (not batch_size=None) so accelerate can skip batches on resume.
            return torch.utils.data.DataLoader(batches, batch_size=1, shuffle=False, collate_fn=_only_item)

        # ---- loss ----
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            persona_index = inputs.pop("persona_index")
            labels = inputs.pop("labels")
            self.handle.steering.set_persona_index(persona_index)
            try:
                outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"))
            finally:
                self.handle.steering.set_persona_index(None)
            sums, counts = per_persona_token_losses(outputs.logits, labels, persona_index, len(self.names))
            present = counts > 0
            losses = sums[present] / counts[present]
            if not torch.isfinite(losses).all():
                self._stop_on_non_finite(sums / counts.clamp(min=1))
            step = self.state.global_step
            for k, value in zip(present.nonzero().flatten().tolist(), losses.detach().tolist()):
                self.history["train"][k].append((step, value))
            self.trained_tokens += int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else labels.numel()
            loss = losses.sum()
            return (loss, outputs) if return_outputs else loss

        def _stop_on_non_finite(self, per_persona: torch.Tensor) -> None:
            bad = [self.names[k] for k, v in enumerate(per_persona.tolist()) if not math.isfinite(v)]
            path = Path(self.args.output_dir) / LAST_GOOD_FILE
            # The vectors have not been updated with this step's gradient yet: they are the last good ones.
            _save_tensors({"vectors": self.handle.steering.vectors.detach(), "best_vectors": self.best_vectors}, path)
            raise NonFiniteLossError(
                f"training loss became NaN/inf at step {self.state.global_step} for {', '.join(bad)}; training "
                f"stopped. The last good vectors are in {path}; lower the learning rate or check the data."
            )

        # ---- validation and early stopping ----
        @torch.no_grad()
        def persona_validation_losses(self) -> torch.Tensor:
            dataset = self.eval_dataset
            sums = torch.zeros(len(self.names))
            counts = torch.zeros(len(self.names))
            if dataset is None or len(dataset) == 0:
                return torch.full((len(self.names),), float("nan"))
            was_training = self.model.training
            self.model.eval()
            size = self.args.per_device_eval_batch_size
            device = self.handle.steering.vectors.device
            for start in range(0, len(dataset), size):
                rows = [dataset[i] for i in range(start, min(start + size, len(dataset)))]
                batch = self.data_collator([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
                index = torch.tensor([r["persona_index"] for r in rows], device=device)
                self.handle.steering.set_persona_index(index)
                try:
                    logits = self.model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
                finally:
                    self.handle.steering.set_persona_index(None)
                s, c = per_persona_token_losses(logits, batch["labels"].to(device), index, len(self.names))
                sums += s.cpu()
                counts += c.cpu()
            if was_training:
                self.model.train()
            return torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("nan")))

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            losses = self.persona_validation_losses()
            step = self.state.global_step
            vectors = self.handle.steering.vectors.detach().cpu()
            patience = self.steering_config.early_stopping_patience
            for k, value in enumerate(losses.tolist()):
                if math.isnan(value):
                    continue
                self.history["validation"][k].append((step, value))
                if value < self.best_loss[k]:
                    self.best_loss[k], self.best_step[k], self.bad_evals[k] = value, step, 0
                    self.best_vectors[k] = vectors[k]
                else:
                    self.bad_evals[k] += 1
            finite = losses[~torch.isnan(losses)]
            metrics = {f"{metric_key_prefix}_loss": float(finite.mean()) if len(finite) else float("nan")}
            self.log(metrics)
            if patience and len(finite) and bool((self.bad_evals[~torch.isnan(losses)] >= patience).all()):
                self.control.should_training_stop = True
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

        # ---- checkpoints: the steering state only, never the frozen base model ----
        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            folder = Path(output_dir or self.args.output_dir)
            folder.mkdir(parents=True, exist_ok=True)
            _save_tensors(
                {
                    "vectors": self.handle.steering.vectors.detach(),
                    "best_vectors": self.best_vectors,
                    "best_loss": self.best_loss,
                    "best_step": self.best_step,
                    "bad_evals": self.bad_evals,
                },
                folder / STATE_FILE,
            )
            (folder / META_FILE).write_text(json.dumps(self.meta, indent=2))
            (folder / HISTORY_FILE).write_text(json.dumps(self.history))

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
            from safetensors.torch import load_file

            folder = Path(resume_from_checkpoint)
            check_checkpoint_meta(folder, self.meta)
            state = load_file(str(folder / STATE_FILE))
            with torch.no_grad():
                self.handle.steering.vectors.copy_(state["vectors"])
            self.best_vectors, self.best_loss = state["best_vectors"], state["best_loss"]
            self.best_step, self.bad_evals = state["best_step"], state["bad_evals"]
            if (folder / HISTORY_FILE).is_file():
                self.history = json.loads((folder / HISTORY_FILE).read_text())

    return SteeringTrainer


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    from steering_assets.artifacts import atomic_path

    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def check_checkpoint_meta(folder: Path, expected: dict) -> None:
    meta_path = folder / META_FILE
    if not meta_path.is_file() or not (folder / STATE_FILE).is_file():
        raise CheckpointMismatchError(f"{folder} is not a steering checkpoint (no {META_FILE} / {STATE_FILE})")
    found = json.loads(meta_path.read_text())
    for key in ("model", "layer", "hidden_size", "personas"):
        if found.get(key) != expected.get(key):
            raise CheckpointMismatchError(
                f"checkpoint {folder} was written for {key}={found.get(key)!r}, but this run has "
                f"{key}={expected.get(key)!r}; delete the checkpoint folder or train with the matching setting"
            )


def has_generation_markers(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None) or ""
    return "{% generation %}" in template.replace("{%-", "{%").replace("-%}", "%}").replace(" generation -", " generation ")


def last_checkpoint(output_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None


def train_steering_vectors(
    model: torch.nn.Module,
    tokenizer: Any,
    personas: Sequence[PersonaData],
    config: SteeringTrainingConfig,
    output_dir: Path | str,
    *,
    model_name: str,
    resume: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainingOutcome:
    """Train one steering vector per persona (all in the same forward passes) on a frozen model."""
    import datasets
    from transformers import PrinterCallback
    from trl import SFTConfig

    from steering_assets.personas.budget import ChatTemplateMissingError

    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateMissingError(
            f"tokenizer of {model_name!r} has no chat template; steering vectors are trained on chat-formatted "
            "persona conversations"
        )
    empty = [p.name for p in personas if not p.train]
    if empty:
        raise EmptyTrainingSplitError(
            f"no training examples for {', '.join(empty)}: the training split is empty (check its "
            "examples_survive_filtering check)"
        )
    names = [p.name for p in personas]
    if len(set(names)) != len(names):
        raise ValueError(f"persona names must be unique, got {names}")
    datasets.disable_progress_bars()
    freeze(model)
    layer = check_layer(model, config.layer if config.layer is not None else default_layer(model))
    output_dir = Path(output_dir)
    meta = {"model": model_name, "layer": layer, "hidden_size": hidden_size(model), "personas": names}
    resume_from = last_checkpoint(output_dir) if resume else None
    if resume_from:
        check_checkpoint_meta(Path(resume_from), meta)

    max_steps = config.steps_for(max(len(p.train) for p in personas))
    micro_steps = max_steps * config.gradient_accumulation_steps
    train_rows = []
    for k, persona in enumerate(personas):
        # Only the rows the schedule will draw are tokenised: short runs skip most of a large split.
        needed = rows_needed(len(persona.train), micro_steps, config.per_device_batch_size, persona_seed(config.seed, persona.name))
        train_rows += [{"messages": persona.train[i], "persona_index": k, "source_row": i} for i in needed]
    validation_rows = [{"messages": m, "persona_index": k} for k, p in enumerate(personas) for m in p.validation]

    assistant_only = has_generation_markers(tokenizer)
    use_cpu = next(model.parameters()).device.type == "cpu"
    args = SFTConfig(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size * 2,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=0.0,  # clipped per persona by PerPersonaGradClip
        # Without any validation rows there is nothing to validate on: keep the final vector.
        eval_strategy="steps" if any(p.validation for p in personas) else "no",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        logging_steps=max(1, config.eval_steps // 5),
        seed=config.seed,
        bf16=False,
        fp16=False,
        use_cpu=use_cpu,
        report_to=[],
        assistant_only_loss=assistant_only,
        max_length=config.max_length,
        remove_unused_columns=False,
        activation_checkpointing=False,
        disable_tqdm=True,
        dataset_num_proc=None,
    )
    handle = attach_steering(model, layer, n_vectors=len(personas))
    try:
        trainer_class = _build_trainer_class()
        trainer = trainer_class(
            model=model,
            args=args,
            train_dataset=datasets.Dataset.from_list(train_rows),
            eval_dataset=datasets.Dataset.from_list(validation_rows) if validation_rows else None,
            processing_class=tokenizer,
            steering_handle=handle,
            persona_names=names,
            persona_sizes=[len(p.train) for p in personas],
            meta=meta,
            config=config,
        )
        trainer.remove_callback(PrinterCallback)
        if log is not None:
            trainer.add_callback(_log_callback(log, max_steps))
        result = trainer.train(resume_from_checkpoint=resume_from)
        final = handle.steering.vectors.detach().cpu().clone()
        vectors = []
        for k, name in enumerate(names):
            validated = int(trainer.best_step[k]) >= 0
            vectors.append(
                TrainedVector(
                    name=name,
                    vector=trainer.best_vectors[k].clone() if validated else final[k],
                    best_validation_loss=float(trainer.best_loss[k]) if validated else None,
                    best_step=int(trainer.best_step[k]) if validated else None,
                    steps=trainer.state.global_step,
                    train_loss=_per_step_mean(trainer.history["train"][k]),
                    validation_loss=[tuple(x) for x in trainer.history["validation"][k]],
                )
            )
        runtime = max(result.metrics.get("train_runtime", 0.0), 1e-9)
        return TrainingOutcome(vectors, layer, trainer.trained_tokens / runtime, resume_from, assistant_only)
    finally:
        handle.remove()


def _log_callback(log: Callable[[str], None], max_steps: int):
    """A TrainerCallback forwarding the periodic logs (loss, learning rate, eval loss) to ``log``."""
    from transformers import TrainerCallback

    class LogCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in (logs or {}).items()}
            log(f"step {state.global_step}/{max_steps}: {shown}")

    return LogCallback()


def _per_step_mean(points: list) -> list[tuple[int, float]]:
    by_step: dict[int, list[float]] = {}
    for step, value in points:
        by_step.setdefault(int(step), []).append(float(value))
    return [(step + 1, sum(v) / len(v)) for step, v in sorted(by_step.items())]
