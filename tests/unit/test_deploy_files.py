"""What the deploy files must mean, beyond being valid (``make lint-deploy`` checks their
schemas): the example configuration loads, every secret it names is supplied, migrations run
first, beat stays single, and the queues are the ones the code routes to."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.adapters.celery_app import CALLBACKS_QUEUE, JOBS_QUEUE
from orchestrator.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CONFIG = DEPLOY / "orchestrator.toml"
QUEUES = f"{JOBS_QUEUE},{CALLBACKS_QUEUE}"
APP_SERVICES = ("api", "worker", "beat", "flower")


def secrets_named() -> set[str]:
    return set(re.findall(r'"env:([A-Z0-9_]+)"', CONFIG.read_text()))


def compose() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())[
        "services"]
    return services


def manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def kind(name: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests() if doc["kind"] == name}


def pod_specs() -> dict[str, dict[str, Any]]:
    owners = {**kind("Deployment"), **kind("Job")}
    return {name: doc["spec"]["template"]["spec"] for name, doc in owners.items()}


def test_the_example_configuration_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in secrets_named():
        monkeypatch.setenv(name, "whsec_c2VjcmV0LWJ5dGVz" if "SIGNING" in name else "a-key")
    settings = load_settings(CONFIG, env={})
    assert {"cordage", "codewords"} <= set(settings.providers)
    assert secrets_named() >= {"ORCHESTRATOR_SIGNING_SECRET", "CORDAGE_API_KEY"}


def test_the_configmap_is_the_example_configuration() -> None:
    data = kind("ConfigMap")["orchestrator-config"]["data"]["orchestrator.toml"]
    assert data == CONFIG.read_text()


def test_every_secret_the_configuration_names_is_supplied() -> None:
    services = compose()
    for name in ("migrate", *APP_SERVICES):
        assert secrets_named() <= set(services[name]["environment"]), name
    k8s_keys = set(kind("Secret")["orchestrator-secrets"]["stringData"])
    assert secrets_named() | {"ORCHESTRATOR_DATABASE_URL", "ORCHESTRATOR_REDIS_URL"} <= k8s_keys


def test_compose_migrates_first_and_keeps_redis_messages() -> None:
    services = compose()
    assert services["migrate"]["command"] == ["orchestrator", "migrate"]
    for name in APP_SERVICES:
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"}, name
    assert "container_name" not in services["worker"]
    assert services["beat"]["deploy"]["replicas"] == 1
    redis = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis and "--maxmemory-policy noeviction" in redis
    assert QUEUES in services["worker"]["command"]


def test_kubernetes_runs_one_beat_and_probes_the_api() -> None:
    deployments = kind("Deployment")
    beat = deployments["orchestrator-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"] == {"type": "Recreate"}
    api = deployments["orchestrator-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    worker = deployments["orchestrator-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert QUEUES in worker["command"]
    target = kind("HorizontalPodAutoscaler")["orchestrator-worker"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "orchestrator-worker")
    assert kind("Job")["orchestrator-migrate"]["spec"]["template"]["spec"]["containers"][0][
        "command"] == ["orchestrator", "migrate"]


def test_every_pod_is_bounded_and_unprivileged() -> None:
    images = set()
    for name, spec in pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            images.add(container["image"])
            assert set(container["resources"]) == {"requests", "limits"}, name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name
    assert len(images) == 1  # one image, every role


def test_the_procfile_worker_consumes_both_queues() -> None:
    worker = next(line for line in (ROOT / "Procfile").read_text().splitlines()
                  if line.startswith("worker:"))
    assert f"-Q {QUEUES}" in worker
