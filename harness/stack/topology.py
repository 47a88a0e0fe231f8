"""The stack's shape: components, and the named fault-proxy links between them.

Every network link a scenario may break goes through a fault-proxy proxy whose name is given
here, identical in every backend (see ARCHITECTURE.md section 2):

* ``conn-<pop>``          connector -> edge <pop> tunnel listener (all connectors share it)
* ``connector-api``       connector (management, legacy registration) -> control plane API
* ``edge-<pop>-api``      edge <pop> -> control plane API (legacy registration only: the
                          edges are started with ``--api`` pointing at this link)
* ``cp-broker``           control plane -> MQTT broker
* ``edge-<pop>-broker``   edge <pop> -> MQTT broker
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

TunnelKind = Literal["named", "legacy"]
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


@dataclass(frozen=True)
class TunnelSpec:
    """One tunnel the stack creates, routes and runs a connector for."""

    name: str
    hostname: str
    kind: TunnelKind = "named"

    @property
    def connector(self) -> str:
        """Component name of this tunnel's connector process."""
        return f"connector-{self.name}"

    @property
    def is_legacy(self) -> bool:
        """A legacy (classic) tunnel: no ``tunnel create``/``route dns``; its connector runs
        ``--legacy --hostname`` with cert.pem and every registration needs the control plane."""
        return self.kind == "legacy"


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

    def __post_init__(self) -> None:
        if not self.pops:
            raise ValueError("a stack needs at least one PoP")
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
    def components(self) -> list[str]:
        """Every process/container a fault may stop, kill, pause or restart."""
        return [
            "broker",
            "controlplane",
            *(f"edge-{pop}" for pop in self.pops),
            "origin",
            *(t.connector for t in self.tunnels),
        ]

    @property
    def links(self) -> list[str]:
        """Every fault-proxy proxy name."""
        return [
            *(f"conn-{pop}" for pop in self.pops),
            "connector-api",
            *(f"edge-{pop}-api" for pop in self.pops),
            "cp-broker",
            *(f"edge-{pop}-broker" for pop in self.pops),
        ]
