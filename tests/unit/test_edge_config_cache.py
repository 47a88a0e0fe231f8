"""The edge's configuration cache: version rules, lookups, atomic persistence."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

from reference.config_topics import dns_topic, tunnel_target, tunnel_topic, zone_topic
from reference.edge.cache_store import (
    CACHE_FILE_NAME,
    CachePersister,
    cache_path,
    load_cache,
    save_cache,
)
from reference.edge.config_cache import ConfigCache, parse_topic

ACCOUNT = "5ab4e9dfbd435d24068829fda0077963"
ZONE = "023e105f4ecef8ad9ca31a8372d0c353"
TUNNEL = "c1744f8b-faa1-48a4-9e5c-02ac921467fa"
VERIFIER = "9f" * 32


def tunnel_payload(version: int, *, deleted: bool = False, name: str = "web") -> dict[str, Any]:
    return {
        "version": version,
        "tunnel_id": TUNNEL,
        "account_tag": ACCOUNT,
        "name": name,
        "verifier": VERIFIER,
        "deleted": deleted,
        "updated_at": "2026-11-22T10:00:00Z",
    }


def zone_payload(version: int, name: str = "example.com", zone_id: str = ZONE) -> dict[str, Any]:
    return {
        "version": version,
        "zone_id": zone_id,
        "account_tag": ACCOUNT,
        "name": name,
        "deleted": False,
    }


def record_payload(
    version: int, name: str, record_id: str = "e1" * 16, *, deleted: bool = False
) -> dict[str, Any]:
    return {
        "version": version,
        "record_id": record_id,
        "zone_id": ZONE,
        "zone_name": "example.com",
        "type": "CNAME",
        "name": name,
        "content": tunnel_target(TUNNEL),
        "tunnel_id": TUNNEL,
        "proxied": True,
        "deleted": deleted,
    }


def populated() -> ConfigCache:
    cache = ConfigCache()
    assert cache.apply(zone_topic(ZONE), zone_payload(1)).applied
    assert cache.apply(tunnel_topic(TUNNEL), tunnel_payload(2)).applied
    assert cache.apply(dns_topic(ZONE, "e1" * 16), record_payload(3, "app.example.com")).applied
    return cache


def test_topics_are_parsed_per_contract() -> None:
    assert parse_topic(tunnel_topic(TUNNEL)) == ("tunnel", (TUNNEL,))
    assert parse_topic(zone_topic(ZONE)) == ("zone", (ZONE,))
    assert parse_topic(dns_topic(ZONE, "ab")) == ("dns", (ZONE, "ab"))
    assert parse_topic("outlast/v1/events/ams") is None
    assert parse_topic("outlast/v2/tunnels/x") is None


def test_older_and_equal_versions_are_ignored_newer_applied() -> None:
    cache = ConfigCache()
    assert cache.apply(tunnel_topic(TUNNEL), tunnel_payload(5, name="five")).applied
    equal = cache.apply(tunnel_topic(TUNNEL), tunnel_payload(5, name="other-five"))
    older = cache.apply(tunnel_topic(TUNNEL), tunnel_payload(4, name="four"))
    assert (equal.applied, equal.reason) == (False, "stale")
    assert (older.applied, older.reason) == (False, "stale")
    assert cache.tunnel(TUNNEL) is not None and cache.tunnel(TUNNEL).name == "five"  # type: ignore[union-attr]
    assert cache.apply(tunnel_topic(TUNNEL), tunnel_payload(9, name="nine")).applied
    assert cache.tunnel(TUNNEL).name == "nine"  # type: ignore[union-attr]
    assert cache.version == 9


def test_versions_are_per_topic() -> None:
    cache = ConfigCache()
    assert cache.apply(tunnel_topic(TUNNEL), tunnel_payload(10)).applied
    # A lower version on another topic is still new for that topic.
    assert cache.apply(zone_topic(ZONE), zone_payload(3)).applied
    assert cache.version == 10


def test_tombstone_reports_the_deleted_tunnel_once() -> None:
    cache = populated()
    first = cache.apply(tunnel_topic(TUNNEL), {"version": 7, "tunnel_id": TUNNEL, "deleted": True})
    assert first.applied and first.deleted_tunnel_id == TUNNEL
    again = cache.apply(tunnel_topic(TUNNEL), {"version": 8, "tunnel_id": TUNNEL, "deleted": True})
    assert again.applied and again.deleted_tunnel_id is None
    tunnel = cache.tunnel(TUNNEL)
    assert tunnel is not None and tunnel.deleted
    # A re-delivered older live payload cannot resurrect it.
    assert not cache.apply(tunnel_topic(TUNNEL), tunnel_payload(2)).applied
    assert cache.tunnel(TUNNEL).deleted  # type: ignore[union-attr]


def test_invalid_payloads_are_rejected_without_changing_anything() -> None:
    cache = populated()
    version = cache.version
    bad: list[tuple[str, bytes | dict[str, Any]]] = [
        (tunnel_topic(TUNNEL), b"{not json"),
        (tunnel_topic(TUNNEL), b""),
        (tunnel_topic(TUNNEL), {**tunnel_payload(50), "verifier": ""}),  # live, no verifier
        (tunnel_topic(TUNNEL), {**tunnel_payload(51), "version": 0}),
        (tunnel_topic("d3b9f0c4-0000-4000-8000-000000000000"), tunnel_payload(52)),  # id mismatch
        (dns_topic(ZONE, "other"), record_payload(53, "x.example.com")),  # record id mismatch
        ("outlast/v1/nonsense/x", {"version": 54}),
    ]
    for topic, payload in bad:
        assert not cache.apply(topic, payload).applied, (topic, payload)
    assert cache.version == version


def test_dns_lookups_follow_renames_deletes_and_wildcards() -> None:
    cache = populated()
    record = cache.route_record("APP.example.com.")
    assert record is not None and record.tunnel_id == TUNNEL
    # Rename the record: the old name disappears from the index.
    assert cache.apply(dns_topic(ZONE, "e1" * 16), record_payload(4, "www.example.com")).applied
    assert cache.route_record("app.example.com") is None
    assert cache.route_record("www.example.com") is not None
    # Delete it: known as deleted, not routable.
    assert cache.apply(
        dns_topic(ZONE, "e1" * 16), record_payload(5, "www.example.com", deleted=True)
    ).applied
    assert cache.route_record("www.example.com") is None
    assert cache.was_deleted("www.example.com")
    assert not cache.was_deleted("never.example.com")
    # Wildcards match one label deeper, exact names win.
    assert cache.apply(dns_topic(ZONE, "f" * 32), record_payload(6, "*.example.com", "f" * 32))
    assert cache.route_record("any.example.com") is not None
    assert cache.route_record("a.b.example.com") is None


def test_zone_for_picks_the_longest_live_zone() -> None:
    cache = ConfigCache()
    sub_zone = "11" * 16
    cache.apply(zone_topic(ZONE), zone_payload(1))
    cache.apply(zone_topic(sub_zone), zone_payload(2, "dev.example.com", sub_zone))
    assert cache.zone_for("a.dev.example.com").zone_id == sub_zone  # type: ignore[union-attr]
    assert cache.zone_for("a.example.com").zone_id == ZONE  # type: ignore[union-attr]
    assert cache.zone_for("example.com").zone_id == ZONE  # type: ignore[union-attr]
    assert cache.zone_for("notexample.com") is None
    cache.apply(zone_topic(sub_zone), {"version": 3, "zone_id": sub_zone, "deleted": True})
    assert cache.zone_for("a.dev.example.com").zone_id == ZONE  # type: ignore[union-attr]


def test_cache_round_trips_through_the_file(tmp_path: Path) -> None:
    cache = populated()
    cache.apply(tunnel_topic(TUNNEL), {"version": 7, "tunnel_id": TUNNEL, "deleted": True})
    assert save_cache(cache, tmp_path) == 7
    path = cache_path(tmp_path)
    assert path.name == CACHE_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [CACHE_FILE_NAME]  # no temp files left
    loaded = load_cache(tmp_path)
    assert loaded.version == 7
    assert loaded.entries() == cache.entries()
    assert loaded.tunnel(TUNNEL).deleted  # type: ignore[union-attr]
    assert loaded.applied_at == cache.applied_at
    document = json.loads(path.read_text())
    assert document["format"] == "outlast-edge-config-cache/1"


def test_corrupt_cache_is_moved_aside_and_the_edge_starts_empty(tmp_path: Path) -> None:
    cache_path(tmp_path).write_text('{"format": "outlast-edge-config-cache/1", "entries": [')
    cache = load_cache(tmp_path)
    assert len(cache) == 0
    assert not cache_path(tmp_path).exists()
    assert any(p.name.startswith(CACHE_FILE_NAME + ".corrupt-") for p in tmp_path.iterdir())


def test_missing_cache_gives_an_empty_cache(tmp_path: Path) -> None:
    assert len(load_cache(tmp_path / "nothing-here")) == 0


async def test_persister_writes_after_changes_and_on_exit(tmp_path: Path) -> None:
    cache = ConfigCache()
    async with CachePersister(cache, tmp_path, debounce=0.01) as persister:
        assert persister.persisted_version == 0
        cache.apply(tunnel_topic(TUNNEL), tunnel_payload(3))
        persister.mark_dirty()
        for _ in range(200):
            if persister.persisted_version == 3:
                break
            await asyncio.sleep(0.01)
        assert persister.persisted_version == 3
        assert load_cache(tmp_path).version == 3
        cache.apply(zone_topic(ZONE), zone_payload(4))  # not marked dirty: written on exit
    assert load_cache(tmp_path).version == 4
