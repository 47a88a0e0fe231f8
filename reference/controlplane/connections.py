"""The control plane's view of active connector connections: the union of edge snapshots.

Edges publish their full set of registered connections (retained) on
``outlast/v1/edges/{pop}/connections``; the latest snapshot of each PoP replaces the previous
one, so a lost event can never leave a ghost connection behind.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EdgeConnection:
    """One registered connection as an edge reports it."""

    pop: str
    tunnel_id: str
    connection_id: str
    conn_index: int
    connector_id: str
    connector_version: str
    arch: str
    origin_ip: str
    opened_at: str

    @classmethod
    def from_snapshot(cls, pop: str, raw: dict[str, Any]) -> EdgeConnection:
        return cls(
            pop=pop,
            tunnel_id=str(raw["tunnel_id"]),
            connection_id=str(raw["connection_id"]),
            conn_index=int(raw.get("conn_index", 0)),
            connector_id=str(raw.get("connector_id", "")),
            connector_version=str(raw.get("connector_version", "")),
            arch=str(raw.get("arch", "")),
            origin_ip=str(raw.get("origin_ip", "")),
            opened_at=str(raw.get("opened_at", "")),
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.connection_id,
            "colo_name": self.pop,
            "conn_index": self.conn_index,
            "client_id": self.connector_id,
            "client_version": self.connector_version,
            "origin_ip": self.origin_ip,
            "opened_at": self.opened_at,
            "is_pending_reconnect": False,
        }


class SnapshotError(ValueError):
    """An edge snapshot that cannot be understood."""


class ConnectionView:
    """Active connections per PoP, replaced wholesale by each snapshot."""

    def __init__(self) -> None:
        self._by_pop: dict[str, list[EdgeConnection]] = {}

    def apply_snapshot(self, pop: str, payload: dict[str, Any]) -> None:
        """Replace ``pop``'s connections with ``payload`` (an offline edge has none)."""
        try:
            raw_connections = payload.get("connections") or []
            online = bool(payload.get("online", True))
            connections = [EdgeConnection.from_snapshot(pop, c) for c in raw_connections]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"snapshot of PoP {pop!r} is malformed: {exc}") from exc
        self._by_pop[pop] = connections if online else []

    def for_tunnel(self, tunnel_id: str) -> list[EdgeConnection]:
        found = [c for conns in self._by_pop.values() for c in conns if c.tunnel_id == tunnel_id]
        return sorted(found, key=lambda c: (c.pop, c.conn_index, c.connection_id))

    def count(self) -> int:
        return sum(len(conns) for conns in self._by_pop.values())

    def cleanup(self, tunnel_id: str, connector_id: str | None = None) -> int:
        """Forget the tunnel's connections (of one connector) until the next snapshot."""
        removed = 0
        for pop, conns in self._by_pop.items():
            keep = [
                c
                for c in conns
                if c.tunnel_id != tunnel_id
                or (connector_id is not None and c.connector_id != connector_id)
            ]
            removed += len(conns) - len(keep)
            self._by_pop[pop] = keep
        return removed


def colo_summary(connections: list[EdgeConnection]) -> str:
    """``2xams, 2xfra``: connections per PoP, sorted by PoP."""
    counts = Counter(c.pop for c in connections)
    return ", ".join(f"{n}x{pop}" for pop, n in sorted(counts.items()))


def active_clients(connections: list[EdgeConnection]) -> list[dict[str, Any]]:
    """Connections grouped by connector (cloudflared's ActiveClient shape)."""
    clients: dict[str, list[EdgeConnection]] = {}
    for conn in connections:
        clients.setdefault(conn.connector_id, []).append(conn)
    result = []
    for connector_id, conns in sorted(clients.items()):
        first = min(conns, key=lambda c: c.opened_at)
        result.append(
            {
                "id": connector_id,
                "features": [],
                "version": first.connector_version,
                "arch": first.arch,
                "run_at": first.opened_at,
                "conns": [c.to_api() for c in conns],
            }
        )
    return result
