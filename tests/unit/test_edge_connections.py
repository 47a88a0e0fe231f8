"""Registry of live tunnel connections and how a connection is chosen for a request."""

from __future__ import annotations

from collections import Counter

from reference.edge.connections import ConnectionRegistry, LiveConnection

TUNNEL = "c1744f8b-faa1-48a4-9e5c-02ac921467fa"


def conn(
    cid: str, index: int = 0, connector: str = "k1", tunnel: str = TUNNEL
) -> LiveConnection[str]:
    return LiveConnection(
        connection_id=cid,
        tunnel_id=tunnel,
        account_tag="a" * 32,
        conn_index=index,
        connector_id=connector,
        handle=cid,
    )


def test_round_robin_over_idle_connections() -> None:
    registry: ConnectionRegistry[str] = ConnectionRegistry()
    for i in range(4):
        registry.add(conn(f"c{i}", index=i))
    picks = Counter(registry.pick(TUNNEL).connection_id for _ in range(40))  # type: ignore[union-attr]
    assert picks == {"c0": 10, "c1": 10, "c2": 10, "c3": 10}


def test_least_busy_connection_wins() -> None:
    registry: ConnectionRegistry[str] = ConnectionRegistry()
    busy, idle = conn("busy", 0), conn("idle", 1)
    registry.add(busy)
    registry.add(idle)
    with busy.request_slot(), busy.request_slot():
        assert {registry.pick(TUNNEL).connection_id for _ in range(5)} == {"idle"}  # type: ignore[union-attr]
    assert busy.in_flight == 0


def test_excluded_and_closing_connections_are_skipped() -> None:
    registry: ConnectionRegistry[str] = ConnectionRegistry()
    a, b = conn("a", 0), conn("b", 1)
    registry.add(a)
    registry.add(b)
    assert registry.pick(TUNNEL, {"a"}).connection_id == "b"  # type: ignore[union-attr]
    b.closing = True
    assert registry.pick(TUNNEL, {"a"}) is None
    assert registry.pick("other-tunnel") is None


def test_same_connector_and_index_replaces_the_old_connection() -> None:
    registry: ConnectionRegistry[str] = ConnectionRegistry()
    changes: list[int] = []
    registry.on_change(lambda: changes.append(len(registry)))
    old = conn("old", 2, connector="k1")
    registry.add(old)
    assert registry.add(conn("other-index", 3, connector="k1")) is None
    assert registry.add(conn("other-connector", 2, connector="k2")) is None
    replaced = registry.add(conn("new", 2, connector="k1"))
    assert replaced is old
    assert registry.get("old") is None
    assert sorted(c.connection_id for c in registry.for_tunnel(TUNNEL)) == [
        "new",
        "other-connector",
        "other-index",
    ]
    assert changes == [1, 2, 3, 3]


def test_counts_and_snapshot_entries() -> None:
    registry: ConnectionRegistry[str] = ConnectionRegistry()
    registry.add(conn("a", 0))
    registry.add(conn("b", 1))
    registry.add(conn("x", 0, tunnel="d3b9f0c4-0000-4000-8000-000000000000"))
    assert registry.counts_by_tunnel() == {TUNNEL: 2, "d3b9f0c4-0000-4000-8000-000000000000": 1}
    entry = registry.snapshot_entries()[0]
    assert set(entry) == {
        "tunnel_id",
        "connection_id",
        "conn_index",
        "connector_id",
        "connector_version",
        "arch",
        "origin_ip",
        "opened_at",
    }
    assert registry.remove("a") is not None
    assert registry.remove("a") is None
    assert registry.counts_by_tunnel()[TUNNEL] == 1
