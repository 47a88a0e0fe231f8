"""Registry of the live (registered) tunnel connections at this edge, and choosing one.

Visitor requests for a tunnel are spread over its connections: the connection with the fewest
requests in flight wins, ties broken round robin, so idle connections share the load evenly and a
slow connection does not collect a queue.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

HandleT = TypeVar("HandleT")


def utc_now_iso() -> str:
    """Current UTC time as ``2026-11-22T10:00:01.123Z``."""
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(eq=False)
class LiveConnection(Generic[HandleT]):
    """One registered connection and what is known about its connector."""

    connection_id: str
    tunnel_id: str
    account_tag: str
    conn_index: int
    connector_id: str
    handle: HandleT
    connector_version: str = ""
    arch: str = ""
    origin_ip: str = ""
    opened_at: str = field(default_factory=utc_now_iso)
    opened_monotonic: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    closing: bool = False

    def snapshot_entry(self) -> dict[str, Any]:
        """This connection as an entry of the retained connections snapshot."""
        return {
            "tunnel_id": self.tunnel_id,
            "connection_id": self.connection_id,
            "conn_index": self.conn_index,
            "connector_id": self.connector_id,
            "connector_version": self.connector_version,
            "arch": self.arch,
            "origin_ip": self.origin_ip,
            "opened_at": self.opened_at,
        }

    @contextlib.contextmanager
    def request_slot(self) -> Iterator[None]:
        """Count a visitor request as in flight on this connection while inside the block."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


class ConnectionRegistry(Generic[HandleT]):
    """Live connections by id and by tunnel. Not thread-safe: use from the event loop."""

    def __init__(self) -> None:
        self._by_id: dict[str, LiveConnection[HandleT]] = {}
        self._by_tunnel: dict[str, dict[str, LiveConnection[HandleT]]] = {}
        self._turns = itertools.count()
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every add or remove."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    def add(self, connection: LiveConnection[HandleT]) -> LiveConnection[HandleT] | None:
        """Register ``connection``. Returns the connection it supersedes (same tunnel, connector
        and index, e.g. the half-dead predecessor of a reconnect), which the caller should close;
        it is already removed from the registry."""
        replaced = self.find(connection.tunnel_id, connection.connector_id, connection.conn_index)
        if replaced is not None:
            self._remove(replaced.connection_id)
        self._by_id[connection.connection_id] = connection
        self._by_tunnel.setdefault(connection.tunnel_id, {})[connection.connection_id] = connection
        self._changed()
        return replaced

    def _remove(self, connection_id: str) -> LiveConnection[HandleT] | None:
        connection = self._by_id.pop(connection_id, None)
        if connection is None:
            return None
        peers = self._by_tunnel.get(connection.tunnel_id, {})
        peers.pop(connection_id, None)
        if not peers:
            self._by_tunnel.pop(connection.tunnel_id, None)
        return connection

    def remove(self, connection_id: str) -> LiveConnection[HandleT] | None:
        """Forget a connection; returns it, or None if it was not (or no longer) registered."""
        connection = self._remove(connection_id)
        if connection is not None:
            self._changed()
        return connection

    def get(self, connection_id: str) -> LiveConnection[HandleT] | None:
        return self._by_id.get(connection_id)

    def find(
        self, tunnel_id: str, connector_id: str, conn_index: int
    ) -> LiveConnection[HandleT] | None:
        """The registered connection for this tunnel, connector and HA index, if any."""
        for connection in self._by_tunnel.get(tunnel_id, {}).values():
            if connection.connector_id == connector_id and connection.conn_index == conn_index:
                return connection
        return None

    def for_tunnel(self, tunnel_id: str) -> list[LiveConnection[HandleT]]:
        """The tunnel's connections, oldest first."""
        return sorted(self._by_tunnel.get(tunnel_id, {}).values(), key=lambda c: c.opened_monotonic)

    def all(self) -> list[LiveConnection[HandleT]]:
        return sorted(self._by_id.values(), key=lambda c: c.opened_monotonic)

    def __len__(self) -> int:
        return len(self._by_id)

    def counts_by_tunnel(self) -> dict[str, int]:
        """Number of live connections per tunnel id."""
        return {tunnel_id: len(conns) for tunnel_id, conns in self._by_tunnel.items()}

    def pick(
        self, tunnel_id: str, exclude: frozenset[str] | set[str] = frozenset()
    ) -> LiveConnection[HandleT] | None:
        """A connection for the next visitor request: fewest in flight, ties round robin.

        Connections whose id is in ``exclude`` (already failed for this request) or that are
        closing are skipped. None when the tunnel has no usable connection here.
        """
        candidates = [
            c
            for c in self.for_tunnel(tunnel_id)
            if c.connection_id not in exclude and not c.closing
        ]
        if not candidates:
            return None
        fewest = min(c.in_flight for c in candidates)
        least_busy = [c for c in candidates if c.in_flight == fewest]
        return least_busy[next(self._turns) % len(least_busy)]

    def snapshot_entries(self) -> list[dict[str, Any]]:
        """All connections as entries of the retained connections snapshot."""
        return [c.snapshot_entry() for c in self.all()]
