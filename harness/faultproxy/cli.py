"""``outlast serve faultproxy``: run the Toxiproxy-compatible fault proxy in the foreground."""

from __future__ import annotations

import asyncio
import gc
import signal
from pathlib import Path

import click

from harness.faultproxy.addresses import is_loopback
from harness.faultproxy.errors import ApiError
from harness.faultproxy.server import FaultProxyServer
from reference.addresses import HostPort
from reference.logs import configure_logging


async def _serve(
    listen: tuple[str, int], seed: int | None, config: Path | None, allow_non_loopback: bool
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = FaultProxyServer(api_listen=listen, seed=seed, allow_non_loopback=allow_non_loopback)
    try:
        await server.start()
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {listen[0]}:{listen[1]}: {exc.strerror or exc}; "
            "pick another --listen address"
        ) from None
    # Everything loaded so far lives for the whole process: keep it out of the garbage
    # collector's full passes, which otherwise stall the data path for milliseconds (latency
    # toxic tails).
    gc.freeze()
    try:
        if config is not None:
            try:
                await server.populate_file(config)
            except (ApiError, ValueError, OSError) as exc:
                raise click.ClickException(
                    f"--config {config}: {exc}; it must be a JSON array of "
                    '{"name", "listen", "upstream"} objects'
                ) from None
        await stop.wait()
    finally:
        await server.close()


@click.command("faultproxy")
@click.option(
    "--listen",
    type=HostPort(),
    default="127.0.0.1:8474",
    show_default=True,
    help="Address of the HTTP API (port 0 picks a free one and logs it).",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed for toxicity draws, jitter and slice sizes (default: random, logged).",
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSON array of proxies to create at start (as POST /populate).",
)
@click.option(
    "--allow-non-loopback",
    is_flag=True,
    default=False,
    help="Allow the API and proxies to listen on addresses other than 127.0.0.0/8 and ::1 "
    "(e.g. 0.0.0.0 inside a container). Without it such addresses are refused.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def serve_command(
    listen: tuple[str, int],
    seed: int | None,
    config: Path | None,
    allow_non_loopback: bool,
    log_level: str,
) -> None:
    """Run the fault proxy: Toxiproxy's HTTP API and toxics, with a reproducible seed."""
    configure_logging("faultproxy", log_level)
    if not allow_non_loopback and not is_loopback(listen[0]):
        raise click.BadParameter(
            f"{listen[0]} is not a loopback address; add --allow-non-loopback to listen there",
            param_hint="--listen",
        )
    asyncio.run(_serve(listen, seed, config, allow_non_loopback))


__all__ = ["serve_command"]
