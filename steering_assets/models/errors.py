"""Errors of the steering stage (importable without torch)."""

from steering_assets.core.errors import InputError


class LayerOutOfRangeError(InputError, ValueError):
    """The requested layer does not exist in the model."""


class CheckpointMismatchError(InputError, ValueError):
    """A checkpoint written for another model, layer or set of personas."""


class NonFiniteLossError(InputError, RuntimeError):
    """The training loss became NaN or infinite."""


class EmptyTrainingSplitError(InputError, ValueError):
    """A persona has no training examples."""


class VectorShapeError(InputError, ValueError):
    """A stored vector that does not fit the model it is loaded into."""


class MissingBaselineError(InputError, ValueError):
    """No baseline rows (baseline files or a persona's own baseline-labelled rows) to use as negatives."""
