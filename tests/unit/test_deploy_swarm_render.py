"""The Swarm rendering: nothing published, every service pinned, files as secrets and configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.deploy.files import make_files
from harness.deploy.reference_plan import PlanParameters, reference_plan
from harness.deploy.swarm_render import render_swarm


def _stack(tmp_path: Path, with_connectors: bool, replicas: int = 1) -> dict:
    plan = reference_plan(PlanParameters(replicas=replicas))
    files = {k: str(v) for k, v in make_files(plan, tmp_path / "files").items()}
    if with_connectors:
        files["origincert"] = files["tunnel-web"] = str(tmp_path / "x")
    return render_swarm(plan, files, with_connectors=with_connectors)


def test_nothing_is_published_and_every_service_is_pinned(tmp_path: Path) -> None:
    stack = _stack(tmp_path, with_connectors=True, replicas=2)
    assert {"connector", "connector-2", "edge-ams", "toxiproxy"} <= set(stack["services"])
    assert "setup" not in stack["services"] and "bootstrap" not in stack["services"]
    for name, service in stack["services"].items():
        assert "ports" not in service, name
        assert service["deploy"]["endpoint_mode"] == "dnsrr", name
        assert len(service["deploy"]["placement"]["constraints"]) == 1, name
        assert service["dns"] == ["127.0.0.1"], name  # a dead service's name fails at once
    assert stack["services"]["edge-fra"]["deploy"]["placement"]["constraints"] == [
        "node.labels.outlast.pop == fra"
    ]
    assert all(n["internal"] for n in stack["networks"].values())
    assert stack["networks"]["pub-anycast"]["attachable"] is True


def test_files_become_secrets_and_configs(tmp_path: Path) -> None:
    stack = _stack(tmp_path, with_connectors=True)
    assert {"edge-ams-key", "admin-token", "config-signing-key", "tunnel-web", "origincert"} <= set(
        stack["secrets"]
    )
    assert {"edge-ams-cert", "edge-ca", "mosquitto-conf"} <= set(stack["configs"])
    connector = stack["services"]["connector"]
    targets = {s["source"]: s["target"] for s in connector["secrets"]}
    assert targets["tunnel-web"] == "/var/lib/outlast/home/web.json"
    assert all(s["uid"] == "10001" and s["mode"] == 0o400 for s in connector["secrets"])
    assert not any(v.startswith(("pki:", "home:")) for v in connector.get("volumes", []))


def test_first_deployment_has_no_connectors_and_needs_no_tunnel_files(tmp_path: Path) -> None:
    stack = _stack(tmp_path, with_connectors=False)
    assert "connector" not in stack["services"] and "origin" in stack["services"]
    assert "tunnel-web" not in stack["secrets"]


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    plan = reference_plan()
    with pytest.raises(ValueError, match=r"no host file for .*admin-token"):
        render_swarm(plan, {}, with_connectors=False)
