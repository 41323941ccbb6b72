"""The one base class of every error that means "fix your files or settings".

Asset wrappers turn an ``InputError`` into a plain ``dagster.Failure`` (the message, no
stack trace, no retries); anything else is a bug and keeps its trace. Each family's
errors derive from ``InputError`` and from the builtin they always were (``ValueError``,
``FileNotFoundError``, ...), so code that catches the builtin keeps working.
"""


class InputError(Exception):
    """Bad input: the message names the file, line, key or setting and what was expected."""


class MissingInputError(InputError, FileNotFoundError):
    """An input file or folder that a setting points at does not exist."""
