"""The Compose stack's fixed shape: services, container ports, fault-proxy links, commands.

``compose/compose.yaml`` spells this out for humans; this module is the same plan as data, used by
the one-shot ``setup`` service (which creates the proxies), by the bootstrap service and by
:class:`harness.stack.compose.ComposeStack`. ``tests/compose`` checks that the two agree.

Inside the project every service listens on ``0.0.0.0`` (container-internal) and reaches another
service only through a proxy of the ``toxiproxy`` service, named as in the embedded stack.
"""

from __future__ import annotations

from dataclasses import dataclass

POPS: tuple[str, ...] = ("ams", "fra")
FAULTPROXY_SERVICE = "toxiproxy"
FAULTPROXY_API_PORT = 8474

BROKER_PORT = 1883
CONTROLPLANE_PORT = 8080
ORIGIN_PORT = 8080
EDGE_TUNNEL_PORT = 7844
EDGE_VISITOR_PORT = 8080
EDGE_DNS_PORT = 5353
EDGE_METRICS_PORT = 9090
EDGE_PEER_PORT = 7845
ANYCAST_SERVICE = "anycast"
ANYCAST_VISITOR_PORT = 8080
ANYCAST_DNS_PORT = 5353
ANYCAST_CONTROL_PORT = 8081
CONNECTOR_METRICS_PORT = 20241

DATA_ROOT = "/var/lib/outlast"
HOME_DIR = f"{DATA_ROOT}/home"
PKI_DIR = f"{DATA_ROOT}/pki"
CONTROLPLANE_DIR = f"{DATA_ROOT}/controlplane"
EDGE_CACHE_DIR = f"{DATA_ROOT}/edge"
CONNECTOR_STATE_DIR = f"{DATA_ROOT}/connector"
ADMIN_TOKEN_FILE = f"{CONTROLPLANE_DIR}/admin.token"
EDGE_CA_FILE = f"{PKI_DIR}/edge-ca.pem"
#: Public half of the control plane's configuration-signing key (docs/security.md).
CONFIG_KEY_FILE = f"{PKI_DIR}/config-signing.pub"
ORIGINCERT_FILE = f"{HOME_DIR}/cert.pem"
#: The ``setup`` service writes the broker's users and TLS files here, one volume per
#: directory: ``broker`` (mounted by the broker only) and one per client (mounted by it only).
BROKER_AUTH_DIR = f"{DATA_ROOT}/broker-auth"
#: Where the broker container mounts its directory (mosquitto.conf names these files).
BROKER_FILES_DIR = "/mosquitto/auth"
#: Where the control plane and each edge mount their own client directory.
BROKER_CLIENT_DIR = f"{DATA_ROOT}/broker-client"
BROKER_CREDENTIALS_FILE = "credentials.json"
BROKER_CA_FILE = "broker-ca.pem"
#: The broker's health check logs in as this user; it may only read ``$SYS/broker/uptime``.
BROKER_HEALTH_USER = "health"
BOOTSTRAP_FILE = f"{HOME_DIR}/bootstrap.json"

#: Port of each proxy inside the fault-proxy container (fixed, so the Compose file can name them).
PROXY_PORTS: dict[str, int] = {
    "conn-ams": 10001,
    "conn-fra": 10002,
    "connector-api": 10010,
    "edge-ams-api": 10011,
    "edge-fra-api": 10012,
    "cp-broker": 10020,
    "edge-ams-broker": 10021,
    "edge-fra-broker": 10022,
    "pop-ams-fra": 10031,
    "pop-fra-ams": 10032,
}

DEFAULT_TUNNEL = "web"
DEFAULT_HA_CONNECTIONS = 4


@dataclass(frozen=True)
class Link:
    """One fault-proxy proxy: clients dial ``faultproxy_address``, it dials ``upstream``."""

    name: str
    listen_port: int
    upstream: str

    @property
    def listen(self) -> str:
        """The proxy's listen address inside the fault-proxy container."""
        return f"0.0.0.0:{self.listen_port}"

    @property
    def faultproxy_address(self) -> str:
        """What a client container dials to use this link."""
        return f"{FAULTPROXY_SERVICE}:{self.listen_port}"


def _peers(pop: str) -> list[str]:
    return [peer for peer in POPS if peer != pop]


def links() -> list[Link]:
    """Every link of the Compose stack, in the embedded stack's order."""
    upstream = {
        "connector-api": f"controlplane:{CONTROLPLANE_PORT}",
        "cp-broker": f"broker:{BROKER_PORT}",
    }
    for pop in POPS:
        upstream[f"conn-{pop}"] = f"edge-{pop}:{EDGE_TUNNEL_PORT}"
        upstream[f"edge-{pop}-api"] = f"controlplane:{CONTROLPLANE_PORT}"
        upstream[f"edge-{pop}-broker"] = f"broker:{BROKER_PORT}"
        for peer in _peers(pop):
            upstream[f"pop-{pop}-{peer}"] = f"edge-{peer}:{EDGE_PEER_PORT}"
    order = [
        *(f"conn-{pop}" for pop in POPS),
        "connector-api",
        *(f"edge-{pop}-api" for pop in POPS),
        "cp-broker",
        *(f"edge-{pop}-broker" for pop in POPS),
        *(f"pop-{pop}-{peer}" for pop in POPS for peer in _peers(pop)),
    ]
    return [Link(name, PROXY_PORTS[name], upstream[name]) for name in order]


def link(name: str) -> Link:
    """The link called ``name`` (``KeyError`` names the known ones)."""
    for candidate in links():
        if candidate.name == name:
            return candidate
    raise KeyError(f"no link {name!r} (have: {', '.join(PROXY_PORTS)})")


def populate_body() -> list[dict[str, object]]:
    """The JSON body of ``POST /populate`` that creates every proxy."""
    return [
        {"name": lk.name, "listen": lk.listen, "upstream": lk.upstream, "enabled": True}
        for lk in links()
    ]


def connector_command(
    tunnel: str = DEFAULT_TUNNEL,
    ha_connections: int | str = DEFAULT_HA_CONNECTIONS,
    extra: tuple[str, ...] = (),
    origin_port: int = ORIGIN_PORT,
) -> list[str]:
    """The ``connector`` service's command (runs ``tunnel`` by name with its credentials file;
    ``origin_port``: the port of the ``origin`` service, the user's container's own)."""
    command = [
        "outlast",
        "tunnel",
        "--origincert",
        ORIGINCERT_FILE,
        "run",
        tunnel,
        "--credentials-file",
        f"{HOME_DIR}/{tunnel}.json",
        "--url",
        f"http://origin:{origin_port}",
        "--edge-ca",
        EDGE_CA_FILE,
        "--metrics",
        f"0.0.0.0:{CONNECTOR_METRICS_PORT}",
        "--state-dir",
        CONNECTOR_STATE_DIR,
        "--ha-connections",
        str(ha_connections),
    ]
    for pop in POPS:
        command += ["--edge", link(f"conn-{pop}").faultproxy_address]
    return [*command, *extra]


def broker_client_options() -> list[str]:
    """``--broker-credentials`` and ``--broker-ca`` of a broker client, from its own volume."""
    return [
        "--broker-credentials",
        f"{BROKER_CLIENT_DIR}/{BROKER_CREDENTIALS_FILE}",
        "--broker-ca",
        f"{BROKER_CLIENT_DIR}/{BROKER_CA_FILE}",
    ]


def edge_command(pop: str) -> list[str]:
    """The ``edge-<pop>`` service's command: listeners, broker link, peer listener and peers."""
    command = [
        "outlast",
        "serve",
        "edge",
        "--pop",
        pop,
        "--tunnel-listen",
        f"0.0.0.0:{EDGE_TUNNEL_PORT}",
        "--visitor-listen",
        f"0.0.0.0:{EDGE_VISITOR_PORT}",
        "--dns-listen",
        f"0.0.0.0:{EDGE_DNS_PORT}",
        "--metrics-listen",
        f"0.0.0.0:{EDGE_METRICS_PORT}",
        "--broker",
        link(f"edge-{pop}-broker").faultproxy_address,
        *broker_client_options(),
        "--cache-dir",
        EDGE_CACHE_DIR,
        "--tls-cert",
        f"{PKI_DIR}/edge-{pop}.pem",
        "--tls-key",
        f"{PKI_DIR}/edge-{pop}.key",
        "--config-key",
        CONFIG_KEY_FILE,
        "--peer-listen",
        f"0.0.0.0:{EDGE_PEER_PORT}",
    ]
    for peer in _peers(pop):
        command += ["--peer", f"{peer}={link(f'pop-{pop}-{peer}').faultproxy_address}"]
    return command


def anycast_command(
    convergence: float | str = 1.0,
    seed: int | str = 0,
    regions: tuple[str, ...] = (),
) -> list[str]:
    """The ``anycast`` service's command: the visitor entry in front of every edge's container
    visitor and DNS ports (``regions`` are ``--region`` values; none = one per PoP)."""
    command = [
        "outlast",
        "serve",
        "anycast",
        "--listen",
        f"0.0.0.0:{ANYCAST_VISITOR_PORT}",
        "--dns-listen",
        f"0.0.0.0:{ANYCAST_DNS_PORT}",
        "--control-listen",
        f"0.0.0.0:{ANYCAST_CONTROL_PORT}",
        "--convergence",
        str(convergence),
        "--seed",
        str(seed),
    ]
    for pop in POPS:
        command += ["--pop", f"{pop}=edge-{pop}:{EDGE_VISITOR_PORT},edge-{pop}:{EDGE_DNS_PORT}"]
    for region in regions:
        command += ["--region", region]
    return command


def connector_service(replica: int) -> str:
    """The Compose service of connector replica ``replica`` (1 = ``connector``)."""
    return "connector" if replica == 1 else f"connector-{replica}"


def service_of(component: str, tunnel: str = DEFAULT_TUNNEL) -> str:
    """The Compose service that runs harness component ``component`` (``connector-<tunnel>`` is
    ``connector``, its replica ``connector-<tunnel>-<n>`` is ``connector-<n>``)."""
    connector = f"connector-{tunnel}"
    if component == connector:
        return connector_service(1)
    replica = component.removeprefix(f"{connector}-")
    if component.startswith(f"{connector}-") and replica.isdigit() and int(replica) >= 2:
        return connector_service(int(replica))
    if component == "faultproxy":
        return FAULTPROXY_SERVICE
    known = {
        "broker",
        "controlplane",
        "origin",
        ANYCAST_SERVICE,
        FAULTPROXY_SERVICE,
        *(f"edge-{p}" for p in POPS),
    }
    if component not in known:
        raise KeyError(component)
    return component


def broker_clients() -> tuple[str, ...]:
    """Broker users that are stack clients: the control plane and each edge."""
    return ("controlplane", *(f"edge-{pop}" for pop in POPS))


def broker_client_volume(client: str) -> str:
    """The volume holding one broker client's credentials and the broker CA."""
    return f"broker-client-{client}"
