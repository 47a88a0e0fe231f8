"""The Kubernetes rendering validates against the OpenAPI schemas (offline) and passes the lint."""

from __future__ import annotations

import base64
import copy
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.deploy.files import add_tunnel_files, make_files
from harness.deploy.kubernetes_render import render_kubernetes
from harness.deploy.manifest_lint import lint_manifests
from harness.deploy.reference_plan import PlanParameters, reference_plan

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="pip install kubernetes-validate"
)
VERSION = "1.30.0"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Validation must work offline: any socket connection fails the test."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield


def _documents(tmp_path: Path, replicas: int = 1) -> list[dict[str, Any]]:
    plan = reference_plan(PlanParameters(replicas=replicas))
    files = make_files(plan, tmp_path / "files")
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN ORIGIN CERT-----\n")
    creds = tmp_path / "web.json"
    creds.write_text("{}")
    files = add_tunnel_files(plan, files, cert, creds)
    manifests = render_kubernetes(plan, files)
    return [doc for docs in manifests.values() for doc in docs]


def test_every_manifest_validates_against_the_schema(tmp_path: Path) -> None:
    documents = _documents(tmp_path, replicas=2)
    kinds = {d["kind"] for d in documents}
    assert {
        "Namespace",
        "Secret",
        "ConfigMap",
        "NetworkPolicy",
        "Service",
        "Deployment",
        "StatefulSet",
    } <= kinds
    for document in documents:
        kubernetes_validate.validate(document, VERSION, strict=True)


def test_a_broken_manifest_is_refused(tmp_path: Path) -> None:
    """The validator itself catches a wrong type and an unknown field."""
    workload = next(d for d in _documents(tmp_path) if d["kind"] == "StatefulSet")
    wrong_type = copy.deepcopy(workload)
    wrong_type["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, VERSION, strict=True)
    unknown = copy.deepcopy(workload)
    unknown["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, VERSION, strict=True)


def test_lint_passes(tmp_path: Path) -> None:
    assert lint_manifests(_documents(tmp_path, replicas=2)) == []


def test_lint_finds_each_problem(tmp_path: Path) -> None:
    documents = _documents(tmp_path)
    broken = copy.deepcopy(documents)
    workload = next(d for d in broken if d["kind"] == "Deployment")
    container = workload["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["runAsNonRoot"] = False
    container["ports"][0]["hostPort"] = 8080
    service = next(d for d in broken if d["kind"] == "Service")
    service["spec"]["type"] = "NodePort"
    broken = [d for d in broken if d["metadata"]["name"] != "outlast-default-deny"]
    broken = [
        d for d in broken if not (d["kind"] == "Secret" and d["metadata"]["name"] == "admin-token")
    ]
    problems = "\n".join(lint_manifests(broken))
    assert "runAsNonRoot" in problems
    assert "hostPort" in problems
    assert "NodePort" in problems
    assert "default-deny" in problems
    assert "admin-token" in problems


def test_the_network_policy_keeps_links_behind_the_fault_proxy(tmp_path: Path) -> None:
    """As in Compose: the connector may reach the fault proxy and the origin, never an edge."""
    documents = _documents(tmp_path)
    policy = next(d for d in documents if d["metadata"]["name"] == "connector-peers")
    allowed = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for rule in policy["spec"]["egress"]
        for peer in rule["to"]
        if "podSelector" in peer
    }
    assert allowed == {"toxiproxy", "origin"}


BROKER_ONLY = {"broker-passwd", "broker-acl", "broker-key", "broker-health-options"}
CLIENTS = ("controlplane", "edge-ams", "edge-fra")


def _mounted(workload: dict[str, Any]) -> dict[str, str]:
    """Secret or ConfigMap name -> mount path, for every file a workload's pod mounts."""
    spec = workload["spec"]["template"]["spec"]
    sources: dict[str, str] = {}
    for volume in spec.get("volumes", []):
        ref = volume.get("secret", {}).get("secretName") or volume.get("configMap", {}).get("name")
        sources[volume["name"]] = ref
    mounts = spec["containers"][0]["volumeMounts"]
    return {sources[m["name"]]: m["mountPath"] for m in mounts if m["name"] in sources}


def test_each_broker_client_gets_only_its_own_credentials(tmp_path: Path) -> None:
    documents = _documents(tmp_path, replicas=2)
    workloads = {
        d["metadata"]["name"]: d for d in documents if d["kind"] in ("Deployment", "StatefulSet")
    }
    broker = _mounted(workloads["broker"])
    assert broker["broker-passwd"] == "/mosquitto/auth/mosquitto.passwd"
    assert broker["broker-key"] == "/mosquitto/auth/broker.key"
    assert BROKER_ONLY | {"broker-cert", "broker-ca", "mosquitto-conf"} <= set(broker)
    claims = {
        c["metadata"]["name"]
        for w in workloads.values()
        for c in w["spec"].get("volumeClaimTemplates", [])
    }
    assert not any(c.startswith(("broker-auth-", "broker-client-")) for c in claims)
    for name, workload in workloads.items():
        mounted = _mounted(workload)
        credentials = {s for s in mounted if s.startswith("broker-credentials-")}
        if name in CLIENTS:
            assert credentials == {f"broker-credentials-{name}"}, name
            assert mounted["broker-ca"] == "/var/lib/outlast/broker-client/broker-ca.pem"
        else:
            assert not credentials, name
        if name != "broker":
            assert not BROKER_ONLY & set(mounted), name
    secrets = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Secret"}
    for client in CLIENTS:
        name = f"broker-credentials-{client}"
        data = json.loads(base64.b64decode(secrets[name]["data"][name]))
        assert data["username"] == client
    assert {"broker-passwd", "broker-acl", "broker-key", "broker-health-options"} <= set(secrets)
