"""Faults on a named fault-proxy link: down, black hole, latency, bandwidth, reset, slicer..."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness.faults.base import FaultContext, register


@register
@dataclass
class LinkDown:
    """The link refuses connections and drops the ones it had (proxy disabled)."""

    kind: ClassVar[str] = "link_down"
    target: str
    params: dict[str, Any] = field(default_factory=dict)

    async def inject(self, ctx: FaultContext) -> None:
        await (await ctx.faultproxy.get_proxy(self.target)).disable()

    async def heal(self, ctx: FaultContext) -> None:
        await (await ctx.faultproxy.get_proxy(self.target)).enable()


@dataclass
class _ToxicFault:
    """One toxic on the link for the fault's duration (both directions unless ``stream``)."""

    toxic_type: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    target: str
    params: dict[str, Any] = field(default_factory=dict)

    def _streams(self) -> list[str]:
        stream = self.params.get("stream", "both")
        return ["upstream", "downstream"] if stream == "both" else [str(stream)]

    def _name(self, stream: str) -> str:
        return f"outlast_{self.toxic_type}_{stream}"

    def _attributes(self) -> dict[str, int]:
        """Toxiproxy attributes from the scenario's parameters (durations in seconds)."""
        return dict(self.defaults)

    async def inject(self, ctx: FaultContext) -> None:
        proxy = await ctx.faultproxy.get_proxy(self.target)
        for stream in self._streams():
            await proxy.add_toxic(
                self.toxic_type,
                self._attributes(),
                stream=stream,
                toxicity=float(self.params.get("toxicity", 1.0)),
                name=self._name(stream),
            )

    async def heal(self, ctx: FaultContext) -> None:
        proxy = await ctx.faultproxy.get_proxy(self.target)
        existing = {t.name for t in await proxy.list_toxics()}
        for stream in self._streams():
            if self._name(stream) in existing:
                await proxy.remove_toxic(self._name(stream))


#: The longest slow_close delay a fault proxy accepts (24 h, in ms): "until the heal".
HOLD_CLOSE_MS = 86_400_000


@register
class LinkBlackhole(_ToxicFault):
    """Bytes are swallowed, nothing is closed (no FIN, no RST): only heartbeats notice.

    With ``close: hold`` a peer's own close is held back as well (a ``slow_close`` toxic in
    front of the ``timeout`` one, both Toxiproxy types), so an end whose heartbeat gave up
    cannot tell the other end: each side must notice the silence itself.
    """

    kind: ClassVar[str] = "link_blackhole"
    toxic_type = "timeout"
    defaults: ClassVar[dict[str, Any]] = {"timeout": 0}

    def _holds_close(self) -> bool:
        return self.params.get("close", "pass") == "hold"

    async def inject(self, ctx: FaultContext) -> None:
        if self._holds_close():
            proxy = await ctx.faultproxy.get_proxy(self.target)
            for stream in self._streams():
                await proxy.add_toxic(
                    "slow_close",
                    {"delay": HOLD_CLOSE_MS},
                    stream=stream,
                    toxicity=1.0,
                    name=f"outlast_slow_close_{stream}",
                )
        await super().inject(ctx)

    async def heal(self, ctx: FaultContext) -> None:
        await super().heal(ctx)  # removing the timeout toxic closes the connections it held
        if self._holds_close():
            proxy = await ctx.faultproxy.get_proxy(self.target)
            existing = {t.name for t in await proxy.list_toxics()}
            for stream in self._streams():
                if f"outlast_slow_close_{stream}" in existing:
                    await proxy.remove_toxic(f"outlast_slow_close_{stream}")


def _ms(seconds: Any) -> int:
    return round(float(seconds) * 1000)


@register
class LinkLatency(_ToxicFault):
    """Added ``latency`` with ``jitter`` (seconds in the scenario, ms on the wire)."""

    kind: ClassVar[str] = "link_latency"
    toxic_type = "latency"

    def _attributes(self) -> dict[str, int]:
        return {
            "latency": _ms(self.params.get("latency", 0.2)),
            "jitter": _ms(self.params.get("jitter", 0)),
        }


@register
class LinkBandwidth(_ToxicFault):
    """Bandwidth limited to ``rate_kbps`` KB/s."""

    kind: ClassVar[str] = "link_bandwidth"
    toxic_type = "bandwidth"

    def _attributes(self) -> dict[str, int]:
        return {"rate": int(self.params.get("rate_kbps", 64))}


@register
class LinkReset(_ToxicFault):
    """Every connection over the link is reset (RST) for the fault's duration."""

    kind: ClassVar[str] = "link_reset"
    toxic_type = "reset_peer"

    def _attributes(self) -> dict[str, int]:
        return {"timeout": _ms(self.params.get("timeout", 0))}


@register
class LinkSlicer(_ToxicFault):
    """Data is cut into small delayed writes."""

    kind: ClassVar[str] = "link_slicer"
    toxic_type = "slicer"

    def _attributes(self) -> dict[str, int]:
        return {
            "average_size": int(self.params.get("average_size", 64)),
            "size_variation": int(self.params.get("size_variation", 0)),
            "delay": round(float(self.params.get("delay", 0)) * 1_000_000),
        }


@register
class LinkLimitData(_ToxicFault):
    """Connections are closed after ``bytes`` bytes."""

    kind: ClassVar[str] = "link_limit_data"
    toxic_type = "limit_data"

    def _attributes(self) -> dict[str, int]:
        return {"bytes": int(self.params.get("bytes", 4096))}
