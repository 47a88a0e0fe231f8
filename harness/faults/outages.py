"""Outages of a whole service: control plane, broker, one PoP."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness.faults.base import FaultContext, register
from harness.faults.processes import Stop


@register
@dataclass
class ControlPlaneOutage(Stop):
    """The control plane is unreachable: its process is stopped (API, config publishing, events).

    With ``params.mode: links`` the process keeps running and only its links are cut
    (``connector-api``, ``edge-*-api``, ``cp-broker``), like the 2020-04-15 patch-panel pull.
    """

    kind: ClassVar[str] = "controlplane_outage"
    target: str = "controlplane"
    params: dict[str, Any] = field(default_factory=dict)

    def _links(self, ctx: FaultContext) -> list[str]:
        return [
            link
            for link in ctx.stack.topology.links
            if link == "connector-api" or link.endswith("-api") or link == "cp-broker"
        ]

    async def inject(self, ctx: FaultContext) -> None:
        if self.params.get("mode") == "links":
            for link in self._links(ctx):
                await (await ctx.faultproxy.get_proxy(link)).disable()
        else:
            await ctx.stack.stop("controlplane")
        self._done = True

    async def heal(self, ctx: FaultContext) -> None:
        if not self._done:
            return
        if self.params.get("mode") == "links":
            for link in self._links(ctx):
                await (await ctx.faultproxy.get_proxy(link)).enable()
        else:
            await ctx.stack.start("controlplane")
        self._done = False


@register
@dataclass
class BrokerOutage(Stop):
    """The MQTT broker is unreachable: no configuration updates, no connection events.

    ``mode: stop`` (default) stops the broker; ``mode: links`` cuts every link to it.
    """

    kind: ClassVar[str] = "broker_outage"
    target: str = "broker"
    params: dict[str, Any] = field(default_factory=dict)

    def _links(self, ctx: FaultContext) -> list[str]:
        return [link for link in ctx.stack.topology.links if link.endswith("broker")]

    async def inject(self, ctx: FaultContext) -> None:
        if self.params.get("mode") == "links":
            for link in self._links(ctx):
                await (await ctx.faultproxy.get_proxy(link)).disable()
        else:
            await ctx.stack.stop("broker")
        self._done = True

    async def heal(self, ctx: FaultContext) -> None:
        if not self._done:
            return
        if self.params.get("mode") == "links":
            for link in self._links(ctx):
                await (await ctx.faultproxy.get_proxy(link)).enable()
        else:
            await ctx.stack.start("broker")
        self._done = False


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
