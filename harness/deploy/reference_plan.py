"""The reference system's deployment plan (what ``compose/compose.yaml`` spells out by hand).

:func:`reference_plan` builds it from the fixed shape in :mod:`harness.compose.plan` (links,
container ports, commands) and a few run parameters (tunnel, replicas, anycast convergence).
``tests/unit/test_deploy_plan.py`` checks that the Compose rendering of the default plan is
the committed Compose file.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.compose import plan as shape
from harness.deploy.model import (
    Condition,
    DeploymentPlan,
    FileMount,
    GeneratedFile,
    Mount,
    Port,
    Service,
)
from reference.config_signing import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE

_HEALTH = ("python", "-m", "harness.compose.healthcheck")
EDGE_CA = "edge-ca"
ADMIN_TOKEN = "admin-token"
SIGNING_KEY = "config-signing-key"
SIGNING_PUB = "config-signing-pub"
ORIGINCERT = "origincert"
MOSQUITTO_CONF = "mosquitto-conf"
MOSQUITTO_CONF_TARGET = "/mosquitto/config/mosquitto.conf"
#: The broker's files from :func:`harness.compose.steps.write_broker_auth` (outside Compose).
BROKER_PASSWD = "broker-passwd"
BROKER_ACL = "broker-acl"
BROKER_CERT = "broker-cert"
BROKER_KEY = "broker-key"
BROKER_CA = "broker-ca"
BROKER_HEALTH_OPTIONS = "broker-health-options"
#: Generated-file name -> (path under the broker's auth directory, secret).
BROKER_FILES: dict[str, tuple[str, bool]] = {
    BROKER_PASSWD: ("mosquitto.passwd", True),
    BROKER_ACL: ("mosquitto.acl", True),
    BROKER_CERT: ("broker.pem", False),
    BROKER_KEY: ("broker.key", True),
    BROKER_CA: (shape.BROKER_CA_FILE, False),
    BROKER_HEALTH_OPTIONS: (f"{shape.BROKER_HEALTH_USER}/mosquitto_sub", True),
}


def edge_cert(pop: str) -> str:
    """Generated-file name of PoP ``pop``'s TLS certificate."""
    return f"edge-{pop}-cert"


def edge_key(pop: str) -> str:
    """Generated-file name of PoP ``pop``'s TLS key."""
    return f"edge-{pop}-key"


def broker_credentials(client: str) -> str:
    """Generated-file name of broker client ``client``'s credentials (its user and password)."""
    return f"broker-credentials-{client}"


def broker_auth_volumes() -> tuple[str, ...]:
    """The volumes ``setup`` fills with the broker's files and each client's (Compose only)."""
    return (
        "broker-auth-broker",
        *(shape.broker_client_volume(client) for client in shape.broker_clients()),
    )


def tunnel_credentials(tunnel: str) -> str:
    """Generated-file name of a tunnel's credentials file."""
    return f"tunnel-{tunnel}"


@dataclass(frozen=True)
class PlanParameters:
    """What changes between runs; the defaults are ``compose/compose.yaml``'s."""

    tunnel: str = shape.DEFAULT_TUNNEL
    hostname: str = "app.example.com"
    replicas: int = 1
    ha_connections: int = shape.DEFAULT_HA_CONNECTIONS
    convergence: float = 1.0
    seed: int = 0
    regions: tuple[str, ...] = ()
    connector_args: tuple[str, ...] = ()


def _port(name: str, container: int, variable: str, default: int, udp: bool = False) -> Port:
    return Port(name, container, variable, default, ("udp", "tcp") if udp else ("tcp",))


def _health(url: str) -> tuple[str, ...]:
    return (*_HEALTH, url)


def _ready(
    *services: str, condition: Condition = "service_healthy"
) -> tuple[tuple[str, Condition], ...]:
    return tuple((service, condition) for service in services)


def _pki(name: str, target: str, secret: bool = False) -> FileMount:
    return FileMount(name, f"{shape.PKI_DIR}/{target}", secret, mode=0o400 if secret else 0o444)


def _broker_client_mount(client: str) -> Mount:
    """A broker client's own credentials and the broker CA (written by ``setup``), read-only."""
    return Mount(shape.broker_client_volume(client), shape.BROKER_CLIENT_DIR, read_only=True)


def _broker_client_files(client: str) -> tuple[FileMount, ...]:
    """Outside Compose: the same two files as secrets/configs, at the same paths."""
    directory = shape.BROKER_CLIENT_DIR
    return (
        FileMount(broker_credentials(client), f"{directory}/{shape.BROKER_CREDENTIALS_FILE}", True),
        FileMount(BROKER_CA, f"{directory}/{shape.BROKER_CA_FILE}", False, mode=0o444),
    )


def _broker_files() -> tuple[FileMount, ...]:
    """Outside Compose: the broker's auth directory as secrets/configs. The broker runs as the
    image's user (uid 10001) in the offline image, which reads its password file itself."""
    return tuple(
        FileMount(name, f"{shape.BROKER_FILES_DIR}/{path}", secret, mode=0o400 if secret else 0o444)
        for name, (path, secret) in BROKER_FILES.items()
    )


def _edge(pop: str, index: int) -> Service:
    return Service(
        name=f"edge-{pop}",
        image="outlast",
        command=tuple(shape.edge_command(pop)),
        networks=(f"pub-edge-{pop}", f"net-edge-{pop}", f"front-{pop}"),
        placement=f"pop:{pop}",
        ports=(
            _port(
                "visitor",
                shape.EDGE_VISITOR_PORT,
                f"OUTLAST_EDGE_{pop.upper()}_VISITOR_PORT",
                18081 + index,
            ),
            _port(
                "dns",
                shape.EDGE_DNS_PORT,
                f"OUTLAST_EDGE_{pop.upper()}_DNS_PORT",
                15301 + index,
                udp=True,
            ),
            _port(
                "metrics",
                shape.EDGE_METRICS_PORT,
                f"OUTLAST_EDGE_{pop.upper()}_METRICS_PORT",
                19091 + index,
            ),
        ),
        mounts=(
            Mount(f"edge-{pop}-cache", shape.EDGE_CACHE_DIR),
            Mount("pki", shape.PKI_DIR, read_only=True),
            _broker_client_mount(f"edge-{pop}"),
        ),
        files=(
            _pki(edge_cert(pop), f"edge-{pop}.pem"),
            _pki(edge_key(pop), f"edge-{pop}.key", secret=True),
            _pki(SIGNING_PUB, PUBLIC_KEY_FILE),
            *_broker_client_files(f"edge-{pop}"),
        ),
        health=_health(f"http://127.0.0.1:{shape.EDGE_METRICS_PORT}/metrics"),
        depends_on=_ready("setup", condition="service_completed_successfully"),
    )


def _connector(params: PlanParameters, replica: int, command: tuple[str, ...]) -> Service:
    service = shape.connector_service(replica)
    state = "connector-state" if replica == 1 else f"connector-state-{replica}"
    tunnel = params.tunnel
    return Service(
        name=service,
        image="outlast",
        command=command,
        networks=(f"pub-{service}", "net-connector", "net-origin"),
        placement="connectors",
        ports=(
            _port(
                "metrics",
                shape.CONNECTOR_METRICS_PORT,
                "OUTLAST_CONNECTOR_METRICS_PORT"
                if replica == 1
                else f"OUTLAST_CONNECTOR_{replica}_METRICS_PORT",
                20241 if replica == 1 else 20240 + replica,
            ),
        ),
        mounts=(
            Mount("home", shape.HOME_DIR, read_only=True),
            Mount("pki", shape.PKI_DIR, read_only=True),
            Mount(state, shape.CONNECTOR_STATE_DIR),
        ),
        files=(
            FileMount(ORIGINCERT, shape.ORIGINCERT_FILE, True),
            FileMount(tunnel_credentials(tunnel), f"{shape.HOME_DIR}/{tunnel}.json", True),
            _pki(EDGE_CA, "edge-ca.pem"),
        ),
        health=_health(f"http://127.0.0.1:{shape.CONNECTOR_METRICS_PORT}/ready"),
        depends_on=(
            ("bootstrap", "service_completed_successfully"),
            *_ready(*(f"edge-{pop}" for pop in shape.POPS), "origin"),
        ),
        needs_tunnel=True,
    )


def reference_plan(params: PlanParameters | None = None) -> DeploymentPlan:
    """The reference system as containers behind one fault-proxy service."""
    params = params or PlanParameters()
    if params.replicas < 1:
        raise ValueError("replicas must be at least 1")
    pops = shape.POPS
    anycast = shape.anycast_command(params.convergence, params.seed, params.regions)
    connector = tuple(
        shape.connector_command(params.tunnel, params.ha_connections, params.connector_args)
    )
    controlplane_dir = shape.CONTROLPLANE_DIR
    services = [
        Service(
            name=shape.FAULTPROXY_SERVICE,
            image="faultproxy",
            command=(
                "outlast",
                "serve",
                "faultproxy",
                "--listen",
                f"0.0.0.0:{shape.FAULTPROXY_API_PORT}",
                "--allow-non-loopback",
                "--seed",
                str(params.seed),
            ),
            networks=(
                "pub-toxiproxy",
                "net-broker",
                "net-controlplane",
                *(f"net-edge-{pop}" for pop in pops),
                "net-connector",
            ),
            ports=(_port("api", shape.FAULTPROXY_API_PORT, "OUTLAST_FAULTPROXY_PORT", 18474),),
            health=_health(f"http://127.0.0.1:{shape.FAULTPROXY_API_PORT}/version"),
        ),
        Service(
            name="setup",
            image="outlast",
            command=(
                "outlast",
                "compose",
                "setup",
                "--faultproxy",
                f"http://{shape.FAULTPROXY_SERVICE}:{shape.FAULTPROXY_API_PORT}",
                "--pki-dir",
                shape.PKI_DIR,
                "--signing-key",
                f"{controlplane_dir}/{PRIVATE_KEY_FILE}",
                "--broker-auth-dir",
                shape.BROKER_AUTH_DIR,
            ),
            networks=("net-connector",),
            mounts=(
                Mount("pki", shape.PKI_DIR),
                Mount("controlplane-data", controlplane_dir),
                Mount("broker-auth-broker", f"{shape.BROKER_AUTH_DIR}/broker"),
                *(
                    Mount(shape.broker_client_volume(client), f"{shape.BROKER_AUTH_DIR}/{client}")
                    for client in shape.broker_clients()
                ),
            ),
            depends_on=_ready(shape.FAULTPROXY_SERVICE),
            one_shot=True,
        ),
        Service(
            name="broker",
            image="broker",
            command=("mosquitto", "-c", MOSQUITTO_CONF_TARGET),
            networks=("net-broker",),
            # Read-write: the image's entrypoint hands /mosquitto to the mosquitto user.
            mounts=(
                Mount("broker-data", "/mosquitto/data"),
                Mount("broker-auth-broker", shape.BROKER_FILES_DIR),
            ),
            files=(
                FileMount(MOSQUITTO_CONF, MOSQUITTO_CONF_TARGET, False, mode=0o444),
                *_broker_files(),
            ),
            health=_health(f"tcp://127.0.0.1:{shape.BROKER_PORT}"),
            depends_on=_ready("setup", condition="service_completed_successfully"),
            # The health check's mosquitto_sub reads its user, password and CA from here.
            environment=(
                ("XDG_CONFIG_HOME", f"{shape.BROKER_FILES_DIR}/{shape.BROKER_HEALTH_USER}"),
            ),
        ),
        Service(
            name="controlplane",
            image="outlast",
            command=(
                "outlast",
                "serve",
                "controlplane",
                "--data-dir",
                controlplane_dir,
                "--listen",
                f"0.0.0.0:{shape.CONTROLPLANE_PORT}",
                "--broker",
                shape.link("cp-broker").faultproxy_address,
                *shape.broker_client_options(),
            ),
            networks=("pub-controlplane", "net-controlplane"),
            ports=(_port("api", shape.CONTROLPLANE_PORT, "OUTLAST_API_PORT", 18080),),
            mounts=(
                Mount("controlplane-data", controlplane_dir),
                _broker_client_mount("controlplane"),
            ),
            files=(
                FileMount(ADMIN_TOKEN, shape.ADMIN_TOKEN_FILE, True),
                FileMount(SIGNING_KEY, f"{controlplane_dir}/{PRIVATE_KEY_FILE}", True),
                *_broker_client_files("controlplane"),
            ),
            health=_health(f"http://127.0.0.1:{shape.CONTROLPLANE_PORT}/health"),
            depends_on=_ready("setup", condition="service_completed_successfully"),
        ),
        *(_edge(pop, index) for index, pop in enumerate(pops)),
        Service(
            name=shape.ANYCAST_SERVICE,
            image="outlast",
            command=tuple(anycast),
            networks=("pub-anycast", *(f"front-{pop}" for pop in pops)),
            ports=(
                _port("visitor", shape.ANYCAST_VISITOR_PORT, "OUTLAST_ANYCAST_VISITOR_PORT", 18088),
                _port("dns", shape.ANYCAST_DNS_PORT, "OUTLAST_ANYCAST_DNS_PORT", 15300, udp=True),
                _port("control", shape.ANYCAST_CONTROL_PORT, "OUTLAST_ANYCAST_CONTROL_PORT", 19090),
            ),
            health=_health(f"http://127.0.0.1:{shape.ANYCAST_CONTROL_PORT}/pops"),
            depends_on=_ready(*(f"edge-{pop}" for pop in pops)),
        ),
        Service(
            name="origin",
            image="outlast",
            command=(
                "outlast",
                "serve",
                "origin",
                "--name",
                "origin",
                "--listen",
                f"0.0.0.0:{shape.ORIGIN_PORT}",
            ),
            networks=("pub-origin", "net-origin"),
            placement="connectors",
            ports=(_port("http", shape.ORIGIN_PORT, "OUTLAST_ORIGIN_PORT", 18090),),
            health=_health(f"http://127.0.0.1:{shape.ORIGIN_PORT}/health"),
        ),
        Service(
            name="bootstrap",
            image="outlast",
            command=(
                "outlast",
                "compose",
                "bootstrap",
                "--api",
                f"http://{shape.link('connector-api').faultproxy_address}",
                "--admin-token-file",
                shape.ADMIN_TOKEN_FILE,
                "--home",
                shape.HOME_DIR,
            ),
            networks=("net-connector",),
            mounts=(
                Mount("controlplane-data", controlplane_dir, read_only=True),
                Mount("home", shape.HOME_DIR),
            ),
            depends_on=_ready("controlplane"),
            environment=(
                ("OUTLAST_TUNNEL", params.tunnel),
                ("OUTLAST_HOSTNAME", params.hostname),
            ),
            one_shot=True,
        ),
        *(_connector(params, replica, connector) for replica in range(1, params.replicas + 1)),
    ]
    state_volumes = [
        "connector-state",
        *(f"connector-state-{r}" for r in range(2, params.replicas + 1)),
    ]
    networks: dict[str, bool] = {
        "net-broker": True,
        "net-controlplane": True,
        **{f"net-edge-{pop}": True for pop in pops},
        "net-connector": True,
        "net-origin": True,
        **{f"front-{pop}": True for pop in pops},
    }
    for service in services:
        for network in service.networks:
            networks.setdefault(network, False)
    files = (
        GeneratedFile(EDGE_CA, False, "edge CA certificate (connectors check the edges with it)"),
        *(
            generated
            for pop in pops
            for generated in (
                GeneratedFile(edge_cert(pop), False, f"edge {pop}'s TLS certificate"),
                GeneratedFile(edge_key(pop), True, f"edge {pop}'s TLS key"),
            )
        ),
        GeneratedFile(SIGNING_KEY, True, "the control plane's configuration-signing key"),
        GeneratedFile(SIGNING_PUB, False, "its public half (the edges check configuration)"),
        GeneratedFile(ADMIN_TOKEN, True, "the control plane's admin token"),
        GeneratedFile(MOSQUITTO_CONF, False, "compose/mosquitto/mosquitto.conf"),
        *(
            GeneratedFile(name, secret, f"the broker's {path}")
            for name, (path, secret) in BROKER_FILES.items()
        ),
        *(
            GeneratedFile(
                broker_credentials(client), True, f"broker user {client}'s credentials.json"
            )
            for client in shape.broker_clients()
        ),
        GeneratedFile(ORIGINCERT, True, "cert.pem from `tunnel login` (made after bootstrap)"),
        GeneratedFile(
            tunnel_credentials(params.tunnel),
            True,
            f"{params.tunnel}.json from `tunnel create` (made after bootstrap)",
        ),
    )
    return DeploymentPlan(
        services=tuple(services),
        networks=networks,
        volumes=(
            "broker-data",
            *broker_auth_volumes(),
            "controlplane-data",
            *(f"edge-{pop}-cache" for pop in pops),
            "pki",
            "home",
            *state_volumes,
        ),
        file_volumes=("pki", "home", *broker_auth_volumes()),
        files=files,
        tunnel=params.tunnel,
        hostname=params.hostname,
        pops=pops,
        connector_replicas=params.replicas,
    )
