"""Training steering vectors with TRL's SFTTrainer, one persona or K personas in the same forward pass.

The base model is frozen, so K personas can share every forward pass: each example
adds its own persona's vector (a per-example index travels from the batch to the
hook). To make K-together equal K-alone, everything that could couple personas is
kept per persona:

- data order: persona k's batches come from its own seeded stream (seeded by its
  name, not its position), whatever the other personas are;
- loss: each persona's loss is the mean over its own assistant-reply tokens in the whole
  optimizer step (every micro-batch of a gradient-accumulation window counted together, so
  batch 8 x accumulation 1 and batch 4 x accumulation 2 over the same rows give the same
  gradient), and the total is their sum, so the gradient of vector k is the gradient of
  persona k's loss;
- optimiser: AdamW is elementwise, so the rows of one ``[K, d]`` parameter have
  independent moments;
- gradient clipping: each row is clipped to ``max_grad_norm`` on its own (a global
  norm would let one persona shrink another's step);
- validation and early stopping: tracked per persona, each keeping its best vector.

The loss covers the assistant replies (and their end-of-turn token) only, whatever the chat
template: TRL's ``assistant_only_loss`` when the template carries ``{% generation %}`` tags,
else a mask located in the rendering (``steering_assets.models.assistant_mask``); the
method is recorded with every vector.

Checkpoints hold only the steering state (never the frozen base model), so resuming
after a crash reloads vectors, best vectors, optimiser, scheduler and RNG state and
continues with the exact next batch.
"""

from __future__ import annotations

import functools
import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from steering_assets.models.assistant_mask import GENERATION_TAGS, AssistantMaskError, mask_method, rendered_reply_mask
from steering_assets.models.errors import CheckpointMismatchError, EmptyTrainingSplitError, NonFiniteLossError
from steering_assets.models.hooks import (
    SteeringHandle,
    attach_steering,
    check_layer,
    default_layer,
    freeze,
    hidden_size,
)
from steering_assets.models.loading import padded_batches, padding_token_id
from steering_assets.steering.config import SteeringTrainingConfig

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
    assistant_mask: str  # how the loss mask was built: "generation_tags" or "rendered_reply"
    loss_token_share: float  # loss tokens / all tokens of the training rows (after truncation)
    rows_without_loss_tokens: dict[str, int] = field(default_factory=dict)  # truncated before their reply: skipped

    @property
    def assistant_only_loss(self) -> bool:
        return True


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
        # A row truncated before its reply has no loss tokens; TRL drops it from the prepared
        # dataset (counted in TrainingOutcome.rows_without_loss_tokens), so it is skipped here.
        return [self.lookup[k][int(i)] for i in chosen if int(i) in self.lookup[k]]

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        examples, index = [], []
        for k in range(len(self.sizes)):
            for row in self.rows_for(k, step):
                item = self.dataset[row]
                examples.append({"input_ids": item["input_ids"], "labels": item["labels"]})
                index.append(k)
        if not examples:
            raise EmptyTrainingSplitError(f"micro-step {step} drew no row with reply tokens within max_length")
        batch = self.collator(examples)
        batch["persona_index"] = torch.tensor(index, dtype=torch.long)
        return batch


def _only_item(items: list):
    return items[0]


def per_persona_token_counts(labels: torch.Tensor, persona_index: torch.Tensor, n_personas: int) -> torch.Tensor:
    """Number of next-token targets (labels that are not -100, after the shift), per persona: ``[K]``."""
    mask = labels[:, 1:] != -100
    index = persona_index.to(labels.device)
    return torch.zeros(n_personas, device=labels.device, dtype=torch.float32).index_add(0, index, mask.sum(1).float())


def per_persona_token_losses(logits: torch.Tensor, labels: torch.Tensor, persona_index: torch.Tensor, n_personas: int):
    """Sum of next-token losses and number of counted tokens, per persona."""
    shifted = logits[:, :-1, :].float()
    targets = labels[:, 1:].to(logits.device)
    persona_index = persona_index.to(logits.device)
    mask = targets != -100
    token_loss = F.cross_entropy(shifted.transpose(1, 2), targets.clamp(min=0), reduction="none") * mask
    sums = torch.zeros(n_personas, device=logits.device, dtype=torch.float32).index_add(0, persona_index, token_loss.sum(1))
    counts = torch.zeros(n_personas, device=logits.device, dtype=torch.float32).index_add(0, persona_index, mask.sum(1).float())
    return sums, counts


class _PerPersonaGradClip:
    """Clip each persona's gradient row on its own, just before the optimiser step (mixed into a
    ``transformers.TrainerCallback`` by ``_build_trainer_class``)."""

    def __init__(self, parameter: torch.nn.Parameter, max_norm: float):
        self.parameter, self.max_norm = parameter, max_norm

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        grad = self.parameter.grad
        if grad is not None and self.max_norm > 0:
            norms = grad.norm(dim=1, keepdim=True)
            grad.mul_((self.max_norm / (norms + 1e-6)).clamp(max=1.0))


class _SteeringTrainerMethods:
    """One steering vector per persona trained in the same forward passes: per-persona token-mean losses,
    validation, early stopping and checkpoints of the steering state only. Mixed into TRL's ``SFTTrainer``
    by ``_build_trainer_class`` (so trl loads only when a run trains)."""

    grad_clip_class: type = _PerPersonaGradClip

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
        # Reply tokens of each persona over the current optimizer step (all accumulated micro-batches).
        self.window_counts: torch.Tensor | None = None
        super().__init__(*args, **kwargs)
        # compute_loss divides by the whole accumulation window's token counts: the Trainer must not divide again.
        self.loss_is_scaled_for_ga = True
        self.add_callback(self.grad_clip_class(steering_handle.steering.vectors, config.max_grad_norm))

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        # The Trainer fetches every micro-batch of an optimizer step before the first forward:
        # count each persona's loss tokens over all of them, the denominator of its mean loss.
        batch_samples, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        counts = torch.zeros(len(self.names))
        for batch in batch_samples:
            counts += per_persona_token_counts(batch["labels"], batch["persona_index"], len(self.names)).cpu()
        self.window_counts = counts
        return batch_samples, num_items

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
        if not torch.isfinite(sums[present]).all():
            self._stop_on_non_finite(sums / counts.clamp(min=1))
        window = self.window_counts.to(sums.device) if self.window_counts is not None else counts
        # Persona k's loss is the mean over its reply tokens in the whole optimizer step; this
        # micro-batch contributes its token-loss sum over that step's count.
        contributions = sums / window.clamp(min=1)
        step = self.state.global_step
        for k, value in zip(present.nonzero().flatten().tolist(), contributions[present].detach().tolist()):
            self.history["train"][k].append((step, value))
        self.trained_tokens += int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else labels.numel()
        loss = contributions[present].sum()
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


@functools.cache
def _build_trainer_class() -> type:
    """``SteeringTrainer``: the methods above on TRL's ``SFTTrainer``, with the clipping callback on
    ``transformers.TrainerCallback``; built on first use, so importing this module loads neither."""
    from transformers import TrainerCallback
    from trl import SFTTrainer

    clip = type("PerPersonaGradClip", (_PerPersonaGradClip, TrainerCallback), {})
    return type("SteeringTrainer", (_SteeringTrainerMethods, SFTTrainer), {"grad_clip_class": clip})


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    from steering_assets.core.artifacts import atomic_path

    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def check_checkpoint_meta(folder: Path, expected: dict) -> None:
    meta_path = folder / META_FILE
    if not meta_path.is_file() or not (folder / STATE_FILE).is_file():
        raise CheckpointMismatchError(f"{folder} is not a steering checkpoint (no {META_FILE} / {STATE_FILE})")
    found = json.loads(meta_path.read_text())
    for key in ("model", "layer", "hidden_size", "personas", "assistant_mask"):
        if found.get(key) != expected.get(key):
            raise CheckpointMismatchError(
                f"checkpoint {folder} was written for {key}={found.get(key)!r}, but this run has "
                f"{key}={expected.get(key)!r}; delete the checkpoint folder or train with the matching setting"
            )


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
    callbacks: Sequence[Any] = (),
) -> TrainingOutcome:
    """Train one steering vector per persona (all in the same forward passes) on a frozen model.

    ``callbacks`` are extra ``transformers.TrainerCallback``s (after the per-persona clipping).
    Raises ``ChatTemplateMissingError``, ``EmptyTrainingSplitError``, ``MissingPadTokenError``
    (no pad and no EOS token), ``AssistantMaskError`` (a reply the template renders differently),
    ``CheckpointMismatchError`` and ``NonFiniteLossError``, the first four before any training.
    """
    import datasets
    from transformers import PrinterCallback

    _check_training_inputs(tokenizer, personas, model_name)
    names = [p.name for p in personas]
    datasets.disable_progress_bars()
    freeze(model)
    layer = check_layer(model, config.layer if config.layer is not None else default_layer(model))
    output_dir = Path(output_dir)
    meta = {"model": model_name, "layer": layer, "hidden_size": hidden_size(model), "personas": names,
            "assistant_mask": mask_method(tokenizer)}
    resume_from = last_checkpoint(output_dir) if resume else None
    if resume_from:
        check_checkpoint_meta(Path(resume_from), meta)

    # Fail before any work when batches cannot be padded or the replies cannot be located.
    padding_token_id(tokenizer, model_name)
    method = mask_method(tokenizer)
    max_steps = config.steps_for(max(len(p.train) for p in personas))
    train_rows, validation_rows = _training_rows(tokenizer, method, personas, config, max_steps * config.gradient_accumulation_steps)
    args = _sft_config(config, output_dir, max_steps, method, validate=any(p.validation for p in personas),
                       use_cpu=next(model.parameters()).device.type == "cpu")
    handle = attach_steering(model, layer, n_vectors=len(personas))
    try:
        # Right padding with the pad token, or EOS for tokenizers without one (restored afterwards).
        with padded_batches(tokenizer, "right", model_name):
            trainer = _build_trainer_class()(
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
            share = _loss_token_share(trainer.train_dataset)
            skipped = _rows_without_loss_tokens(trainer, train_rows, names, config.max_length, log)
            if log is not None:
                log(f"loss mask: {method}; loss tokens are {share:.1%} of the training tokens")
                trainer.add_callback(_log_callback(log, max_steps))
            for callback in callbacks:
                trainer.add_callback(callback)
            result = trainer.train(resume_from_checkpoint=resume_from)
        runtime = max(result.metrics.get("train_runtime", 0.0), 1e-9)
        return TrainingOutcome(_trained_vectors(trainer, handle, names), layer, trainer.trained_tokens / runtime,
                               resume_from, method, share, skipped)
    finally:
        handle.remove()


def _check_training_inputs(tokenizer: Any, personas: Sequence[PersonaData], model_name: str) -> None:
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


def _training_rows(tokenizer: Any, method: str, personas: Sequence[PersonaData], config: SteeringTrainingConfig,
                   micro_steps: int) -> tuple[list[dict], list[dict]]:
    train_rows, validation_rows = [], []
    for k, persona in enumerate(personas):
        # Only the rows the schedule will draw are tokenised: short runs skip most of a large split.
        needed = rows_needed(len(persona.train), micro_steps, config.per_device_batch_size, persona_seed(config.seed, persona.name))
        train_rows += [{**_row(tokenizer, method, persona.train[i], persona.name, "training", i), "persona_index": k, "source_row": i}
                       for i in needed]
        validation_rows += [{**_row(tokenizer, method, m, persona.name, "validation", i), "persona_index": k}
                            for i, m in enumerate(persona.validation)]
    return train_rows, validation_rows


def _sft_config(config: SteeringTrainingConfig, output_dir: Path, max_steps: int, method: str, validate: bool,
                use_cpu: bool):
    from trl import SFTConfig

    return SFTConfig(
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
        eval_strategy="steps" if validate else "no",
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
        # Tagged templates: TRL builds the mask from the tags. Otherwise the rows arrive tokenised
        # with our "assistant_masks" column, from which TRL builds the labels all the same.
        assistant_only_loss=method == GENERATION_TAGS,
        max_length=config.max_length,
        remove_unused_columns=False,
        activation_checkpointing=False,
        disable_tqdm=True,
        dataset_num_proc=None,
    )


def _rows_without_loss_tokens(trainer: Any, train_rows: list[dict], names: list[str], max_length: int,
                              log: Callable[[str], None] | None) -> dict[str, int]:
    """Rows TRL dropped because their reply starts beyond ``max_length``, per persona; raises when a persona has none left."""
    kept = trainer._row_lookup(trainer.train_dataset)
    requested = [sum(1 for row in train_rows if row["persona_index"] == k) for k in range(len(names))]
    skipped = {name: requested[k] - len(kept[k]) for k, name in enumerate(names) if requested[k] > len(kept[k])}
    nothing = [name for k, name in enumerate(names) if not kept[k]]
    if nothing:
        raise EmptyTrainingSplitError(
            f"no training row of {', '.join(nothing)} has reply tokens within max_length={max_length}: "
            "the prompt (system header, user turn, template boilerplate) fills it; raise max_length"
        )
    if skipped and log is not None:
        log(f"rows whose reply starts beyond max_length={max_length} (no loss tokens, skipped): {skipped}")
    return skipped


def _trained_vectors(trainer: Any, handle: SteeringHandle, names: list[str]) -> list[TrainedVector]:
    """Each persona's best validated vector (its final one when it was never validated), with its loss history."""
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
                train_loss=_per_step_total(trainer.history["train"][k]),
                validation_loss=[tuple(x) for x in trainer.history["validation"][k]],
            )
        )
    return vectors


def _row(tokenizer: Any, method: str, conversation: list[dict[str, str]], persona: str, split: str, index: int) -> dict:
    """A dataset row: the conversation for TRL to tokenise (tagged templates), else ids with our assistant mask."""
    if method == GENERATION_TAGS:
        return {"messages": conversation}
    try:
        masked = rendered_reply_mask(tokenizer, conversation, index)
    except AssistantMaskError as err:
        raise AssistantMaskError(f"{persona}, {split} row {index}: {err}") from err
    return {"input_ids": masked.input_ids, "assistant_masks": masked.assistant_mask}


def _loss_token_share(dataset) -> float:
    """Loss tokens (labels that are not -100) over all tokens of the prepared training rows."""
    total = loss = 0
    for labels in dataset["labels"]:
        total += len(labels)
        loss += sum(1 for label in labels if label != -100)
    return loss / total if total else 0.0


def _log_callback(log: Callable[[str], None], max_steps: int):
    """A TrainerCallback forwarding the periodic logs (loss, learning rate, eval loss) to ``log``."""
    from transformers import TrainerCallback

    class LogCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            # "loss 3.94, grad_norm 0.0677, learning_rate 0.0452": the trainer's own names, rounded; epoch and
            # the end-of-training FLOP count say nothing a user acts on.
            shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in (logs or {}).items()
                              if k not in ("epoch", "total_flos"))
            log(f"step {state.global_step}/{max_steps}: {shown}")

    return LogCallback()


def _per_step_total(points: list) -> list[tuple[int, float]]:
    """A persona's loss per optimizer step: the sum of its micro-batch contributions (each already over the step's tokens)."""
    by_step: dict[int, float] = {}
    for step, value in points:
        by_step[int(step)] = by_step.get(int(step), 0.0) + float(value)
    return [(step + 1, total) for step, total in sorted(by_step.items())]
