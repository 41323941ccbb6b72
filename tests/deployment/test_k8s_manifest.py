"""The Kubernetes Jobs that dagster-k8s's K8sRunLauncher builds from deploy/k8s/values.yaml.

There is no helm binary in Debian's or PyPI's packages here, and no cluster, so the chart
is not rendered with helm. Instead the test maps the values to the run launcher config and
the user deployment's container context exactly as the chart's templates do
(templates/helpers/instance/_run-launcher.tpl, charts/dagster-user-deployments/.../_helpers.tpl;
only the fields these values use), builds a real K8sRunLauncher from them, and lets it send
its Jobs to a stand-in Kubernetes API server on 127.0.0.1 through the real kubernetes client.
What is checked is the Job body as dagster-k8s serialises it: every model run asks for
nvidia.com/gpu, whether launched from a job (job tags) or by an asset backfill started from
the asset graph (no job tags), and CPU runs do not.
"""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
import yaml

from steering_assets.cli import launch
from steering_assets.deployment.tags import cpu_run_tags
from tests.deployment.conftest import REPO

pytest.importorskip("dagster_k8s", reason="pip install -e '.[k8s]'")

NAMESPACE = "persona-lab"
RELEASE = "dagster"
GPU = "nvidia.com/gpu"


class _JobsApi(BaseHTTPRequestHandler):
    """Accepts `POST /apis/batch/v1/namespaces/<ns>/jobs` like the API server and keeps each body."""

    jobs: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self.path.startswith(f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"):
            self.send_response(404)
            self.end_headers()
            return
        self.jobs.append(body)
        reply = json.dumps(body).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def api_server(tmp_path):
    _JobsApi.jobs = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JobsApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "test", "user": {"token": "test"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": NAMESPACE}}],
    }))
    yield kubeconfig, _JobsApi.jobs
    server.shutdown()


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def run_launcher_config(values: dict, kubeconfig) -> dict:
    """values.yaml -> the instance's run_launcher block, as the chart's _run-launcher.tpl renders it."""
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    config = {
        # In the cluster: load_incluster_config true. Here: the stand-in API server's kubeconfig.
        "load_incluster_config": False,
        "kubeconfig_file": str(kubeconfig),
        "job_namespace": k8s.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": RELEASE,
        "dagster_home": "/opt/dagster/dagster_home",
        "instance_config_map": f"{RELEASE}-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
    }
    if k8s.get("runK8sConfig"):
        config["run_k8s_config"] = {_snake(key): value for key, value in k8s["runK8sConfig"].items() if value}
    return config


def user_container_context(values: dict) -> dict:
    """The container context the chart gives the user deployment (includeConfigInLaunchedRuns)."""
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]
    return {"k8s": {
        "image_pull_policy": deployment["image"]["pullPolicy"],
        "env_config_maps": [f"{RELEASE}-{deployment['name']}-user-env"],
        "env_secrets": [s["name"] for s in deployment.get("envSecrets", [])],
        "volume_mounts": deployment.get("volumeMounts", []),
        "volumes": deployment.get("volumes", []),
        "resources": deployment.get("resources", {}),
        "namespace": NAMESPACE,
        "service_account_name": f"{RELEASE}-user-deployments",
    }}


@pytest.fixture
def k8s_instance(api_server, tiny_workspace, tmp_path, monkeypatch, fresh_code_location):
    values = yaml.safe_load((REPO / "deploy" / "k8s" / "values.yaml").read_text())
    kubeconfig, jobs = api_server
    for key, value in {
        "PERSONA_DATA_ROOT": str(tiny_workspace.data_root), "PERSONA_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "PERSONA_MODEL": str(tiny_workspace.model_path), "PERSONA_PERSONAS_PER_RUN": "2",
        "PERSONA_CONCEPTS_ROOT": str(tmp_path), "PERSONA_SAE_CONFIG": str(tmp_path / "none.json"),
        "PERSONA_SCENARIOS_ROOT": str(tmp_path), "PERSONA_JUDGE_BACKEND": "local",
    }.items():
        monkeypatch.setenv(key, value)
    overrides = {
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": run_launcher_config(values, kubeconfig)},
        "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"},
    }
    with dg.instance_for_test(overrides=overrides) as instance:
        from steering_assets.partitions.personas import sync_partitions

        sync_partitions(instance, tiny_workspace.data_root)
        # The chart sets DAGSTER_CURRENT_IMAGE on the user deployment; its code server reports it as the image.
        [deployment] = values["dagster-user-deployments"]["deployments"]
        image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
        with launch.workspace_context(instance, user_container_context(values), image) as context:
            yield instance, context, jobs


def _container(job: dict) -> dict:
    [container] = job["spec"]["template"]["spec"]["containers"]
    return container


def _gpus(job: dict) -> tuple:
    resources = _container(job).get("resources") or {}
    return (resources.get("requests") or {}).get(GPU), (resources.get("limits") or {}).get(GPU)


def _launch_job(instance, context, job_name: str, tags: dict) -> None:
    from dagster._core.definitions.partitions.context import partition_loading_context

    from steering_assets.definitions import defs as load_defs

    defs = load_defs()

    request = context.create_request_context()
    remote_job = request.get_code_location(launch.LOCATION_NAME).get_repository("__repository__").get_full_job(job_name)
    with partition_loading_context(dynamic_partitions_store=instance):  # the chunk's keys are dynamic partitions
        run = instance.create_run_for_job(
            defs.resolve_job_def(job_name), tags=tags,
            remote_job_origin=remote_job.get_remote_origin(), job_code_origin=remote_job.get_python_origin(),
        )
    instance.submit_run(run.run_id, request)


def _model_jobs() -> list[str]:
    """Every job with an asset in the gpu pool."""
    from steering_assets.definitions import defs as load_defs

    defs = load_defs()

    repo = defs.get_repository_def()
    return sorted(
        job.name for job in repo.get_all_jobs() if not job.name.startswith("__")
        and any(node.definition.pool == "gpu" for node in job.graph.node_dict.values() if hasattr(node.definition, "pool"))
    )


def test_every_model_job_launch_asks_for_a_gpu(k8s_instance):
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    instance, context, jobs = k8s_instance
    model_jobs = _model_jobs()
    assert {"roles_steering", "traits_steering", "concept_features", "vetting"} <= set(model_jobs)
    def chunk(kind):  # the first two personas of the kind: one steering chunk
        first, second = instance.get_dynamic_partitions(kind)[:2]
        return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: second}

    for job_name in model_jobs:
        kind = job_name.removesuffix("_steering")
        _launch_job(instance, context, job_name, chunk(kind) if job_name.endswith("_steering") else {})
    assert len(jobs) == len(model_jobs)
    for job in jobs:
        assert _gpus(job) == ("1", "1"), (job["metadata"]["labels"], _container(job).get("resources"))
        assert _container(job)["image"] == "registry.lab.internal/steering-assets:0.1.0"
        # The deployment's env and secrets reach the run (includeConfigInLaunchedRuns).
        assert {"configMapRef": {"name": f"{RELEASE}-steering-assets-user-env"}} in _container(job)["envFrom"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in job["spec"]["template"]["spec"]["tolerations"]


def test_cpu_jobs_do_not_hold_a_gpu(k8s_instance):
    instance, context, jobs = k8s_instance
    _launch_job(instance, context, "roles_persona_datasets", cpu_run_tags())
    [job] = jobs
    assert _gpus(job) == (None, None)
    assert _container(job)["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}


def test_an_asset_backfill_from_the_asset_graph_asks_for_a_gpu_per_chunk(k8s_instance):
    """The UI's "Materialize" on steering_vector over 4 partitions: an asset backfill with no job tags."""
    from dagster._daemon.backfill import execute_backfill_iteration

    instance, context, jobs = k8s_instance
    keys = [f"SmolLM2-135M-Instruct.Q4_1/{n}" for n in ("chef", "detective", "gardener", "pirate")]
    backfill_id = launch.submit_asset_backfill(instance, context, [dg.AssetKey(["roles", "steering_vector"])], keys)
    list(execute_backfill_iteration(context, logging.getLogger("test")))
    runs = launch.backfill_runs(instance, backfill_id)
    assert len(runs) == 2 and len(jobs) == 2  # 4 personas, 2 per run
    assert all("dagster-k8s/config" not in r.dagster_run.tags for r in runs)
    for job in jobs:
        assert _gpus(job) == ("1", "1")
        assert job["metadata"]["labels"]["dagster/code-location"] == launch.LOCATION_NAME
