"""The stack's shape: components, and the named fault-proxy links between them.

Every network link a scenario may break goes through a fault-proxy proxy whose name is given
here, identical in every backend (see ARCHITECTURE.md section 2):

* ``conn-<pop>``          connector -> edge <pop> tunnel listener (all connectors share it)
* ``connector-api``       connector (management, legacy registration) -> control plane API
* ``edge-<pop>-api``      edge <pop> -> control plane API (legacy registration only: the
                          edges are started with ``--api`` pointing at this link)
* ``cp-broker``           control plane -> MQTT broker
* ``edge-<pop>-broker``   edge <pop> -> MQTT broker
* ``pop-<a>-<b>``         edge <a> -> edge <b>'s peer listener (forwarded visitor requests and
                          the registration summaries the PoPs exchange); one per direction

Visitors reach the edge network through the ``anycast`` component (one address for HTTP,
WebSocket and DNS), which sends each connection to the preferred healthy PoP of a visitor
region; every PoP's own visitor address stays available for diagnosis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from harness.stack.user_origin import UserOrigin

TunnelKind = Literal["named", "legacy"]
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


@dataclass(frozen=True)
class TunnelSpec:
    """One tunnel the stack creates, routes and runs a connector for."""

    name: str
    hostname: str
    kind: TunnelKind = "named"
    #: Connector processes running this tunnel at once (cloudflared's replicas).
    replicas: int = 1

    @property
    def connector(self) -> str:
        """Component name of this tunnel's (first) connector process."""
        return f"connector-{self.name}"

    @property
    def connectors(self) -> list[str]:
        """Component names of every replica: ``connector-web``, ``connector-web-2``, ..."""
        return [self.connector, *(f"{self.connector}-{i}" for i in range(2, self.replicas + 1))]

    @property
    def is_legacy(self) -> bool:
        """A legacy (classic) tunnel: no ``tunnel create``/``route dns``; its connector runs
        ``--legacy --hostname`` with cert.pem and every registration needs the control plane."""
        return self.kind == "legacy"


@dataclass(frozen=True)
class Region:
    """A visitor region of the anycast entry: the PoPs it prefers, best first, and its share of
    visitor connections."""

    name: str
    prefer: tuple[str, ...]
    weight: float = 1.0

    def argument(self) -> str:
        """``--region`` value of ``outlast serve anycast``."""
        return f"{self.name}={','.join(self.prefer)}:{self.weight:g}"


@dataclass(frozen=True)
class Topology:
    """PoPs, tunnels and zone of one stack."""

    pops: tuple[str, ...] = ("ams", "fra")
    tunnels: tuple[TunnelSpec, ...] = field(
        default_factory=lambda: (TunnelSpec("web", "app.example.com"),)
    )
    zone: str = "example.com"
    account: str = "outlast-demo"
    email: str = "sre@example.com"
    #: Seconds before the anycast entry stops sending visitors to a PoP that went down.
    convergence: float = 1.0
    #: Visitor regions; empty = one region per PoP, preferring it, then the others in order.
    regions: tuple[Region, ...] = ()
    #: The user's service behind every tunnel (``None``: the reference echo origin).
    origin: UserOrigin | None = None

    def __post_init__(self) -> None:
        if not self.pops:
            raise ValueError("a stack needs at least one PoP")
        for region in self.regions:
            unknown = [p for p in region.prefer if p not in self.pops]
            if unknown or not region.prefer:
                raise ValueError(f"region {region.name!r}: unknown PoP(s) {unknown or 'none'}")
        if self.convergence < 0:
            raise ValueError("convergence must be >= 0 seconds")
        for pop in self.pops:
            if not _NAME.match(pop):
                raise ValueError(f"PoP name {pop!r}: use lowercase letters, digits and '-'")
        names = [t.name for t in self.tunnels]
        if len(set(names)) != len(names):
            raise ValueError(f"tunnel names must be unique, got {names}")
        for tunnel in self.tunnels:
            if not _NAME.match(tunnel.name):
                raise ValueError(f"tunnel name {tunnel.name!r}: use lowercase letters, digits, '-'")
            host = tunnel.hostname
            if host != self.zone and not host.endswith("." + self.zone):
                raise ValueError(f"hostname {host!r} is not in zone {self.zone!r}")
            if tunnel.replicas < 1:
                raise ValueError(f"tunnel {tunnel.name!r}: replicas must be at least 1")
            if tunnel.is_legacy and host == self.zone:
                raise ValueError(
                    f"legacy tunnel {tunnel.name!r}: legacy tunnels only create records for "
                    f"subdomains, not the zone apex {host!r}; use e.g. www.{self.zone}"
                )

    @classmethod
    def numbered(cls, pops: tuple[str, ...], count: int) -> Topology:
        """``count`` named tunnels ``t1..tN`` routed as ``t1.example.com`` ..."""
        if count < 1:
            raise ValueError("--tunnels must be at least 1")
        if count == 1:
            return cls(pops=pops)
        tunnels = tuple(TunnelSpec(f"t{i}", f"t{i}.example.com") for i in range(1, count + 1))
        return cls(pops=pops, tunnels=tunnels)

    @property
    def visitor_regions(self) -> tuple[Region, ...]:
        """The regions given, or one per PoP preferring it, then the others in order."""
        if self.regions:
            return self.regions
        return tuple(Region(pop, (pop, *(p for p in self.pops if p != pop))) for pop in self.pops)

    @property
    def components(self) -> list[str]:
        """Every process/container a fault may stop, kill, pause or restart."""
        return [
            "broker",
            "controlplane",
            *(f"edge-{pop}" for pop in self.pops),
            "anycast",
            *(["origin"] if self.has_origin_process else []),
            *(c for t in self.tunnels for c in t.connectors),
        ]

    @property
    def has_origin_process(self) -> bool:
        """Whether the stack runs an ``origin`` component (not for a user's running ``url``)."""
        return self.origin is None or self.origin.runs_process

    @property
    def peer_links(self) -> list[str]:
        """``pop-<a>-<b>`` for every ordered pair of PoPs."""
        return [f"pop-{a}-{b}" for a in self.pops for b in self.pops if a != b]

    @property
    def links(self) -> list[str]:
        """Every fault-proxy proxy name."""
        return [
            *(f"conn-{pop}" for pop in self.pops),
            "connector-api",
            *(f"edge-{pop}-api" for pop in self.pops),
            "cp-broker",
            *(f"edge-{pop}-broker" for pop in self.pops),
            *self.peer_links,
        ]
