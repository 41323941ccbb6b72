"""The demo's code location: the product's Definitions built from the demo workspace's settings.

The driver passes its ``Settings`` here (``use``) before it launches anything; the runs execute in
the driver's process, so they load this module and see the same settings. Nothing is written to
``os.environ``. ``make ui`` loads workspace.yaml's code location instead, from the Makefile's
PERSONA_* defaults, which name the same workspace.
"""

from __future__ import annotations

import dagster as dg

from steering_assets.cli.launch import CodeLocationTarget
from steering_assets.core.settings import Settings

TARGET = CodeLocationTarget(module=__name__, attribute="defs")
_settings: Settings | None = None


def use(settings: Settings) -> CodeLocationTarget:
    """Build the code location from ``settings``; returns the target to hand to the launcher."""
    global _settings
    _settings = settings
    return TARGET


@dg.definitions
def defs() -> dg.Definitions:
    from steering_assets.definitions import build_definitions

    if _settings is None:
        raise RuntimeError("demo.location: the demo driver passes its settings (demo.location.use) before loading it")
    return build_definitions(settings=_settings)
