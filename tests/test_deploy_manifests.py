"""The deployment files (Dockerfile, compose.yaml, deploy/k8s) agree with what the service serves.

Probe paths must answer 200 on the running app, ports must be the port the service listens on,
and every ``FAIRLOSS_*`` variable must be a setting that the service reads, with a value it
accepts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
PREFIX = "FAIRLOSS_"


def k8s_docs() -> dict[str, dict[str, Any]]:
    docs = [d for f in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    by_kind: dict[str, dict[str, Any]] = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), "one object of each kind expected"
    return by_kind


def container() -> dict[str, Any]:
    ctrs: list[dict[str, Any]] = k8s_docs()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(ctrs) == 1
    return ctrs[0]


def compose() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    return services


def dockerfile_runtime() -> str:
    """The Dockerfile's last stage: what the image is made of."""
    return (ROOT / "Dockerfile").read_text().rsplit("\nFROM ", 1)[1]


def check_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Each FAIRLOSS_* name is a field of Settings, and the service accepts the values."""
    fields = {PREFIX + name.upper() for name in Settings.model_fields}
    names = {name for name in env if name.startswith(PREFIX)}
    assert names, "no FAIRLOSS_* settings"
    assert names <= fields, f"not read by the service: {sorted(names - fields)}"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def health_paths() -> list[tuple[str, str]]:
    """(where, path) of every health probe that the deployment files define."""
    ctr = container()
    found = [
        (f"k8s {probe}", ctr[probe]["httpGet"]["path"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
        if probe in ctr
    ]
    healthcheck = re.search(r"^HEALTHCHECK .*?(/\w+)'", dockerfile_runtime(), re.M | re.S)
    assert healthcheck, "the Dockerfile has no HEALTHCHECK"
    found.append(("Dockerfile HEALTHCHECK", healthcheck.group(1)))
    test = " ".join(compose()["fairloss"]["healthcheck"]["test"])
    compose_path = re.search(r":8000(/\w+)", test)
    assert compose_path, "the compose healthcheck must call port 8000"
    found.append(("compose healthcheck", compose_path.group(1)))
    return found


@pytest.mark.anyio
@pytest.mark.parametrize(("where", "path"), health_paths())
async def test_health_probes_answer_on_the_app(
    client: httpx.AsyncClient, where: str, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200, f"{where}: GET {path} -> {response.status_code}"


def test_k8s_probes_use_the_right_routes_and_port() -> None:
    ctr = container()
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port_names = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in ctr:
            port = ctr[probe]["httpGet"]["port"]
            assert port in port_names or port in port_names.values()


def test_k8s_ports_and_env_match_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    ctr = container()
    env = {e["name"]: e["value"] for e in ctr["env"] if "value" in e}
    settings = check_env(env, monkeypatch)
    for name in {e["name"] for e in ctr["env"]} - set(env):  # valueFrom: names must still exist
        assert name.removeprefix(PREFIX).lower() in Settings.model_fields
    (port,) = ctr["ports"]
    assert port["containerPort"] == settings.port
    assert settings.host == "0.0.0.0"
    # The drain fits in the grace period, after the preStop pause.
    pod = k8s_docs()["Deployment"]["spec"]["template"]["spec"]
    assert settings.graceful_shutdown_s + 5 < pod["terminationGracePeriodSeconds"]
    assert {"requests", "limits"} <= ctr["resources"].keys()


def test_k8s_service_and_hpa_point_at_the_deployment() -> None:
    docs = k8s_docs()
    deployment, service, hpa = docs["Deployment"], docs["Service"], docs["HorizontalPodAutoscaler"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    port_names = {p["name"]: p["containerPort"] for p in container()["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in port_names or port["targetPort"] in port_names.values()
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_k8s_runs_as_the_image_user() -> None:
    pod = k8s_docs()["Deployment"]["spec"]["template"]["spec"]
    user = re.search(r"^USER (\d+)", dockerfile_runtime(), re.MULTILINE)
    assert user, "the image needs a numeric non-root USER"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(user.group(1)) != 0


def test_dockerfile_matches_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = dockerfile_runtime()
    env = dict(re.findall(r"\b(FAIRLOSS_\w+)=(\S+)", runtime))
    settings = check_env(env, monkeypatch)
    assert settings.host == "0.0.0.0"
    assert re.search(rf"^EXPOSE {settings.port}$", runtime, re.MULTILINE)
    assert 'CMD ["python", "-m", "service"]' in runtime


def test_compose_matches_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose()
    sidecar = services["fairloss"]
    settings = check_env({k: str(v) for k, v in sidecar["environment"].items()}, monkeypatch)
    assert [p.rsplit(":", 1)[1] for p in sidecar["ports"]] == [str(settings.port)]
    url = services["trainer"]["environment"]["SCORER_URL"]
    assert url == f"http://fairloss:{settings.port}"
