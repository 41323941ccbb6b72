"""Run tags that tell the Celery and Kubernetes run launchers where a run belongs.

The launchers read run tags only (never asset tags), and an asset backfill started from the
asset graph carries no job tags. So the deployments make the GPU the default for every run
(deploy/celery: the default queue is served by the GPU workers; deploy/k8s: the run
launcher's own run_k8s_config asks for ``nvidia.com/gpu``), and the runs that need no GPU
say so here: CPU jobs and the CPU backfills the CLI sends carry these tags. Other launchers
ignore them.
"""

from __future__ import annotations

import json

CELERY_QUEUE_TAG = "dagster-celery/queue"
K8S_CONFIG_TAG = "dagster-k8s/config"
CPU_QUEUE = "cpu"

# SHALLOW: these resources replace the launcher's GPU request instead of being merged into it.
_CPU_POD = {
    "container_config": {"resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "16Gi"}}},
    "merge_behavior": "SHALLOW",
}


def cpu_run_tags() -> dict[str, str]:
    """Tags of a run that needs no GPU: the Celery `cpu` queue, a CPU-only Kubernetes pod."""
    return {CELERY_QUEUE_TAG: CPU_QUEUE, K8S_CONFIG_TAG: json.dumps(_CPU_POD, sort_keys=True)}
