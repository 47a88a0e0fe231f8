"""The Compose files agree with the stack's plan and keep the networking rules (no engine)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.compose import plan
from harness.stack.compose import PORT_VARIABLES
from harness.stack.topology import Topology, TunnelSpec

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "compose"
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


class _ComposeLoader(yaml.SafeLoader):
    """PyYAML plus Compose's ``!reset`` tag (kept as a marker)."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: "!reset")


def _load(name: str) -> dict[str, Any]:
    data = yaml.load((COMPOSE_DIR / name).read_text(), Loader=_ComposeLoader)
    assert isinstance(data, dict)
    return data


def _defaults(value: Any) -> Any:
    """Interpolate ``${VAR:-default}`` with its default, as Compose does with VAR unset."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [_defaults(v) for v in value]
    if isinstance(value, dict):
        return {k: _defaults(v) for k, v in value.items()}
    return value


def test_every_component_and_the_fault_proxy_is_a_service() -> None:
    services = _load("compose.yaml")["services"]
    for component in Topology().components:
        assert plan.service_of(component) in services
    assert {"toxiproxy", "setup", "bootstrap"} <= set(services)
    assert services["toxiproxy"]["image"].startswith("ghcr.io/shopify/toxiproxy:")
    assert services["broker"]["image"].startswith("eclipse-mosquitto:")


def test_clients_dial_their_link_through_the_fault_proxy() -> None:
    services = _defaults(_load("compose.yaml")["services"])

    def option(service: str, name: str) -> str:
        command = services[service]["command"]
        return str(command[command.index(name) + 1])

    assert option("controlplane", "--broker") == plan.link("cp-broker").faultproxy_address
    for pop in plan.POPS:
        broker = plan.link(f"edge-{pop}-broker").faultproxy_address
        assert option(f"edge-{pop}", "--broker") == broker
    assert option("bootstrap", "--api") == "http://" + plan.link("connector-api").faultproxy_address
    assert services["connector"]["command"] == plan.connector_command()
    for pop in plan.POPS:
        assert services[f"edge-{pop}"]["command"] == plan.edge_command(pop)
        for peer in plan.POPS:
            if peer != pop:
                address = plan.link(f"pop-{pop}-{peer}").faultproxy_address
                assert f"{peer}={address}" in services[f"edge-{pop}"]["command"]
    assert services["anycast"]["command"] == plan.anycast_command()
    conf = (COMPOSE_DIR / "mosquitto" / "mosquitto.conf").read_text()
    for lk in plan.links():
        host, port = lk.upstream.split(":")
        if host == "broker":  # mosquitto's listener is in its configuration file
            assert f"listener {port} 0.0.0.0" in conf
            continue
        assert f"0.0.0.0:{port}" in services[host]["command"], lk


def test_services_share_networks_only_with_the_fault_proxy() -> None:
    data = _load("compose.yaml")
    networks: dict[str, set[str]] = {}
    for service, spec in data["services"].items():
        for network in spec["networks"]:
            networks.setdefault(network, set()).add(service)
    for network, members in networks.items():
        others = members - {"toxiproxy", "setup", "bootstrap"}
        allowed = {"connector", "origin"} if network == "net-origin" else set()
        if network.startswith("front-"):  # the anycast front and one PoP, nothing else
            assert members == {"anycast", f"edge-{network.removeprefix('front-')}"}, network
            allowed = members
        assert len(others) <= 1 or others == allowed, (network, members)
        if network.startswith(("net-", "front-")):
            assert data["networks"][network] == {"internal": True}, network


def test_ports_are_published_on_loopback_only_with_a_variable_each() -> None:
    text = (COMPOSE_DIR / "compose.yaml").read_text()
    services = _load("compose.yaml")["services"]
    published = [p for spec in services.values() for p in spec.get("ports", [])]
    assert published
    for port in published:
        assert str(port).startswith("127.0.0.1:${OUTLAST_"), port
    for variable in PORT_VARIABLES.values():
        assert "${" + variable + ":-" in text, variable


def test_healthchecks_are_exec_form_and_state_is_on_volumes() -> None:
    data = _load("compose.yaml")
    services = data["services"]
    for name, spec in services.items():
        if name in ("setup", "bootstrap"):
            continue
        assert spec["healthcheck"]["test"][0] == "CMD", name
    assert "controlplane-data:/var/lib/outlast/controlplane" in services["controlplane"]["volumes"]
    for pop in plan.POPS:
        assert f"edge-{pop}-cache:/var/lib/outlast/edge" in services[f"edge-{pop}"]["volumes"]
    assert "broker-data:/mosquitto/data" in services["broker"]["volumes"]
    conf = (COMPOSE_DIR / "mosquitto" / "mosquitto.conf").read_text()
    assert "persistence true" in conf and "listener 1883 0.0.0.0" in conf


def test_offline_override_replaces_every_image_and_toxiproxy() -> None:
    base = _load("compose.yaml")["services"]
    offline = _load("compose.offline.yaml")["services"]
    assert set(offline) == set(base)
    for name, spec in offline.items():
        assert spec["image"] == "${OUTLAST_OFFLINE_IMAGE:-outlast:offline}", name
        assert spec["pull_policy"] == "never", name
        if "build" in base[name]:
            assert spec["build"] == "!reset", name
    assert offline["toxiproxy"]["command"][:3] == ["outlast", "serve", "faultproxy"]
    # our server refuses 0.0.0.0 (the API and the populated proxies) unless told otherwise
    assert "--allow-non-loopback" in offline["toxiproxy"]["command"]
    assert offline["toxiproxy"]["healthcheck"]["test"][0] == "CMD"
    assert offline["broker"]["command"][0] == "mosquitto"


def test_populate_body_names_every_link_of_the_embedded_topology() -> None:
    body = plan.populate_body()
    assert [p["name"] for p in body] == Topology().links
    assert len({p["listen"] for p in body}) == len(body)
    assert all(str(p["listen"]).startswith("0.0.0.0:") for p in body)


def test_anycast_front_reaches_every_pop_visitor_and_dns_port() -> None:
    services = _defaults(_load("compose.yaml")["services"])
    anycast = services["anycast"]
    command = anycast["command"]
    pops = [command[i + 1] for i, arg in enumerate(command) if arg == "--pop"]
    assert pops == [
        f"{pop}=edge-{pop}:{plan.EDGE_VISITOR_PORT},edge-{pop}:{plan.EDGE_DNS_PORT}"
        for pop in plan.POPS
    ]
    assert set(anycast["networks"]) == {"pub-anycast", *(f"front-{pop}" for pop in plan.POPS)}
    container_ports = {str(p).split(":", 2)[2] for p in anycast["ports"]}
    assert container_ports == {
        str(plan.ANYCAST_VISITOR_PORT),
        f"{plan.ANYCAST_DNS_PORT}/udp",
        f"{plan.ANYCAST_DNS_PORT}/tcp",
        str(plan.ANYCAST_CONTROL_PORT),
    }


def test_service_of_maps_anycast_and_every_replica() -> None:
    topology = Topology(tunnels=(TunnelSpec("web", "app.example.com", replicas=3),))
    services = {c: plan.service_of(c) for c in topology.components}
    assert services["anycast"] == "anycast"
    assert services["connector-web"] == "connector"
    assert services["connector-web-2"] == "connector-2"
    assert services["connector-web-3"] == "connector-3"
    assert plan.service_of("connector-api-2", "api") == "connector-2"
    with pytest.raises(KeyError):
        plan.service_of("connector-other")


def test_the_compose_broker_is_tls_only_with_users_acls_and_bound_client_ids() -> None:
    conf = (COMPOSE_DIR / "mosquitto" / "mosquitto.conf").read_text()
    lines = {line.split(" ", 1)[0]: line for line in conf.splitlines() if line and line[0] != "#"}
    assert [ln for ln in conf.splitlines() if ln.startswith("listener ")] == [
        "listener 1883 0.0.0.0"
    ]
    assert lines["allow_anonymous"] == "allow_anonymous false"
    assert lines["use_username_as_clientid"] == "use_username_as_clientid true"
    for option, name in (
        ("certfile", "broker.pem"),
        ("keyfile", "broker.key"),
        ("password_file", "mosquitto.passwd"),
        ("acl_file", "mosquitto.acl"),
    ):
        assert lines[option] == f"{option} {plan.BROKER_FILES_DIR}/{name}", option


def test_each_broker_client_mounts_only_its_own_credentials() -> None:
    """No container holds another client's broker password, and none is in the Compose file's
    environment; the broker's own volume is mounted by ``setup`` and the broker only."""
    services = _load("compose.yaml")["services"]
    for name, spec in services.items():
        for variable in spec.get("environment", {}):
            assert not any(w in variable for w in ("PASSWORD", "SECRET", "TOKEN")), name

    def mounts(service: str) -> set[str]:
        return {str(v).split(":")[0] for v in services[service].get("volumes", [])}

    broker_volumes = {"broker-auth-broker"} | {
        plan.broker_client_volume(c) for c in plan.broker_clients()
    }
    for name in services:
        held = mounts(name) & broker_volumes
        if name == "setup":
            assert held == broker_volumes
        elif name == "broker":
            assert held == {"broker-auth-broker"}
        elif name in plan.broker_clients():
            assert held == {plan.broker_client_volume(name)}, name
            own = f"{plan.broker_client_volume(name)}:{plan.BROKER_CLIENT_DIR}:ro"
            assert own in services[name]["volumes"], name
            command = services[name]["command"]
            for option, value in zip(
                plan.broker_client_options()[::2], plan.broker_client_options()[1::2], strict=True
            ):
                assert command[command.index(option) + 1] == value, (name, option)
        else:
            assert held == set(), name
    assert services["broker"]["depends_on"]["setup"] == {
        "condition": "service_completed_successfully"
    }


def test_setup_writes_the_broker_files_once_with_tight_modes(tmp_path: Path) -> None:
    from harness.compose.steps import write_broker_auth
    from reference.broker.auth import BrokerCredential, password_matches

    auth = tmp_path / "broker-auth"
    assert write_broker_auth(auth) is True
    broker_dir = auth / "broker"
    hashes = dict(
        line.split(":", 1) for line in (broker_dir / "mosquitto.passwd").read_text().splitlines()
    )
    for client in plan.broker_clients():
        credential = BrokerCredential.load(auth / client / plan.BROKER_CREDENTIALS_FILE)
        assert credential.username == client
        assert password_matches(hashes[client], credential.password)
        assert (auth / client / plan.BROKER_CREDENTIALS_FILE).stat().st_mode & 0o077 == 0
        assert (auth / client / plan.BROKER_CA_FILE).read_bytes() == (
            broker_dir / plan.BROKER_CA_FILE
        ).read_bytes()
        assert sorted(p.name for p in (auth / client).iterdir()) == sorted(
            [plan.BROKER_CA_FILE, plan.BROKER_CREDENTIALS_FILE]
        )
    for secret in ("broker.key", "mosquitto.passwd", "mosquitto.acl", "health/mosquitto_sub"):
        assert (broker_dir / secret).stat().st_mode & 0o077 == 0, secret
    assert not any("PRIVATE KEY" in p.read_text() for p in auth.rglob("*.pem"))
    before = (auth / "controlplane" / plan.BROKER_CREDENTIALS_FILE).read_bytes()
    assert write_broker_auth(auth) is False  # idempotent: a second `up` keeps the files
    assert (auth / "controlplane" / plan.BROKER_CREDENTIALS_FILE).read_bytes() == before
