"""Postgres, Redis and an S3-compatible server on 127.0.0.1, for a one-box deployment and the tests.

Each server lives in its own folder (data, socket, log, pid), listens on 127.0.0.1 only and
is stopped by ``stop()``. PostgreSQL's ``initdb`` refuses to run as root, so as root the
server runs as the ``postgres`` system user and its folder is handed to that user.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence


class ServerUnavailable(RuntimeError):
    """A server binary is not installed here; the message says how to install it."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {process.returncode} before listening on 127.0.0.1:{port}\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f}s" + (f"; see {log}" if log else ""))


def postgres_bindir() -> Path:
    """The folder holding initdb and pg_ctl (Debian keeps them off PATH, under /usr/lib/postgresql/N/bin)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if candidates:
        return Path(candidates[-1]).parent
    raise ServerUnavailable("PostgreSQL is not installed: apt-get install postgresql (needs initdb and pg_ctl)")


def _as_postgres_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    runuser = shutil.which("runuser")
    if runuser is None:
        raise ServerUnavailable("running as root needs runuser (util-linux) to start PostgreSQL as the postgres user")
    return [runuser, "-u", "postgres", "--", *command]


@dataclass
class LocalPostgres:
    """A PostgreSQL cluster in ``folder`` serving 127.0.0.1:``port`` with password authentication."""

    folder: Path
    port: int
    username: str = "dagster"
    password: str = "dagster-local"
    db_name: str = "dagster"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    def env(self, db_name: str | None = None) -> dict[str, str]:
        """The variables deploy/postgres/dagster.yaml reads, for ``db_name`` (default: the cluster's own)."""
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.username,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": db_name or self.db_name,
        }

    def start(self, timeout_s: float = 60) -> "LocalPostgres":
        bindir = postgres_bindir()
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            # The postgres user must be able to reach the folder through its parents.
            for parent in self.folder.parents:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)
        fresh = not (self.data / "PG_VERSION").exists()
        if fresh:
            pwfile = self.folder / "pwfile"
            pwfile.write_text(self.password + "\n")
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres", "postgres")
            subprocess.run(
                _as_postgres_user([str(bindir / "initdb"), "-D", str(self.data), "-U", self.username,
                                   f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"]),
                check=True, capture_output=True, text=True,
            )
            pwfile.unlink()
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off -c max_connections=200"
        subprocess.run(
            _as_postgres_user([str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                               "-w", "-t", str(int(timeout_s)), "start"]),
            check=True, capture_output=True, text=True,
        )
        if fresh:
            self.create_database(self.db_name)
        return self

    def create_database(self, name: str) -> dict[str, str]:
        """Create an empty database ``name`` (one Dagster instance's storage); returns its env()."""
        env = {**os.environ, "PGPASSWORD": self.password}
        subprocess.run(
            [str(postgres_bindir() / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.username, name],
            check=True, capture_output=True, text=True, env=env,
        )
        return self.env(name)

    def stop(self) -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        subprocess.run(
            _as_postgres_user([str(postgres_bindir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
            capture_output=True, text=True,
        )


@dataclass
class LocalRedis:
    """redis-server on 127.0.0.1:``port``, keeping its files in ``folder``."""

    folder: Path
    port: int
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20) -> "LocalRedis":
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerUnavailable("redis-server is not installed: apt-get install redis-server")
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / "redis.log"
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
             "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for_port(self.port, timeout_s, self.process, log)
        return self

    def stop(self) -> None:
        _stop(self.process)


@dataclass
class LocalS3:
    """moto's S3-compatible server on 127.0.0.1:``port`` (in memory; stops with the process)."""

    folder: Path
    port: int
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Credentials moto accepts; real ones come from the usual AWS variables or files."""
        return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": self.endpoint_url}

    def start(self, timeout_s: float = 30) -> "LocalS3":
        try:
            import moto.server  # noqa: F401
        except ImportError:
            raise ServerUnavailable("moto's server is not installed: pip install 'moto[server]'") from None
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / "moto.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for_port(self.port, timeout_s, self.process, log)
        return self

    def stop(self) -> None:
        _stop(self.process)


def _stop(process: subprocess.Popen | None, timeout_s: float = 20) -> None:
    """SIGTERM a process group we started, then SIGKILL it if it lingers."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def start_process(command: Sequence[str], log: Path, env: Mapping[str, str], cwd: Path | None = None) -> subprocess.Popen:
    """Start a long-running Dagster or Celery process in its own process group (stopped with stop_process)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(list(command), stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=dict(env),
                            cwd=cwd, start_new_session=True)


def stop_process(process: subprocess.Popen | None, timeout_s: float = 30) -> None:
    # dagster-daemon and celery shut down cleanly on SIGINT/SIGTERM; their children follow the group.
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        _stop(process)
    except ProcessLookupError:
        pass


def celery_worker_command(venv_bin: Path, name: str, queues: Sequence[str], worker_yaml: Path) -> list[str]:
    """One Dagster Celery worker that runs one run at a time and reserves nothing ahead."""
    command = [str(venv_bin / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(worker_yaml),
               "-n", name]
    for queue in queues:
        command += ["-q", queue]
    return command + ["--", "--concurrency=1", "--prefetch-multiplier=1", "--without-gossip", "--without-mingle"]


def gpu_worker_envs(base: Mapping[str, str], gpus: int) -> list[dict[str, str]]:
    """One environment per GPU worker, each seeing only its own device."""
    return [{**base, "CUDA_VISIBLE_DEVICES": str(index)} for index in range(gpus)]
