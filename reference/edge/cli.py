"""``outlast serve edge``: run one edge PoP until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click

from reference.addresses import HostPort, parse_hostport
from reference.broker.client_options import broker_client_options
from reference.edge.server import EdgeConfig, EdgeServer
from reference.edge.visitor import VisitorSettings
from reference.http_limits_cli import limits_from_options, slow_client_options
from reference.logs import configure_logging, log_event
from reference.wire import HeartbeatConfig

Address = tuple[str, int]


@click.command("edge")
@click.option("--pop", required=True, help="PoP name (location), e.g. ams or fra.")
@click.option(
    "--tunnel-listen",
    type=HostPort(),
    required=True,
    help="TLS listener for connector connections, HOST:PORT.",
)
@click.option(
    "--visitor-listen",
    type=HostPort(),
    required=True,
    help="Visitor HTTP/WebSocket listener, HOST:PORT.",
)
@click.option(
    "--dns-listen",
    type=HostPort(),
    required=True,
    help="DNS listener (UDP and TCP on the same port), HOST:PORT.",
)
@click.option("--broker", type=HostPort(), required=True, help="MQTT broker, HOST:PORT.")
@broker_client_options("the edge", "edge-<pop>.credentials.json")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory of the persistent configuration cache.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="PEM certificate of the tunnel listener.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="PEM private key of the tunnel listener.",
)
@click.option(
    "--config-key",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The control plane's configuration public key (config-signing.pub, PEM). Only "
    "configuration messages it signed are applied and cached.",
)
@click.option(
    "--metrics-listen",
    type=HostPort(),
    default=None,
    help="Separate listener for /metrics and /ready (they are also served on the "
    "visitor listener for Host: <ip>/localhost).",
)
@click.option(
    "--heartbeat-interval",
    type=float,
    default=HeartbeatConfig().interval,
    show_default=True,
    help="Seconds between PINGs on each tunnel connection.",
)
@click.option(
    "--heartbeat-timeout",
    type=float,
    default=HeartbeatConfig().timeout,
    show_default=True,
    help="Close a tunnel connection silent for this long.",
)
@click.option(
    "--unknown-tunnel-retry-after",
    type=float,
    default=2.0,
    show_default=True,
    help="Retry hint (s) sent to a connector whose tunnel is not in the cache yet.",
)
@click.option(
    "--api",
    type=HostPort(),
    default=None,
    help="Control plane API HOST:PORT, called synchronously for legacy (classic) registrations "
    "only; without it legacy registrations are refused. Named tunnels never use it.",
)
@click.option(
    "--legacy-api-timeout",
    type=click.FloatRange(min=0.1),
    default=3.0,
    show_default=True,
    help="Seconds to wait for the control plane on a legacy registration.",
)
@click.option(
    "--peer-listen",
    type=HostPort(),
    default=None,
    help="Listener for the other PoPs (requests they forward here, and this PoP's "
    "registration summary), HOST:PORT.",
)
@click.option(
    "--peer",
    "peers",
    multiple=True,
    metavar="POP=HOST:PORT",
    help="A peer PoP and the address of its peer listener (in a stack: the pop-<this>-<peer> "
    "fault-proxy link). Repeatable. Requests for a tunnel with no connection here are "
    "forwarded to a peer that holds one.",
)
@click.option(
    "--cloudflared-listen",
    type=HostPort(),
    default=None,
    help="Second tunnel listener speaking cloudflared's own HTTP/2 transport, HOST:PORT "
    "(docs/cloudflared.md). Its certificate must name h2.cftunnel.com.",
)
@click.option(
    "--cloudflared-tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="PEM certificate for --cloudflared-listen (default: --tls-cert).",
)
@click.option(
    "--cloudflared-tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="PEM key for --cloudflared-listen (default: --tls-key).",
)
@slow_client_options("visitor listener")
@click.option("--log-level", default="INFO", show_default=True)
def serve_command(
    pop: str,
    tunnel_listen: Address,
    visitor_listen: Address,
    dns_listen: Address,
    broker: Address,
    broker_credentials: Path | None,
    broker_ca: Path | None,
    cache_dir: Path,
    tls_cert: Path,
    tls_key: Path,
    config_key: Path,
    metrics_listen: Address | None,
    heartbeat_interval: float,
    heartbeat_timeout: float,
    unknown_tunnel_retry_after: float,
    api: Address | None,
    legacy_api_timeout: float,
    peer_listen: Address | None,
    peers: tuple[str, ...],
    cloudflared_listen: Address | None,
    cloudflared_tls_cert: Path | None,
    cloudflared_tls_key: Path | None,
    header_timeout: float,
    idle_timeout: float,
    body_timeout: float,
    max_connections: int,
    log_level: str,
) -> None:
    """Run an edge PoP: authenticates tunnel registrations from its local configuration cache,
    routes visitors by Host to a tunnel connection, answers DNS for its zones."""
    configure_logging(f"edge-{pop}", log_level)
    try:
        heartbeat = HeartbeatConfig(interval=heartbeat_interval, timeout=heartbeat_timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    peer_addresses = _parse_peers(pop, peers)
    config = EdgeConfig(
        pop=pop,
        tunnel_listen=tunnel_listen,
        visitor_listen=visitor_listen,
        dns_listen=dns_listen,
        broker=broker,
        broker_credentials=broker_credentials,
        broker_ca=broker_ca,
        cache_dir=cache_dir,
        tls_cert=tls_cert,
        tls_key=tls_key,
        config_key=config_key,
        metrics_listen=metrics_listen,
        heartbeat=heartbeat,
        unknown_tunnel_retry_after=unknown_tunnel_retry_after,
        api=api,
        legacy_api_timeout=legacy_api_timeout,
        peer_listen=peer_listen,
        peers=peer_addresses,
        cloudflared_listen=cloudflared_listen,
        cloudflared_tls_cert=cloudflared_tls_cert,
        cloudflared_tls_key=cloudflared_tls_key,
        visitor=VisitorSettings(
            limits=limits_from_options(header_timeout, idle_timeout, body_timeout, max_connections)
        ),
    )
    try:
        asyncio.run(_run(config))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"edge {pop} could not start: {exc}") from None


def _parse_peers(pop: str, values: tuple[str, ...]) -> dict[str, Address]:
    """``--peer POP=HOST:PORT`` values as a mapping; click errors name the bad value."""
    peers: dict[str, Address] = {}
    for value in values:
        name, sep, address = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r}: expected POP=HOST:PORT", param_hint="--peer")
        if name == pop:
            raise click.BadParameter(f"{value!r}: a PoP is not its own peer", param_hint="--peer")
        if name in peers:
            raise click.BadParameter(f"peer {name!r} given twice", param_hint="--peer")
        try:
            peers[name] = parse_hostport(address)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--peer") from None
    return peers


async def _run(config: EdgeConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with EdgeServer(config):
        await stop.wait()
        log_event(logging.getLogger("reference.edge"), "shutting down on signal", pop=config.pop)
