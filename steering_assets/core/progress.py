"""Progress lines of running assets, and the user-facing reason of a failed step.

``progress_logger`` is a Dagster logger that prints only what asset bodies log (``context.log``:
"pirate: 12/16 replies", training steps), one short line each; ``QUIET_RUN_CONFIG`` keeps Dagster's
own console lines to warnings. ``PROGRESS_SINK.write`` lets a command (the demo's clock) take the lines.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable

import dagster as dg

# Dagster's own console lines are kept to warnings; the assets' progress lines (``context.log.info``:
# "pirate: 12/16 replies", training steps) come through ``progress_logger``, one short line each.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}, "progress": {}}}


class _ProgressSink:
    """Where ``progress_logger`` writes: stderr, or a callable a command installs (the demo's clock)."""

    def __init__(self) -> None:
        self.write: Callable[[str], None] | None = None

    def __call__(self, line: str) -> None:
        if self.write is not None:
            self.write(line)
        else:
            print(line, file=sys.stderr, flush=True)


PROGRESS_SINK = _ProgressSink()


class _ProgressHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None)
        # Only what an asset body logged: Dagster's engine events carry a dagster_event.
        if not isinstance(meta, dict) or meta.get("dagster_event") is not None:
            return
        step = meta.get("step_key") or meta.get("job_name") or ""
        try:
            PROGRESS_SINK(f"    {step}: {meta.get('orig_message', record.getMessage())}")
        except Exception:  # a broken sink must not fail the run that logged
            self.handleError(record)


@dg.logger(
    {"log_level": dg.Field(str, is_required=False, default_value="INFO", description="The logger's threshold.")},
    description="The assets' own progress lines (context.log), one compact line each, without Dagster's engine events.",
)
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger("steering_assets.progress", level=init_context.logger_config["log_level"].upper())
    logger.addHandler(_ProgressHandler())
    return logger












def failure_message(event: dg.DagsterEvent) -> str:
    """The user-facing reason of a step failure: a Failure's description, else the root exception."""
    data = event.step_failure_data
    if data.user_failure_data and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error
    while error.cause is not None:
        error = error.cause
    return error.message.strip()
