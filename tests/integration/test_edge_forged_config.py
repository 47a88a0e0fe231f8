"""Forged configuration (issue 21, item 2), against a real edge process and a real mosquitto:
anyone who can publish to the broker cannot route, un-delete or roll back anything, and a forged
message never reaches the edge's cache file, so a restarted edge does not serve it either."""

from __future__ import annotations

import json
from pathlib import Path

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.stack.readiness import wait_http
from reference.config_signing import ConfigSigner
from reference.config_topics import tunnel_target
from reference.edge.cache_store import cache_path
from tests.integration.test_edge_process import cname_of, scrape
from tests.integration.test_edge_support import (
    ConfigWorld,
    EdgePorts,
    TunnelCreds,
    edge_process,
    eventually,
    make_tls,
    metric_value,
    publish,
    running_mosquitto,
)

pytestmark = pytest.mark.timeout(90)


async def test_forged_retained_config_is_ignored_and_never_cached(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    ports = EdgePorts()
    cfg = ConfigWorld()
    owner, victim = TunnelCreds(), TunnelCreds()  # victim: another account's tunnel
    cache_dir = tmp_path / "cache"
    target = tunnel_target(owner.tunnel_id)
    stranger = ConfigSigner(Ed25519PrivateKey.generate())  # not the control plane's key
    async with running_mosquitto(tmp_path / "broker") as broker:
        for run in ("before the attack", "after the attack", "after a restart"):
            edge = edge_process("ams", ports, broker.port, cache_dir, tls, tmp_path / f"{run}.log")
            async with edge:
                await wait_http(f"http://127.0.0.1:{ports.metrics}/ready", process=edge)
                if run == "before the attack":
                    await publish(
                        broker.port,
                        cfg.zone(owner.account_tag),
                        cfg.tunnel(owner),
                        cfg.record("app.example.com", owner, record_id="a" * 32),
                        cfg.tunnel(victim),
                    )
                    good_version = cfg.version
                    await eventually(lambda: cname_of(ports.dns, "app.example.com"))
                if run == "after the attack":
                    forged_topic, forged = cfg.record("app.example.com", victim, record_id="a" * 32)
                    forged["version"] = 999_999
                    revived_topic, revived = cfg.tunnel(owner, deleted=True)
                    revived["version"] = 999_998
                    async with aiomqtt.Client("127.0.0.1", broker.port) as attacker:
                        for message in (
                            json.dumps(forged).encode(),  # the attack: plain JSON
                            stranger.sign(forged_topic, forged),  # signed by another key
                            json.dumps({"payload": json.dumps(forged), "signature": ""}).encode(),
                        ):
                            await attacker.publish(forged_topic, message, qos=1, retain=True)
                        await attacker.publish(
                            revived_topic, json.dumps(revived).encode(), qos=1, retain=True
                        )

                    async def refused() -> float | None:
                        value = metric_value(
                            await scrape(ports),
                            "outlast_edge_config_updates_total",
                            {"outcome": "unsigned"},
                        )
                        return value if value and value >= 2 else None  # >= the retained two

                    await eventually(refused)
                metrics = await scrape(ports)
                assert metric_value(metrics, "outlast_edge_config_version") == good_version, run
                assert await cname_of(ports.dns, "app.example.com") == target, run
            text = cache_path(cache_dir).read_text()
            assert "999999" not in text and "999998" not in text, run
            entries = json.loads(text)["entries"]
            assert entries[f"outlast/v1/dns/{cfg.zone_id}/{'a' * 32}"]["content"] == target


async def test_an_unsigned_cache_file_is_not_trusted(tmp_path: Path) -> None:
    """A cache file written before configuration was signed (or edited by hand) is moved aside:
    the edge starts empty and takes only signed messages from the broker."""
    tls = make_tls(tmp_path / "tls")
    ports = EdgePorts()
    cfg = ConfigWorld()
    owner = TunnelCreds()
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    topic, payload = cfg.record("app.example.com", owner)
    payload["version"] = 999_999
    zone_topic, zone = cfg.zone(owner.account_tag)
    cache_path(cache_dir).write_text(
        json.dumps(
            {
                "format": "outlast-edge-config-cache/1",
                "version": 999_999,
                "entries": {topic: payload, zone_topic: zone},
            }
        )
    )
    async with running_mosquitto(tmp_path / "broker") as broker:
        edge = edge_process("ams", ports, broker.port, cache_dir, tls, tmp_path / "e.log")
        async with edge:
            ready = await wait_http(f"http://127.0.0.1:{ports.metrics}/ready", process=edge)
            assert ready.json()["config_version"] == 0
            assert await cname_of(ports.dns, "app.example.com") is None
    assert list(cache_dir.glob("config-cache.json.corrupt-*"))
    assert "unreadable; moved aside" in (tmp_path / "e.log").read_text()
