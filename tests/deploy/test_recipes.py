"""The deploy recipes hold together: compose services, Kubernetes manifests, the Dockerfile and the SLURM example
name things that exist (services, volumes, images, extras, settings, commands), so a typo fails here rather than
on an operator's cluster."""

from __future__ import annotations

import ast
import importlib
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from nightjar.cli import build_parser
from nightjar.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBE = DEPLOY / "kubernetes"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def nightjar_settings(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings these NIGHTJAR_* variables make (unknown names and bad values fail)."""
    fields = {f"NIGHTJAR_{name.upper()}" for name in Settings.model_fields}
    unknown = sorted(k for k in env if k.startswith("NIGHTJAR_") and k not in fields)
    assert unknown == [], f"not Nightjar settings: {unknown}"
    for key, value in env.items():
        if key.startswith("NIGHTJAR_") and "<" not in value:
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("NIGHTJAR_HOME", str(tmp_path))
    return Settings()


def check_nightjar_args(args: list[str]) -> None:
    """A nightjar command line the CLI accepts."""
    parsed = build_parser().parse_args(args)
    assert parsed.command == args[0]


def env_file(path: Path) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return {k: v for k, v in pairs}


# --- compose -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_has_every_part_of_a_one_host_broker(compose: dict[str, Any]) -> None:
    services = compose["services"]
    images = {name: s.get("image", "") for name, s in services.items()}
    assert images["kafka"].startswith("apache/kafka")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert images["postgres"].startswith("postgres") and images["s3"].startswith("minio/")
    assert services["scheduler"]["entrypoint"] == ["dask", "scheduler"]
    assert services["worker"]["entrypoint"] == ["dask", "worker"]
    assert services["worker"]["command"][0] == "tcp://scheduler:8786"
    assert services["proxy"]["image"].startswith("caddy")
    assert "serve:8000" in (DEPLOY / "Caddyfile").read_text()


def test_compose_references_are_defined(compose: dict[str, Any]) -> None:
    services = compose["services"]
    volumes = set(compose["volumes"])
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file(), name
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), f"{name}: {source}"
            else:
                assert source in volumes, f"{name}: volume {source} is not declared"
        depends = service.get("depends_on", [])
        for other in depends if isinstance(depends, list) else depends.keys():
            assert other in services, f"{name} depends on an unknown service {other}"
        if service.get("env_file"):
            assert (DEPLOY / f"{service['env_file']}.example").is_file(), "the env file needs its example"


def test_compose_nightjar_services_run_real_commands_with_real_settings(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    nightjar = {n: s for n, s in services.items() if s.get("image") == "nightjar:latest"}
    assert {"migrate", "scheduler", "worker", "run", "serve", "tools"} <= set(nightjar)
    for name, service in nightjar.items():
        env = {**env_file(DEPLOY / "nightjar.env.example"), **service["environment"]}
        settings = nightjar_settings(env, tmp_path, monkeypatch)
        assert settings.scheduler == "tcp://scheduler:8786" and settings.kafka == "kafka:9092", name
        assert settings.metadata_url.startswith("postgresql+psycopg://")
        if "entrypoint" not in service and "command" in service:
            check_nightjar_args(service["command"])
    assert nightjar["migrate"]["command"] == ["db", "upgrade"]
    assert "NIGHTJAR_API_HOST" in nightjar["serve"]["environment"]


# --- Dockerfile ----------------------------------------------------------------------------------------------


def test_the_dockerfile_installs_the_package_with_declared_extras() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \./\1$", text, re.M))
    assert copied == set(PYPROJECT["tool"]["setuptools"]["package-dir"].values()), "every source folder is copied"
    extras = re.findall(r'pip install "\.\[([\w,]+)\]"', text)
    assert extras, "the Dockerfile installs the package with its extras"
    declared = set(PYPROJECT["project"]["optional-dependencies"])
    assert set(",".join(extras).split(",")) <= declared
    assert "postgresql" in ",".join(extras)
    version = re.search(r"^FROM python:(\d+)\.(\d+)", text, re.M)
    assert version is not None
    low = tuple(int(x) for x in PYPROJECT["project"]["requires-python"].lstrip(">=").split("."))
    assert (int(version[1]), int(version[2])) >= low
    assert re.search(r'^ENTRYPOINT \["nightjar"\]', text, re.M)


# --- Kubernetes ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((KUBE / resource).read_text()) if d]
    return docs


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] == "DaskCluster":
        return [*doc["spec"]["worker"]["spec"]["containers"], *doc["spec"]["scheduler"]["spec"]["containers"]]
    if doc["kind"] in ("Deployment", "Job"):
        return list(doc["spec"]["template"]["spec"]["containers"])
    return []


def test_every_manifest_has_the_required_fields(manifests: list[dict[str, Any]]) -> None:
    kinds = {d["kind"] for d in manifests}
    assert {"DaskCluster", "Deployment", "Job", "Service", "Ingress", "PersistentVolumeClaim"} <= kinds
    for doc in manifests:
        assert doc["apiVersion"] and doc["metadata"]["name"], doc
        for container in containers(doc):
            assert container["name"] and container["image"] == "nightjar", doc["metadata"]["name"]
        if doc["kind"] == "Deployment":
            selector = doc["spec"]["selector"]["matchLabels"]
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= labels.items(), doc["metadata"]["name"]


def test_the_dask_cluster_is_what_the_operator_and_nightjar_expect(manifests: list[dict[str, Any]]) -> None:
    cluster = next(d for d in manifests if d["kind"] == "DaskCluster")
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    name, spec = cluster["metadata"]["name"], cluster["spec"]
    assert isinstance(spec["worker"]["replicas"], int) and spec["worker"]["replicas"] >= 1
    service = spec["scheduler"]["service"]
    assert service["selector"] == {"dask.org/cluster-name": name, "dask.org/component": "scheduler"}
    assert 8786 in {p["port"] for p in service["ports"]}
    ports = {p["name"] for c in spec["scheduler"]["spec"]["containers"] for p in c["ports"]}
    assert {p["targetPort"] for p in service["ports"]} <= ports
    # The operator names the scheduler's service <cluster>-scheduler: NIGHTJAR_SCHEDULER must point there.
    literals = yaml.safe_load((KUBE / "kustomization.yaml").read_text())["configMapGenerator"][0]["literals"]
    assert f"NIGHTJAR_SCHEDULER=tcp://{name}-scheduler:8786" in literals


def test_kubernetes_references_settings_and_commands_are_real(
    manifests: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    config_maps = {g["name"] for g in kustomization["configMapGenerator"]}
    claims = {d["metadata"]["name"] for d in manifests if d["kind"] == "PersistentVolumeClaim"}
    services = {d["metadata"]["name"] for d in manifests if d["kind"] == "Service"}
    literals = dict(x.split("=", 1) for x in kustomization["configMapGenerator"][0]["literals"])
    secrets = env_file(KUBE / "nightjar-secrets.env.example")
    for doc in manifests:
        pod = doc["spec"]["template"]["spec"] if doc["kind"] in ("Deployment", "Job") else None
        for container in containers(doc):
            refs = container.get("envFrom", [])
            assert {r["configMapRef"]["name"] for r in refs if "configMapRef" in r} <= config_maps
            env = {**literals, **secrets, **{e["name"]: e["value"] for e in container.get("env", [])}}
            nightjar_settings(env, tmp_path, monkeypatch)
            if pod is not None:
                check_nightjar_args(container["args"])
        volumes = (pod or {}).get("volumes", [])
        if doc["kind"] == "DaskCluster":
            volumes = doc["spec"]["worker"]["spec"].get("volumes", [])
        for volume in volumes:
            assert volume["persistentVolumeClaim"]["claimName"] in claims
        if doc["kind"] == "Ingress":
            for rule in doc["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    assert path["backend"]["service"]["name"] in services


# --- SLURM ---------------------------------------------------------------------------------------------------


def test_the_slurm_example_uses_real_nightjar_functions() -> None:
    source = (DEPLOY / "slurm" / "run_on_slurm.py").read_text()
    tree = ast.parse(source)
    compile(tree, "run_on_slurm.py", "exec")
    imported = [(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
    assert ("dask_jobqueue", "SLURMCluster") in imported
    for module, name in imported:
        if module and module.startswith("nightjar"):
            assert hasattr(importlib.import_module(module), name), f"{module}.{name}"
