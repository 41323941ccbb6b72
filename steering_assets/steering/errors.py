"""Errors of the steering stage (importable without torch)."""


class LayerOutOfRangeError(ValueError):
    """The requested layer does not exist in the model."""


class CheckpointMismatchError(ValueError):
    """A checkpoint written for another model, layer or set of personas."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class EmptyTrainingSplitError(ValueError):
    """A persona has no training examples."""


class VectorShapeError(ValueError):
    """A stored vector that does not fit the model it is loaded into."""


class MissingBaselineError(ValueError):
    """No baseline rows (baseline files or a persona's own baseline-labelled rows) to use as negatives."""
