"""Outages of a whole service: control plane, broker, one PoP (down, or withdrawn from the
anycast entry)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from harness.faults.base import FaultContext, FaultError, register
from harness.faults.processes import Stop


@dataclass
class ServiceOutage(Stop):
    """A whole service is unreachable. ``mode: stop`` (default) stops its process;
    ``mode: links`` keeps it running and disables every link to it in the fault proxy."""

    params: dict[str, Any] = field(default_factory=dict)

    def _links(self, ctx: FaultContext) -> list[str]:
        raise NotImplementedError

    async def _set_links(self, ctx: FaultContext, enabled: bool) -> None:
        for link in self._links(ctx):
            proxy = await ctx.faultproxy.get_proxy(link)
            await (proxy.enable() if enabled else proxy.disable())

    async def inject(self, ctx: FaultContext) -> None:
        if self.params.get("mode") == "links":
            await self._set_links(ctx, enabled=False)
        else:
            await ctx.stack.stop(self.target)
        self._done = True

    async def heal(self, ctx: FaultContext) -> None:
        if not self._done:
            return
        if self.params.get("mode") == "links":
            await self._set_links(ctx, enabled=True)
        else:
            await ctx.stack.start(self.target)
        self._done = False


@register
@dataclass
class ControlPlaneOutage(ServiceOutage):
    """The control plane is unreachable: API, config publishing, events.

    ``mode: links`` cuts ``connector-api``, ``edge-*-api`` and ``cp-broker``, like the
    2020-04-15 patch-panel pull.
    """

    kind: ClassVar[str] = "controlplane_outage"
    target: str = "controlplane"

    def _links(self, ctx: FaultContext) -> list[str]:
        return [
            link
            for link in ctx.stack.topology.links
            if link == "connector-api" or link.endswith("-api") or link == "cp-broker"
        ]


@register
@dataclass
class BrokerOutage(ServiceOutage):
    """The MQTT broker is unreachable: no configuration updates, no connection events."""

    kind: ClassVar[str] = "broker_outage"
    target: str = "broker"

    def _links(self, ctx: FaultContext) -> list[str]:
        return [link for link in ctx.stack.topology.links if link.endswith("broker")]


@register
@dataclass
class PopOutage(Stop):
    """A whole PoP goes away: its edge is killed, its tunnel link refuses connections."""

    kind: ClassVar[str] = "pop_outage"
    target: str = "ams"
    params: dict[str, Any] = field(default_factory=dict)

    async def inject(self, ctx: FaultContext) -> None:
        await (await ctx.faultproxy.get_proxy(f"conn-{self.target}")).disable()
        await ctx.stack.kill(f"edge-{self.target}")
        self._done = True

    async def heal(self, ctx: FaultContext) -> None:
        if self._done:
            await ctx.stack.start(f"edge-{self.target}")
            await (await ctx.faultproxy.get_proxy(f"conn-{self.target}")).enable()
            self._done = False


@register
@dataclass
class PopWithdraw:
    """The edge network stops announcing a PoP (a planned withdrawal, through the anycast
    entry's admin API): after the route convergence delay no new visitor reaches it; it keeps
    running, its tunnel connections stay, and it still forwards and serves for its peers."""

    kind: ClassVar[str] = "pop_withdraw"
    target: str = "ams"
    params: dict[str, Any] = field(default_factory=dict)
    _done: bool = False

    async def _call(self, ctx: FaultContext, action: str) -> None:
        url = f"{ctx.stack.endpoints()['anycast']['control_url']}/pops/{self.target}/{action}"
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
            response = await client.post(url)
        if response.status_code >= 300:
            raise FaultError(
                f"anycast entry refused to {action} PoP {self.target}: "
                f"{response.status_code} {response.text[:200]}"
            )

    async def inject(self, ctx: FaultContext) -> None:
        await self._call(ctx, "withdraw")
        self._done = True

    async def heal(self, ctx: FaultContext) -> None:
        if self._done:
            await self._call(ctx, "announce")
            self._done = False
