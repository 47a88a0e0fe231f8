"""``outlast serve origin --name NAME --listen 127.0.0.1:PORT``."""

from __future__ import annotations

import asyncio
import logging
import signal

import click
from aiohttp import web

from reference.addresses import HostPort
from reference.logs import configure_logging, log_event
from reference.origin.app import create_app

logger = logging.getLogger("reference.origin")


async def serve_origin(name: str, host: str, port: int) -> None:
    """Run the origin until SIGTERM/SIGINT."""
    runner = web.AppRunner(
        create_app(name), access_log=None, shutdown_timeout=2.0, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log_event(logger, "origin listening", origin=name, listen=f"{host}:{port}", event="listening")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log_event(logger, "origin stopping", origin=name, event="stopping")
        await runner.cleanup()


@click.command("origin")
@click.option("--name", required=True, help="Name the origin reports in every answer.")
@click.option(
    "--listen",
    type=HostPort(),
    default="127.0.0.1:8080",
    show_default=True,
    help="HOST:PORT to listen on.",
)
@click.option("--log-level", default="INFO", show_default=True)
def serve_command(name: str, listen: tuple[str, int], log_level: str) -> None:
    """HTTP + WebSocket echo origin that names itself and echoes request ids and body digests."""
    configure_logging("origin", log_level)
    host, port = listen
    asyncio.run(serve_origin(name, host, port))
