"""The Swarm rendering: nothing published, every service pinned, files as secrets and configs."""

from __future__ import annotations

import json
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


BROKER_ONLY = {"broker-passwd", "broker-acl", "broker-key", "broker-health-options"}
CLIENTS = ("controlplane", "edge-ams", "edge-fra")


def _sources(service: dict) -> dict[str, str]:
    """Source -> target of every secret and config a service of the stack file gets."""
    refs = [*service.get("secrets", []), *service.get("configs", [])]
    return {ref["source"]: ref["target"] for ref in refs}


def test_the_broker_gets_its_tls_users_and_acl_files(tmp_path: Path) -> None:
    stack = _stack(tmp_path, with_connectors=True)
    broker = stack["services"]["broker"]
    targets = _sources(broker)
    conf = (Path(__file__).parents[2] / "compose" / "mosquitto" / "mosquitto.conf").read_text()
    for key in ("certfile", "keyfile", "password_file", "acl_file"):
        path = next(line.split()[1] for line in conf.splitlines() if line.startswith(key + " "))
        assert path in targets.values(), key  # every file mosquitto.conf names is there
    assert BROKER_ONLY <= {s["source"] for s in broker["secrets"]}
    assert {"broker-cert", "broker-ca", "mosquitto-conf"} <= {
        c["source"] for c in broker["configs"]
    }
    # mosquitto runs as the image's user (uid 10001) and reads its password file itself.
    assert all(s["uid"] == "10001" and s["mode"] == 0o400 for s in broker["secrets"])
    assert not any(v.startswith("broker-auth-") for v in broker["volumes"])
    assert not any(name.startswith(("broker-auth-", "broker-client-")) for name in stack["volumes"])


def test_each_broker_client_gets_only_its_own_credentials(tmp_path: Path) -> None:
    stack = _stack(tmp_path, with_connectors=True, replicas=2)
    for name, service in stack["services"].items():
        sources = _sources(service)
        volumes = service.get("volumes", [])
        assert not any(v.startswith(("broker-auth-", "broker-client-")) for v in volumes), name
        credentials = {s for s in sources if s.startswith("broker-credentials-")}
        if name in CLIENTS:
            assert credentials == {f"broker-credentials-{name}"}, name
            assert sources[f"broker-credentials-{name}"] == (
                "/var/lib/outlast/broker-client/credentials.json"
            )
            assert sources["broker-ca"] == "/var/lib/outlast/broker-client/broker-ca.pem"
        else:
            assert not credentials, name
        if name != "broker":
            assert not BROKER_ONLY & set(sources), name
        for pop in ("ams", "fra"):
            assert (f"edge-{pop}-key" in sources) == (name == f"edge-{pop}"), name
    # The host file behind each client's secret is that client's own credential.
    for client in CLIENTS:
        path = Path(stack["secrets"][f"broker-credentials-{client}"]["file"])
        assert json.loads(path.read_text())["username"] == client
        assert path.stat().st_mode & 0o077 == 0
