"""The anycast front assembled: route table + health checker + visitor relay + DNS relay (UDP
and TCP on one port) + admin API. ``async with AnycastServer(config) as front:`` runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from types import TracebackType

from aiohttp import web

from reference.anycast.control import control_application
from reference.anycast.dns_framing import DnsMessageCounter
from reference.anycast.health import HealthChecker, HealthTarget
from reference.anycast.relay import (
    DEFAULT_DIAL_TIMEOUT,
    DEFAULT_SYN_RETRIES,
    DEFAULT_SYN_RTO,
    DEFAULT_UDP_REPLY_TIMEOUT,
    ByteTap,
    TcpRelay,
    UdpRelay,
)
from reference.anycast.router import Clock, Router
from reference.anycast.routing import Region, Route, RouteTable
from reference.logs import log_event

logger = logging.getLogger("reference.anycast")

Address = tuple[str, int]


@dataclass(frozen=True)
class PopEndpoint:
    """One PoP as the front reaches it. Without ``health_url`` the PoP's ``/ready`` on its
    visitor address is checked with ``Host: 127.0.0.1`` (the edge serves it there for IP hosts)."""

    name: str
    visitor: Address
    dns: Address
    health_url: str | None = None

    def health_target(self) -> HealthTarget:
        if self.health_url is not None:
            return HealthTarget(self.health_url)
        host, port = self.visitor
        host = f"[{host}]" if ":" in host else host
        return HealthTarget(f"http://{host}:{port}/ready", host_header="127.0.0.1")


@dataclass(frozen=True)
class AnycastConfig:
    """Everything ``outlast serve anycast`` is told on its command line."""

    listen: Address
    dns_listen: Address
    control_listen: Address
    pops: tuple[PopEndpoint, ...]
    regions: tuple[Region, ...] | None = None
    convergence: float = 1.0
    announce_delay: float | None = None
    health_interval: float = 0.2
    health_timeout: float = 0.5
    seed: int = 0
    dial_timeout: float = DEFAULT_DIAL_TIMEOUT
    syn_retries: int = DEFAULT_SYN_RETRIES
    syn_rto: float = DEFAULT_SYN_RTO
    udp_reply_timeout: float = DEFAULT_UDP_REPLY_TIMEOUT


class AnycastServer:
    """One running anycast front. The bound ports (useful with port 0) are ``visitor_port``,
    ``dns_port`` and ``control_port``."""

    def __init__(self, config: AnycastConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self._clock = clock
        self.router: Router | None = None
        self.visitor_port = config.listen[1]
        self.dns_port = config.dns_listen[1]
        self.control_port = config.control_listen[1]
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        cfg = self.config
        clock = self._clock or asyncio.get_running_loop().time
        table = RouteTable(
            [pop.name for pop in cfg.pops],
            cfg.regions,
            convergence=cfg.convergence,
            announce_delay=cfg.announce_delay,
            seed=cfg.seed,
            start=clock(),
        )
        router = self.router = Router(table, clock)
        metrics = router.metrics

        def count_visitor(route: Route) -> ByteTap | None:
            metrics.connections.labels(region=route.region, pop=route.pop).inc()
            return None

        def count_dns_tcp(route: Route) -> ByteTap:
            counter = DnsMessageCounter()
            queries = metrics.dns_queries.labels(transport="tcp", pop=route.pop)

            def tap(data: bytes) -> None:
                queries.inc(counter.feed(data))

            return tap

        visitor = await self._stack.enter_async_context(
            TcpRelay(
                router,
                {pop.name: pop.visitor for pop in cfg.pops},
                *cfg.listen,
                kind="visitor",
                on_connection=count_visitor,
                dial_timeout=cfg.dial_timeout,
                syn_rto=cfg.syn_rto,
                syn_retries=cfg.syn_retries,
            )
        )
        self.visitor_port = visitor.port
        dns_targets = {pop.name: pop.dns for pop in cfg.pops}
        dns_tcp = await self._stack.enter_async_context(
            TcpRelay(
                router,
                dns_targets,
                *cfg.dns_listen,
                kind="dns_tcp",
                on_connection=count_dns_tcp,
                dial_timeout=cfg.dial_timeout,
                syn_rto=cfg.syn_rto,
                syn_retries=cfg.syn_retries,
            )
        )
        self.dns_port = dns_tcp.port
        await self._stack.enter_async_context(
            UdpRelay(
                router,
                dns_targets,
                cfg.dns_listen[0],
                self.dns_port,
                reply_timeout=cfg.udp_reply_timeout,
            )
        )
        self.control_port = await self._serve_control(router)
        await self._stack.enter_async_context(
            HealthChecker(
                router,
                {pop.name: pop.health_target() for pop in cfg.pops},
                interval=cfg.health_interval,
                timeout=cfg.health_timeout,
            )
        )
        log_event(
            logger,
            "anycast front started",
            listen=f"{cfg.listen[0]}:{self.visitor_port}",
            dns_listen=f"{cfg.dns_listen[0]}:{self.dns_port}",
            control_listen=f"{cfg.control_listen[0]}:{self.control_port}",
            pops=[pop.name for pop in cfg.pops],
            regions=[region.name for region in table.regions],
            convergence=table.convergence,
            announce_delay=table.announce_delay,
        )

    async def _serve_control(self, router: Router) -> int:
        runner = web.AppRunner(control_application(router), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, *self.config.control_listen)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else self.config.control_listen[1]

    async def stop(self) -> None:
        """Stop checking, close the listeners and reset every relayed connection."""
        await self._stack.aclose()
        log_event(logger, "anycast front stopped")

    async def __aenter__(self) -> AnycastServer:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
