"""``outlast serve anycast``: one visitor address for the whole edge network, until
SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import re
import signal

import click

from reference.addresses import HostPort, parse_hostport
from reference.anycast.relay import DEFAULT_SYN_RETRIES
from reference.anycast.routing import Region
from reference.anycast.server import AnycastConfig, AnycastServer, PopEndpoint
from reference.logs import configure_logging, log_event

Address = tuple[str, int]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{kind} name {name!r} must be letters, digits, '-' or '_'")
    return name


def parse_pop(value: str) -> PopEndpoint:
    """``NAME=VISITOR_HOST:PORT,DNS_HOST:PORT[,HEALTH_URL]``."""
    name, sep, rest = value.partition("=")
    parts = rest.split(",", 2)
    if not sep or len(parts) < 2:
        raise ValueError(
            f"{value!r} is not NAME=VISITOR_HOST:PORT,DNS_HOST:PORT[,HEALTH_URL] "
            "(for example ams=127.0.0.1:8080,127.0.0.1:5353)"
        )
    health_url = parts[2].strip() if len(parts) == 3 else None
    if health_url is not None and not re.match(r"^https?://[^/]+", health_url):
        raise ValueError(f"{value!r}: health URL {health_url!r} is not http(s)://HOST[:PORT]/PATH")
    return PopEndpoint(
        _check_name("PoP", name.strip()),
        parse_hostport(parts[0].strip()),
        parse_hostport(parts[1].strip()),
        health_url or None,
    )


def parse_region(value: str) -> Region:
    """``NAME=POP1,POP2,...[:WEIGHT]``."""
    name, sep, rest = value.partition("=")
    pops_text, colon, weight_text = rest.partition(":")
    weight = 1.0
    if colon:
        try:
            weight = float(weight_text)
        except ValueError:
            raise ValueError(f"{value!r}: weight {weight_text!r} is not a number") from None
        if not weight > 0 or weight == float("inf"):
            raise ValueError(f"{value!r}: weight must be a number > 0, got {weight_text}")
    pops = tuple(p.strip() for p in pops_text.split(",") if p.strip())
    if not sep or not pops:
        raise ValueError(f"{value!r} is not NAME=POP1,POP2,...[:WEIGHT] (for example eu=ams,fra:2)")
    duplicates = sorted({p for p in pops if pops.count(p) > 1})
    if duplicates:
        raise ValueError(f"{value!r} lists PoP {duplicates[0]!r} twice")
    return Region(_check_name("region", name.strip()), pops, weight)


class PopSpec(click.ParamType):
    """click type for ``--pop``."""

    name = "NAME=VISITOR_HOST:PORT,DNS_HOST:PORT[,HEALTH_URL]"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> PopEndpoint:
        if isinstance(value, PopEndpoint):
            return value
        try:
            return parse_pop(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class RegionSpec(click.ParamType):
    """click type for ``--region``."""

    name = "NAME=POP1,POP2,...[:WEIGHT]"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Region:
        if isinstance(value, Region):
            return value
        try:
            return parse_region(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def check_topology(pops: tuple[PopEndpoint, ...], regions: tuple[Region, ...]) -> None:
    """Cross-option checks: unique PoPs and regions, regions naming only known PoPs."""
    names = [pop.name for pop in pops]
    for name in names:
        if names.count(name) > 1:
            raise click.BadParameter(f"PoP {name!r} is given twice", param_hint="--pop")
    region_names = [region.name for region in regions]
    for name in region_names:
        if region_names.count(name) > 1:
            raise click.BadParameter(f"region {name!r} is given twice", param_hint="--region")
    for region in regions:
        for pop in region.preference:
            if pop not in names:
                raise click.BadParameter(
                    f"region {region.name!r} names unknown PoP {pop!r} (have: {', '.join(names)})",
                    param_hint="--region",
                )


def _seconds(minimum: float, *, open_min: bool = False) -> click.FloatRange:
    return click.FloatRange(min=minimum, min_open=open_min, max=3600.0)


@click.command("anycast")
@click.option("--listen", type=HostPort(), required=True, help="Visitor TCP listener, HOST:PORT.")
@click.option(
    "--dns-listen", type=HostPort(), required=True, help="DNS relay, UDP and TCP, HOST:PORT."
)
@click.option(
    "--control-listen",
    type=HostPort(),
    required=True,
    help="Admin API (/pops, withdraw/announce) and /metrics, HOST:PORT.",
)
@click.option(
    "--pop",
    "pops",
    type=PopSpec(),
    multiple=True,
    required=True,
    help="A PoP behind the front (repeatable; order matters): its visitor and DNS addresses, "
    "optionally the URL of its health check (default http://VISITOR/ready, Host: 127.0.0.1).",
)
@click.option(
    "--region",
    "regions",
    type=RegionSpec(),
    multiple=True,
    help="A visitor region (repeatable): its PoPs, best first, and its share of new "
    "connections. Default: one region per PoP, preferring itself, then the others in --pop order.",
)
@click.option(
    "--convergence",
    type=_seconds(0.0),
    default=1.0,
    show_default=True,
    help="Seconds a withdrawal takes to propagate: a failing or operator-withdrawn PoP is "
    "still routed this long.",
)
@click.option(
    "--announce-delay",
    type=_seconds(0.0),
    default=None,
    help="Seconds before a healthy-again (or operator-announced) PoP is routed again. "
    "[default: same as --convergence]",
)
@click.option(
    "--health-interval",
    type=_seconds(0.0, open_min=True),
    default=0.2,
    show_default=True,
    help="Seconds between health checks of each PoP.",
)
@click.option(
    "--health-timeout",
    type=_seconds(0.0, open_min=True),
    default=0.5,
    show_default=True,
    help="A health check without an answer this long fails (a paused PoP).",
)
@click.option(
    "--syn-retries",
    type=click.IntRange(0, 6),
    default=DEFAULT_SYN_RETRIES,
    show_default=True,
    help="Times a visitor connection whose PoP did not answer is dialled again, as the "
    "visitor's TCP retransmits its SYN (after 1 s, then 2 s, ...); 0 resets it at once.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the region draw per connection."
)
@click.option("--log-level", default="INFO", show_default=True)
def serve_command(
    listen: Address,
    dns_listen: Address,
    control_listen: Address,
    pops: tuple[PopEndpoint, ...],
    regions: tuple[Region, ...],
    convergence: float,
    announce_delay: float | None,
    health_interval: float,
    health_timeout: float,
    syn_retries: int,
    seed: int,
    log_level: str,
) -> None:
    """Run the anycast front of the edge network: each new visitor connection goes to the
    preferred healthy PoP; a dead PoP is withdrawn after a convergence delay."""
    check_topology(pops, regions)
    configure_logging("anycast", log_level)
    config = AnycastConfig(
        listen=listen,
        dns_listen=dns_listen,
        control_listen=control_listen,
        pops=pops,
        regions=regions or None,
        convergence=convergence,
        announce_delay=announce_delay,
        health_interval=health_interval,
        health_timeout=health_timeout,
        syn_retries=syn_retries,
        seed=seed,
    )
    try:
        asyncio.run(_run(config))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"anycast front could not start: {exc}") from None


async def _run(config: AnycastConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with AnycastServer(config):
        await stop.wait()
        log_event(logging.getLogger("reference.anycast"), "shutting down on signal")
