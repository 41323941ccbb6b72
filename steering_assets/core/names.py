"""Names that come from data (personas, concepts, traits, models): validated before they become paths."""

import re

from steering_assets.core.errors import InputError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$")


class InvalidNameError(InputError, ValueError):
    """A persona or model name that could escape the data root or break a partition key."""


def validate_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a single safe path component, else raise InvalidNameError.

    Names come from file names and partition keys; a name such as ``../x`` or
    ``a/b`` must never turn into a path outside the roots we own.
    """
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"{what} must be a non-empty string, got {name!r}")
    if "/" in name or "\\" in name or "\x00" in name or ".." in name:
        raise InvalidNameError(
            f"{what} {name!r} contains a path separator or '..'; expected one plain "
            "file-name component such as 'accountant' or 'gemma-2-27b'"
        )
    if not _SAFE_NAME.match(name):
        raise InvalidNameError(
            f"{what} {name!r} has characters outside [A-Za-z0-9_.+-] or starts with "
            "punctuation; rename the file so it is a plain identifier"
        )
    return name
