"""The Kubernetes rendering validates against the OpenAPI schemas (offline) and passes the lint."""

from __future__ import annotations

import copy
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
