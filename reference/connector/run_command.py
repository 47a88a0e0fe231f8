"""``outlast tunnel run NAME|UUID``: keep HA connections to the edges and proxy to the origin.

Exit codes: 0 after a graceful shutdown, 1 when the edge refuses the tunnel permanently
(deleted tunnel, wrong credentials), 2 for configuration or credentials-file errors, 130 when a
second signal cut the graceful shutdown short.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
import uuid
from pathlib import Path
from typing import Any

import click

from reference.addresses import HostPort
from reference.connector.credentials import (
    CredentialsError,
    TunnelCredentials,
    default_credentials_path,
    default_origincert_path,
    outlast_home,
)
from reference.connector.edge_memory import EdgeMemory
from reference.connector.ha import HAConfig, HAConnector, connector_arch, connector_version
from reference.connector.legacy import LegacyIdentity, load_legacy_identity
from reference.connector.metrics import ConnectorMetrics
from reference.connector.metrics_server import MetricsServer
from reference.connector.proxy import OriginProxy
from reference.connector.run_config import ConfigFile, RunConfigError, RunSettings, resolve
from reference.connector.supervisor import ConnectionSupervisor
from reference.logs import configure_logging, log_event

logger = logging.getLogger("reference.connector")

EXIT_CONFIG = 2


class RunError(click.ClickException):
    """A configuration problem (exit code 2)."""

    exit_code = EXIT_CONFIG


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def load_credentials(settings: RunSettings) -> TunnelCredentials:
    """The credentials of the tunnel named on the command line or in config.yml."""
    tunnel = settings.tunnel
    if not tunnel:
        raise RunError(
            "no tunnel given: pass NAME or UUID (`outlast tunnel run my-tunnel`) or set "
            "`tunnel:` in config.yml"
        )
    try:
        if _is_uuid(tunnel):
            tunnel_id = tunnel.lower()
            path = settings.credentials_file or default_credentials_path(tunnel_id)
            credentials = TunnelCredentials.load(path, tunnel_id=tunnel_id)
            if credentials.tunnel_id != tunnel_id:
                raise RunError(
                    f"credentials file {path} is for tunnel {credentials.tunnel_id}, not "
                    f"{tunnel_id}; pass the right file with --credentials-file"
                )
            return credentials
        if settings.credentials_file is None:
            raise RunError(
                f"to run tunnel {tunnel!r} by name, pass its credentials file with "
                "--credentials-file (or `credentials-file:` in config.yml), or run it by UUID"
            )
        return TunnelCredentials.load(settings.credentials_file)
    except CredentialsError as exc:
        raise RunError(str(exc)) from None


def load_legacy(settings: RunSettings, hostname: str | None) -> LegacyIdentity:
    """The identity of a ``--legacy`` run: cert.pem's account token plus ``--hostname``."""
    if settings.tunnel:
        raise RunError(
            f"--legacy runs no named tunnel: drop {settings.tunnel!r} (a legacy tunnel is "
            "identified by --hostname), or drop --legacy to run the named tunnel"
        )
    if not hostname:
        raise RunError(
            "--legacy needs --hostname HOST: the subdomain the legacy tunnel serves (its DNS "
            "record is created at every registration)"
        )
    if settings.credentials_file is not None:
        raise RunError(
            "--legacy uses the origin certificate (cert.pem), not a tunnel credentials file: "
            "drop --credentials-file"
        )
    from reference.connector.cli import TunnelOptions

    options = click.get_current_context().find_object(TunnelOptions)
    origincert = (options.origincert if options else None) or default_origincert_path()
    try:
        return load_legacy_identity(origincert, hostname)
    except CredentialsError as exc:
        raise RunError(str(exc)) from None


def edge_ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    try:
        if ca_file is not None:
            return ssl.create_default_context(cafile=str(ca_file))
        return ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        raise RunError(f"cannot load the edge CA {ca_file}: {exc}; check --edge-ca") from None


async def run_tunnel(settings: RunSettings, credentials: TunnelCredentials | LegacyIdentity) -> int:
    """Run the connector until shutdown; returns the exit code."""
    connector_id = str(uuid.uuid4())
    state_dir = settings.state_dir or (outlast_home() / "state")
    memory = EdgeMemory(state_dir, credentials.tunnel_id)
    remembered = memory.load()
    edges = list(dict.fromkeys([*settings.edges, *remembered]))
    if not edges:
        raise RunError(
            "no edge addresses: pass --edge HOST:PORT (once per PoP) or `edge:` in config.yml; "
            f"none are remembered in {memory.path}"
        )
    if isinstance(credentials, LegacyIdentity):
        credentials_path = str(credentials.origincert)
        verifier, legacy, secret = "", credentials.registration(), b""
    else:
        credentials_path = str(
            settings.credentials_file or default_credentials_path(credentials.tunnel_id)
        )
        verifier = HAConfig.verifier_of(credentials.tunnel_secret, credentials.tunnel_id)
        legacy, secret = None, credentials.tunnel_secret
    log_event(
        logger,
        "Starting legacy tunnel" if legacy else "Starting tunnel",
        event="starting",
        tunnelID=credentials.tunnel_id,
        hostname=legacy.hostname if legacy else None,
        version=connector_version(),
        arch=connector_arch(),
        connectorId=connector_id,
        edges=[str(e) for e in edges],
        haConnections=settings.ha_connections,
    )
    if not settings.ingress_defined:
        log_event(
            logger,
            "No ingress rules were defined: every request will get 503 (use --url or config.yml)",
            logging.WARNING,
            event="no_ingress",
        )
    config = HAConfig(
        tunnel_id=credentials.tunnel_id,
        account_tag=credentials.account_tag,
        verifier=verifier,
        connector_id=connector_id,
        credentials_path=credentials_path,
        ssl_context=edge_ssl_context(settings.edge_ca),
        ha_connections=settings.ha_connections,
        grace_period=settings.grace_period,
        heartbeat=settings.heartbeat,
        dial_timeout=settings.dial_timeout,
        registration_timeout=settings.registration_timeout,
        rebalance_interval=settings.rebalance_interval,
        legacy=legacy,
        tunnel_secret=secret,
    )
    supervisor = ConnectionSupervisor(
        edges,
        settings.ha_connections,
        policy=settings.retry,
        locations={a: loc for a, loc in remembered.items() if loc},
        tunnel_id=credentials.tunnel_id,
        credentials=credentials_path,
    )
    metrics = ConnectorMetrics(connector_id)
    try:
        metrics_server = MetricsServer(metrics, settings.metrics)
        await metrics_server.__aenter__()
    except OSError as exc:
        raise RunError(str(exc)) from None
    try:
        assert metrics_server.bound is not None
        log_event(
            logger,
            f"Starting metrics server on {metrics_server.bound[0]}:{metrics_server.bound[1]}",
            event="metrics_listening",
            address=f"{metrics_server.bound[0]}:{metrics_server.bound[1]}",
        )
        async with OriginProxy(settings.ingress, metrics) as proxy:
            manager = HAConnector(config, supervisor, proxy, metrics, memory)
            loop = asyncio.get_running_loop()
            signals_seen = 0
            shutdown_tasks: list[asyncio.Task[None]] = []

            def on_signal(signame: str) -> None:
                nonlocal signals_seen
                signals_seen += 1
                if signals_seen == 1:
                    log_event(
                        logger,
                        f"Initiating graceful shutdown due to signal {signame}",
                        event="signal",
                        signal=signame,
                    )
                    shutdown_tasks.append(asyncio.ensure_future(manager.shutdown()))
                else:
                    manager.force_stop()

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_signal, sig.name)
            try:
                code = await manager.run()
            finally:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            if manager.exit_message:
                click.echo(f"error: {manager.exit_message}", err=True)
            return code
    finally:
        await metrics_server.__aexit__(None, None, None)
        log_event(logger, "Metrics server stopped", event="metrics_stopped")


def _duration_option(name: str, help_text: str) -> Any:
    return click.option(name, type=float, default=None, help=help_text)


@click.command("run")
@click.argument("tunnel", required=False)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="config.yml with ingress rules and any of these options.",
)
@click.option(
    "--credentials-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Tunnel credentials (default: <home>/<TunnelID>.json).",
)
@click.option("--url", help="Send every request to this origin (instead of ingress rules).")
@click.option(
    "--edge",
    "edges",
    type=HostPort(),
    multiple=True,
    help="Edge tunnel address HOST:PORT (repeat, one per PoP).",
)
@click.option(
    "--edge-ca",
    type=click.Path(path_type=Path, dir_okay=False),
    help="CA bundle that signed the edges' TLS certificates.",
)
@click.option("--ha-connections", type=int, default=None, help="HA connections (default 4).")
@_duration_option("--grace-period", "Seconds to drain in-flight requests on SIGTERM (30).")
@click.option(
    "--metrics",
    type=HostPort(),
    default=None,
    help="Metrics/ready server address (default 127.0.0.1:20241-20245).",
)
@_duration_option("--heartbeat-interval", "Seconds between PINGs (1).")
@_duration_option("--heartbeat-timeout", "Seconds of silence before a connection is dead (3).")
@_duration_option("--retry-base", "Backoff base in seconds (0.1).")
@_duration_option("--retry-cap", "Backoff cap in seconds (2).")
@_duration_option("--dial-timeout", "TCP+TLS dial timeout in seconds (2).")
@_duration_option("--rpc-timeout", "Registration answer timeout in seconds (5).")
@_duration_option("--rebalance-interval", "Seconds between PoP-spread checks (0.5, jittered).")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where remembered edge addresses are kept (default <home>/state).",
)
@click.option(
    "--legacy",
    is_flag=True,
    help="Run a legacy (classic) tunnel for --hostname with cert.pem: every registration goes "
    "through the control plane, so it cannot reconnect while the control plane is down.",
)
@click.option(
    "--hostname",
    default=None,
    help="--legacy only: the subdomain to serve (its DNS record is made at registration).",
)
@click.option("--loglevel", default=None, help="debug, info, warning, error (default info).")
def run_command(tunnel: str | None, config_path: Path | None, **options: Any) -> None:
    """Run a named tunnel: keep HA connections to the edges and proxy visitors to the origin.

    With --legacy --hostname HOST, run a legacy (classic) tunnel instead (docs/legacy.md).
    """
    loglevel = options.pop("loglevel")
    legacy, hostname = options.pop("legacy"), options.pop("hostname")
    try:
        config = ConfigFile.load(config_path)
        flags = {key.replace("_", "-"): value for key, value in options.items()}
        flags["edge"] = flags.pop("edges") or None
        flags["tunnel"] = tunnel
        settings = resolve(flags, config)
    except RunConfigError as exc:
        raise RunError(str(exc)) from None
    configure_logging("connector", str(loglevel or config.get("loglevel") or "INFO"))
    if config.unknown_keys:
        log_event(
            logger,
            "Ignoring unknown config keys",
            logging.WARNING,
            event="config_unknown_keys",
            keys=config.unknown_keys,
            file=str(config.path),
        )
    credentials: TunnelCredentials | LegacyIdentity
    if legacy:
        credentials = load_legacy(settings, hostname)
        code = asyncio.run(run_tunnel(settings, credentials))
        sys.exit(code)
    if hostname:
        raise RunError(
            "--hostname is for legacy runs (--legacy); a named tunnel is routed once with "
            "`outlast tunnel route dns TUNNEL HOSTNAME`"
        )
    credentials = load_credentials(settings)
    if tunnel and not _is_uuid(tunnel):
        log_event(
            logger,
            f"Tunnel name {tunnel!r} resolved from the credentials file",
            event="tunnel_resolved",
            tunnelID=credentials.tunnel_id,
        )
    code = asyncio.run(run_tunnel(settings, credentials))
    sys.exit(code)
