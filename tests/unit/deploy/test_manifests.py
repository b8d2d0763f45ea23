"""docker compose and Kubernetes manifests, checked by parsing (no Docker engine runs here).

Every ANOMALYBERT_* variable they set must name a real field of the settings tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from stream.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
PREFIX = "ANOMALYBERT_"


def setting_exists(var: str) -> bool:
    """True if ANOMALYBERT_A__B__C names settings field a.b.c (nested models followed, dicts accept any key)."""
    model: Any = Settings
    parts = var.removeprefix(PREFIX).lower().split("__")
    for i, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            return False
        ann = fields[part].annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
            continue
        return i == len(parts) - 1 or getattr(ann, "__origin__", None) is dict
    return False


def env_vars(env: Any) -> dict[str, str]:
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return dict(env or {})


def test_the_checker_rejects_invented_variables() -> None:
    assert setting_exists("ANOMALYBERT_KAFKA__BOOTSTRAP")
    assert setting_exists("ANOMALYBERT_KAFKA__TOPICS__ALERTS")
    assert not setting_exists("ANOMALYBERT_KAFKA__BOOTSTRAP_SERVERS")
    assert not setting_exists("ANOMALYBERT_KAFKA")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_images_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "redis", "worker", "trainer", "prometheus"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    command = services["redis"]["command"]
    # the durability the processing guarantees need (README): a write is fsynced before Redis answers it
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    assert services["worker"]["build"]["dockerfile"] == "deploy/worker.Dockerfile"
    assert services["trainer"]["build"]["dockerfile"] == "deploy/train.Dockerfile"
    assert services["trainer"]["profiles"] == ["train"]
    # --scale worker=N needs no fixed container name and no fixed host port
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    for name in ("worker", "trainer"):
        dockerfile = ROOT / services[name]["build"]["dockerfile"]
        assert dockerfile.is_file()


def test_compose_healthchecks_and_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("kafka", "redis", "worker", "prometheus"):
        assert services[name]["healthcheck"]["test"], name
    for dep in ("kafka", "redis"):
        assert services["worker"]["depends_on"][dep]["condition"] == "service_healthy"


def test_compose_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "registry:/registry" in services["worker"]["volumes"]
    assert "registry:/registry" in services["trainer"]["volumes"]
    assert {"registry", "redis-data"} <= set(compose["volumes"])
    for svc in services.values():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists() or src == "./data", vol


def test_compose_environment_matches_settings(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for var in env_vars(svc.get("environment")):
            if var.startswith(PREFIX):
                assert setting_exists(var), f"{name}: {var} is not a setting"


def _k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def test_k8s_objects_present() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in _k8s_docs()}
    assert {("Deployment", "anomalybert-worker"), ("CronJob", "anomalybert-retrain"),
            ("ConfigMap", "anomalybert-config"), ("Secret", "anomalybert-secrets"),
            ("PersistentVolumeClaim", "anomalybert-registry")} <= kinds


def test_k8s_environment_and_probes() -> None:
    docs = {d["kind"]: d for d in _k8s_docs()}
    for kind in ("ConfigMap", "Secret"):
        data = docs[kind].get("data") or docs[kind].get("stringData")
        for var in data:
            assert setting_exists(var), f"{kind}: {var} is not a setting"
    worker = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["readinessProbe"]["httpGet"]["path"] == "/metrics"
    assert worker["livenessProbe"]["httpGet"]["port"] == "web"
    for var in worker.get("env", []):
        assert setting_exists(var["name"]), var["name"]
    claims = {v["persistentVolumeClaim"]["claimName"]
              for v in docs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    job = docs["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert claims == {v["persistentVolumeClaim"]["claimName"] for v in job["volumes"]} == {"anomalybert-registry"}


def test_worker_image_has_no_torch() -> None:
    pinned = (ROOT / "deploy" / "requirements-stream.txt").read_text().lower()
    assert "torch" not in pinned and "pandas" not in pinned
    assert "faust-streaming==" in pinned and "onnxruntime==" in pinned
