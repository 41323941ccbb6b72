"""Steering training settings and artifact file names (importable without torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

VECTOR_FILE = "vector.safetensors"
CONFIG_FILE = "steering_config.json"
INTEROP_FILE = "steering_vector.pt"
LOSS_CURVE_FILE = "loss_curve.png"


@dataclass(frozen=True)
class SteeringTrainingConfig:
    layer: int | None = None  # None: the middle decoder layer
    learning_rate: float = 5e-2
    max_steps: int = 200
    epochs: float | None = None  # when set, overrides max_steps: passes over the largest persona's split
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "cosine"
    warmup_steps: int = 10
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # per persona
    eval_steps: int = 25
    save_steps: int = 25
    early_stopping_patience: int = 3  # evaluations without improvement; 0 disables
    max_length: int = 1024
    seed: int = 42

    def steps_for(self, largest_split: int) -> int:
        """Optimizer steps to run: ``max_steps``, or enough for ``epochs`` over the largest split."""
        if self.epochs is None:
            return self.max_steps
        per_step = self.per_device_batch_size * self.gradient_accumulation_steps
        return max(1, math.ceil(self.epochs * largest_split / per_step))

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.save_steps % self.eval_steps:
            raise ValueError(f"save_steps ({self.save_steps}) must be a multiple of eval_steps ({self.eval_steps})")
        for name in ("max_steps", "per_device_batch_size", "gradient_accumulation_steps", "eval_steps", "save_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

# The steering-evaluation stage (persona classifier, activation vectors, steering_eval): its artifacts'
# code version (2: block-output layers, the last layer no longer reads the final norm; reply masks shared
# with training) and file names.
EVAL_CODE_VERSION = "4"
CLASSIFIER_FILE = "classifier.npz"
ACTIVATION_FILE = "activation_vector.npy"
EVAL_FILE = "evaluation.json"
MIN_PROBE_ROWS = 5
