"""``outlast serve broker``: mosquitto when installed, the embedded broker otherwise."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
from pathlib import Path

import click

from reference.addresses import HostPort
from reference.broker.auth import BrokerAuthError, BrokerUsers
from reference.broker.mosquitto import find_mosquitto, run_mosquitto
from reference.broker.persistence import StateFileError
from reference.broker.server import EmbeddedBroker
from reference.broker.sessions import DEFAULT_MAX_QUEUED
from reference.broker.tls import BrokerTlsError, server_context
from reference.logs import configure_logging, log_event

logger = logging.getLogger("reference.broker.cli")


async def run_embedded(
    host: str,
    port: int,
    data_dir: Path,
    max_queued: int,
    users: BrokerUsers | None,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Run the embedded broker until SIGTERM or SIGINT, then save and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    broker = EmbeddedBroker(host, port, data_dir, max_queued=max_queued, users=users, tls=tls)
    try:
        await broker.start()
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc} (is another broker running there?)"
        ) from None
    try:
        await stop.wait()
        log_event(logger, "stop signal received, shutting down")
    finally:
        await broker.stop()


@click.command("broker")
@click.option(
    "--listen",
    type=HostPort(),
    required=True,
    help="Address to listen on, for example 127.0.0.1:1883.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for persistence (retained messages, persistent sessions).",
)
@click.option(
    "--implementation",
    type=click.Choice(["auto", "mosquitto", "embedded"]),
    default="auto",
    show_default=True,
    help="auto runs mosquitto when it is installed, the embedded broker otherwise.",
)
@click.option(
    "--max-queued-messages",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_QUEUED,
    show_default=True,
    help="QoS 1/2 messages kept per client beyond those in flight; newer ones are dropped.",
)
@click.option(
    "--users-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Broker users (password hashes and ACLs, see docs/broker.md); anonymous clients are "
    "refused. `outlast stack up` writes one in its state directory.",
)
@click.option(
    "--allow-anonymous",
    is_flag=True,
    help="Run without --users-file: anyone who reaches the listener may publish anything. "
    "For experiments only.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PEM certificate of the broker: the listener speaks TLS only (no plaintext "
    "listener). Needs --tls-key.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PEM private key of --tls-cert.",
)
@click.option("--log-level", default="info", show_default=True, help="debug, info, warning.")
def serve_command(
    listen: tuple[str, int],
    data_dir: Path,
    implementation: str,
    max_queued_messages: int,
    users_file: Path | None,
    allow_anonymous: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    log_level: str,
) -> None:
    """Run the MQTT broker (configuration distribution, connection events) in the foreground."""
    configure_logging("broker", log_level)
    host, port = listen
    if (users_file is None) == (not allow_anonymous):
        raise click.UsageError(
            "give exactly one of --users-file FILE (authenticated clients and ACLs) or "
            "--allow-anonymous (anyone may publish anything)"
        )
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together: give both or neither")
    try:
        users = BrokerUsers.load(users_file) if users_file is not None else None
        # Loaded here for both implementations, so a bad file fails before mosquitto starts.
        tls = server_context(tls_cert, tls_key) if tls_cert and tls_key else None
    except (BrokerAuthError, BrokerTlsError) as exc:
        raise click.ClickException(str(exc)) from None
    tls_files = (tls_cert, tls_key) if tls_cert and tls_key else None
    data_dir.mkdir(parents=True, exist_ok=True)
    binary = find_mosquitto() if implementation in ("auto", "mosquitto") else None
    if implementation == "mosquitto" and binary is None:
        raise click.ClickException(
            "mosquitto is not installed (not on PATH nor in /usr/sbin): install it "
            "(apt-get install mosquitto) or use --implementation embedded"
        )
    if binary is not None:
        log_event(
            logger,
            "starting mosquitto",
            binary=binary,
            host=host,
            port=port,
            data_dir=str(data_dir),
            authentication="users file" if users is not None else "anonymous allowed",
            tls=tls_files is not None,
        )
        sys.exit(
            run_mosquitto(
                binary,
                host,
                port,
                data_dir,
                max_queued_messages=max_queued_messages,
                users=users,
                tls_files=tls_files,
            )
        )
    try:
        asyncio.run(run_embedded(host, port, data_dir, max_queued_messages, users, tls))
    except StateFileError as exc:
        raise click.ClickException(str(exc)) from None
