"""The ``steering-assets`` command: argument parsing (``main``), launching backfills through Dagster
(``launch``, ``launcher``) and the tables it prints (``reports``)."""

from steering_assets.cli.main import main

__all__ = ["main"]
