"""Checks of a Dagster instance before anything is launched on it.

Two faults are common and cryptic when they surface inside Dagster: a Postgres server that
is unreachable or refuses the credentials (Dagster retries, then raises "too many retries
for DB connection"), and a pool without a stored limit (the first queue pass may dequeue
every run). ``check_instance_storage`` connects once with the instance's own settings and
says which environment variable to fix, never printing the password; ``set_pool_limit``
stores a pool limit and refuses one that would never launch anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from steering_assets.core.errors import InputError

# The environment variables deploy/postgres/dagster.yaml reads, by connection field.
PG_ENV = {
    "hostname": "DAGSTER_PG_HOST",
    "port": "DAGSTER_PG_PORT",
    "username": "DAGSTER_PG_USERNAME",
    "password": "DAGSTER_PG_PASSWORD",
    "db_name": "DAGSTER_PG_DB",
}
GPU_POOL = "gpu"


class InstanceConfigError(InputError, RuntimeError):
    """The instance's storage cannot be used as configured; the message says what to set."""


@dataclass(frozen=True)
class PostgresSettings:
    hostname: str
    port: int
    username: str
    password: str
    db_name: str
    params: Mapping[str, Any]
    # For each field, where its value came from ("env DAGSTER_PG_HOST" or "dagster.yaml").
    sources: Mapping[str, str]

    def where(self) -> str:
        return f"{self.hostname}:{self.port}"

    def source(self, field: str) -> str:
        return self.sources.get(field, "dagster.yaml")

    def __repr__(self) -> str:  # never show the password, even in a traceback
        return f"PostgresSettings({self.username}@{self.where()}/{self.db_name})"


def _resolve(value: Any, field: str, config_path: Path) -> tuple[Any, str]:
    """A dagster.yaml value: a literal or ``{env: NAME}``; a missing variable is an error naming it."""
    if isinstance(value, Mapping) and set(value) == {"env"}:
        name = value["env"]
        resolved = os.environ.get(name)
        if resolved is None or (resolved == "" and field != "password"):
            raise InstanceConfigError(
                f"{config_path}: storage.postgres.postgres_db.{field} reads the environment variable {name}, "
                f"which is not set; set {name} (see deploy/postgres/dagster.yaml)"
            )
        return resolved, f"env {name}"
    return value, "dagster.yaml"


def postgres_settings(instance_yaml: Path) -> PostgresSettings | None:
    """The Postgres connection an instance's dagster.yaml describes, or None for other storage."""
    import yaml

    config = yaml.safe_load(instance_yaml.read_text(encoding="utf-8")) or {}
    storage = (config.get("storage") or {}).get("postgres")
    if storage is None:
        return None
    if "postgres_url" in storage:
        raise InstanceConfigError(
            f"{instance_yaml}: storage.postgres.postgres_url puts credentials in one string; use "
            f"postgres_db with each field from the environment ({', '.join(PG_ENV.values())})"
        )
    db = storage.get("postgres_db") or {}
    values, sources = {}, {}
    for field in PG_ENV:
        if field not in db:
            if field in ("port", "password"):
                values[field], sources[field] = (5432 if field == "port" else ""), "default"
                continue
            raise InstanceConfigError(f"{instance_yaml}: storage.postgres.postgres_db has no {field}")
        values[field], sources[field] = _resolve(db[field], field, instance_yaml)
    try:
        values["port"] = int(values["port"])
    except (TypeError, ValueError):
        raise InstanceConfigError(
            f"{instance_yaml}: the Postgres port ({sources['port']}) is {values['port']!r}, not a number"
        ) from None
    return PostgresSettings(params=db.get("params") or {}, sources=sources, **values)


def check_postgres(settings: PostgresSettings, timeout_s: int = 10) -> None:
    """Connect once; raise InstanceConfigError naming the host and the variable to fix.

    The password never appears in the message: psycopg2's messages do not contain it, and
    it is also masked here in case a server echoes it.
    """
    try:
        import psycopg2
    except ImportError:
        raise InstanceConfigError(
            "the instance stores its data in Postgres but psycopg2 is not installed: pip install -e '.[postgres]'"
        ) from None
    try:
        connection = psycopg2.connect(
            host=settings.hostname, port=settings.port, user=settings.username, password=settings.password,
            dbname=settings.db_name, connect_timeout=timeout_s,
        )
    except psycopg2.OperationalError as err:
        raise InstanceConfigError(_explain(settings, str(err))) from None
    connection.close()


def _explain(settings: PostgresSettings, reason: str) -> str:
    reason = " ".join(reason.split())
    if settings.password:
        reason = reason.replace(settings.password, "***")
    lower = reason.lower()
    where = f"Postgres at {settings.where()}"
    if "password authentication failed" in lower or "no password supplied" in lower:
        fix = (f"the server refused user {settings.username!r}: set {PG_ENV['password']} "
               f"(now from {settings.source('password')}) to that user's password, or {PG_ENV['username']}")
    elif "does not exist" in lower and "database" in lower:
        fix = f"database {settings.db_name!r} does not exist: create it or set {PG_ENV['db_name']}"
    elif "role" in lower and "does not exist" in lower:
        fix = f"user {settings.username!r} does not exist: set {PG_ENV['username']}"
    else:
        fix = (f"the server cannot be reached: check that it runs and set {PG_ENV['hostname']} "
               f"(now {settings.hostname!r} from {settings.source('hostname')}) and {PG_ENV['port']} "
               f"(now {settings.port} from {settings.source('port')})")
    return f"{where}: {fix} ({reason})"


def check_instance_storage(dagster_home: str | Path) -> PostgresSettings | None:
    """Check the storage of the instance in ``dagster_home`` (Postgres only; sqlite needs no check)."""
    instance_yaml = Path(dagster_home) / "dagster.yaml"
    if not instance_yaml.is_file():
        return None
    settings = postgres_settings(instance_yaml)
    if settings is not None:
        check_postgres(settings)
    return settings


def validate_pool_limit(pool: str, limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InstanceConfigError(
            f"pool {pool!r}: limit {limit!r} would never launch a run of that pool; give at least 1 "
            "(for the gpu pool, the number of GPUs the runs share)"
        )
    return limit


def set_pool_limit(instance: Any, pool: str, limit: int) -> None:
    """Store ``limit`` slots for ``pool`` in the instance (what `dagster instance concurrency set` does)."""
    validate_pool_limit(pool, limit)
    instance.event_log_storage.set_concurrency_slots(pool, limit)


def visible_gpu_count() -> int:
    """GPUs this machine offers to runs: CUDA_VISIBLE_DEVICES when set, else torch's device count."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0
