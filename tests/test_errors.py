"""One base class for every input error, and how the asset wrappers report it."""

import importlib
import inspect
import pkgutil

import dagster as dg
import pytest

import steering_assets
from steering_assets.core.asset_results import reported_as_failure
from steering_assets.core.errors import InputError, MissingInputError

# Exceptions that are not about the user's input: an item-level judge answer (recorded on
# the item, never raised to the run), private control-flow signals, and a local test server
# that could not start.
NOT_INPUT_ERRORS = {"AnswerError", "_EnoughLayers", "_StaleObject", "ServerUnavailable"}


def _project_exceptions():
    for info in pkgutil.walk_packages(steering_assets.__path__, "steering_assets."):
        if ".demo" in info.name or info.name.endswith((".cli", ".definitions")):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                yield name, obj


def test_every_project_error_is_an_input_error_or_named_as_not_one():
    found = dict(_project_exceptions())
    assert len(found) >= 20  # the families' errors were all found
    stray = sorted(name for name, cls in found.items() if not issubclass(cls, InputError) and name not in NOT_INPUT_ERRORS)
    assert stray == [], f"derive these from steering_assets.core.errors.InputError (or list them as not input errors): {stray}"


def test_input_errors_keep_their_builtin_base():
    from steering_assets.features.layers import LayerSpecError
    from steering_assets.models.errors import NonFiniteLossError

    assert issubclass(LayerSpecError, ValueError) and issubclass(NonFiniteLossError, RuntimeError)
    assert issubclass(MissingInputError, FileNotFoundError)


def test_an_input_error_becomes_a_plain_failure_and_a_bug_keeps_its_trace():
    from steering_assets.features.layers import parse_layers

    with pytest.raises(dg.Failure) as failure:
        with reported_as_failure("demo/pirate"):
            parse_layers("5-2")
    assert failure.value.description.startswith("demo/pirate: ") and "5-2" in failure.value.description
    with pytest.raises(KeyError):
        with reported_as_failure("demo/pirate"):
            raise KeyError("a bug, not bad input")
