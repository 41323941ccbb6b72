"""CLI commands for deployments: `steering-assets instance ...` and `steering-assets local-server ...`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from steering_assets.deployment.instance import (
    GPU_POOL,
    InstanceConfigError,
    check_instance_storage,
    set_pool_limit,
    validate_pool_limit,
    visible_gpu_count,
)


def _dagster_home() -> str:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        sys.exit("DAGSTER_HOME is not set: point it at the folder holding the instance's dagster.yaml")
    return home


def cmd_instance_check(args: argparse.Namespace) -> int:
    try:
        settings = check_instance_storage(_dagster_home())
    except InstanceConfigError as err:
        sys.exit(f"error: {err}")
    print(f"instance storage: {'Postgres at ' + settings.where() + ' (connected)' if settings else 'sqlite (local)'}")
    return 0


def cmd_instance_pools(args: argparse.Namespace) -> int:
    import dagster as dg

    gpus = args.gpu if args.gpu is not None else visible_gpu_count() or 1
    try:
        validate_pool_limit(GPU_POOL, gpus)
        check_instance_storage(_dagster_home())
        with dg.DagsterInstance.get() as instance:
            set_pool_limit(instance, GPU_POOL, gpus)
    except InstanceConfigError as err:
        sys.exit(f"error: {err}")
    print(f"pool {GPU_POOL}: {gpus} slot{'s' if gpus != 1 else ''} (model runs at once)")
    return 0


def cmd_local_server(args: argparse.Namespace) -> int:
    """Start or stop a server for a one-box deployment; `start` prints the variables to export."""
    from steering_assets.deployment.servers import LocalPostgres, LocalRedis, ServerUnavailable

    folder = Path(args.folder).resolve() / args.server
    try:
        if args.server == "postgres":
            server = LocalPostgres(folder, args.port or 5433)
            if args.action == "stop":
                server.stop()
                return 0
            server.start()
            for name, value in server.env().items():
                print(f"{name}={value}")
        else:
            if args.action == "stop":
                pid_file = folder / "redis.pid"
                if pid_file.is_file():
                    os.kill(int(pid_file.read_text()), 15)
                    pid_file.unlink()
                return 0
            server = LocalRedis(folder, args.port or 6379).start()
            (folder / "redis.pid").write_text(str(server.process.pid))
            print(f"DAGSTER_CELERY_BROKER_URL={server.url}")
            print(f"DAGSTER_CELERY_BACKEND_URL={server.url}")
    except ServerUnavailable as err:
        sys.exit(f"error: {err}")
    return 0


def cmd_celery_workers(args: argparse.Namespace) -> int:
    """One Celery worker per GPU (CUDA_VISIBLE_DEVICES pinned) plus CPU workers; stops them all on Ctrl-C."""
    import time

    from steering_assets.deployment.servers import celery_worker_command, gpu_worker_envs, start_process, stop_process
    from steering_assets.deployment.tags import CPU_QUEUE

    gpus = args.gpus if args.gpus is not None else visible_gpu_count()
    if gpus < 1 and args.cpu_workers < 1:
        sys.exit("error: no GPU found and --cpu-workers 0: nothing would take runs (give --gpus N)")
    venv_bin = Path(sys.executable).parent
    worker_yaml = Path(args.config).resolve()
    logs = Path(args.log_dir).resolve()
    processes = []
    for index, env in enumerate(gpu_worker_envs(os.environ, gpus)):
        command = celery_worker_command(venv_bin, f"gpu{index}", ["dagster"], worker_yaml)
        processes.append(start_process(command, logs / f"gpu{index}.log", env))
    cpu_env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    for index in range(args.cpu_workers):
        command = celery_worker_command(venv_bin, f"cpu{index}", [CPU_QUEUE], worker_yaml)
        processes.append(start_process(command, logs / f"cpu{index}.log", cpu_env))
    print(f"{gpus} GPU worker(s) on queue 'dagster', {args.cpu_workers} CPU worker(s) on queue '{CPU_QUEUE}'; logs in {logs}")
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            stop_process(process)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    instance = sub.add_parser("instance", help="check the Dagster instance in DAGSTER_HOME or set its pool limits")
    verbs = instance.add_subparsers(dest="verb", required=True)
    verbs.add_parser("check", help="connect to the instance's storage; say which setting is wrong").set_defaults(
        func=cmd_instance_check
    )
    pools = verbs.add_parser("pools", help="store the gpu pool's limit (model runs at once)")
    pools.add_argument("--gpu", type=int, help="slots of the gpu pool (default: GPUs visible here, else 1)")
    pools.set_defaults(func=cmd_instance_pools)

    server = sub.add_parser("local-server", help="start or stop Postgres or Redis on 127.0.0.1 for a one-box deployment")
    server.add_argument("server", choices=["postgres", "redis"])
    server.add_argument("action", choices=["start", "stop"])
    server.add_argument("--folder", default=".deploy", help="where the server keeps its files (default .deploy)")
    server.add_argument("--port", type=int, help="port (default: postgres 5433, redis 6379)")
    server.set_defaults(func=cmd_local_server)

    workers = sub.add_parser("celery-workers", help="one Celery worker per GPU, each pinned to its device")
    workers.add_argument("--gpus", type=int, help="GPU workers (default: GPUs visible here)")
    workers.add_argument("--cpu-workers", type=int, default=1, help="workers for the cpu queue (default 1)")
    workers.add_argument("--config", default="deploy/celery/worker.yaml", help="worker settings (broker, no prefetch)")
    workers.add_argument("--log-dir", default=".deploy/celery", help="one log per worker")
    workers.set_defaults(func=cmd_celery_workers)
