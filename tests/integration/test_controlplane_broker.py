"""Configuration distribution and edge events between a real control plane and real mosquitto."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import httpx

from reference import config_topics
from reference.broker.auth import CONTROLPLANE_USER, BrokerCredential, edge_username
from reference.config_signing import load_verifier
from reference.connector.credentials import TunnelCredentials
from reference.tunnel_auth import derive_verifier
from tests.integration.controlplane_fixtures import (
    Bootstrap,
    ControlPlaneProcess,
    MosquittoProcess,
    make_bootstrap,
)

CONFIG_FILTERS = (
    config_topics.TUNNELS_FILTER,
    config_topics.ZONES_FILTER,
    config_topics.DNS_FILTER,
)
Seen = dict[str, dict[str, Any]]


def unwrap(raw: bytes) -> Any:
    """The payload of a configuration message (signed envelopes are opened, unverified: the
    tests that care check signatures with the control plane's public key)."""
    data = json.loads(raw) if raw else None
    if isinstance(data, dict) and isinstance(data.get("payload"), str) and "signature" in data:
        return json.loads(data["payload"])
    return data


async def collect(
    broker: MosquittoProcess,
    until: Callable[[Seen], bool],
    *,
    filters: tuple[str, ...] = CONFIG_FILTERS,
    timeout: float = 20.0,
) -> Seen:
    """Subscribe to ``filters`` as edge-ams and gather the latest message per topic until
    ``until(seen)``."""
    seen: Seen = {}
    try:
        async with mqtt_client(broker, broker.credential(edge_username("ams"))) as client:
            for topic_filter in filters:
                await client.subscribe(topic_filter, qos=1)
            async with asyncio.timeout(timeout):
                if until(seen):
                    return seen
                async for message in client.messages:
                    raw = message.payload if isinstance(message.payload, bytes) else b""
                    seen[str(message.topic)] = {
                        "payload": unwrap(raw),
                        "raw": raw,
                        "retain": message.retain,
                    }
                    if until(seen):
                        return seen
    except TimeoutError:
        raise AssertionError(f"condition not met within {timeout} s; saw {sorted(seen)}") from None
    raise AssertionError("message stream ended")


def mqtt_client(broker: MosquittoProcess, credential: BrokerCredential) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        identifier=f"test-{uuid.uuid4()}",
        username=credential.username,
        password=credential.password,
    )


async def publish(
    broker: MosquittoProcess, topic: str, payload: dict[str, Any], *, retain: bool
) -> None:
    """Publish as the edge whose event or snapshot topic ``topic`` is."""
    pop = topic.split("/")[3]
    async with mqtt_client(broker, broker.credential(edge_username(pop))) as client:
        await client.publish(topic, json.dumps(payload).encode(), qos=1, retain=retain)


async def eventually(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll the async ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s (last: {last!r})")


async def health(cp: ControlPlaneProcess) -> dict[str, Any]:
    async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
        data: dict[str, Any] = (await client.get(f"{cp.url}/health")).json()
        return data


async def start_stack(
    tmp_path: Path, *, persistence: bool = True
) -> tuple[MosquittoProcess, ControlPlaneProcess]:
    broker = MosquittoProcess(tmp_path / "mosquitto", persistence=persistence)
    await broker.start()
    cp = ControlPlaneProcess(
        tmp_path / "cp",
        tmp_path / "cp.log",
        broker=broker.address,
        broker_credentials=broker.credentials_file(CONTROLPLANE_USER),
    )
    await cp.start()
    return broker, cp


async def test_retained_config_with_versions_verifier_and_tombstones(tmp_path: Path) -> None:
    broker, cp = await start_stack(tmp_path)
    try:
        b = await make_bootstrap(cp, tmp_path / "home")
        (await b.login()).check()
        tunnel_id = (await b.tunnel("create", "web", "-o", "json")).check().json["id"]
        (await b.tunnel("route", "dns", "web", "app.example.com")).check()
        creds = TunnelCredentials.load(b.home / f"{tunnel_id}.json")
        tunnel_topic = config_topics.tunnel_topic(tunnel_id)
        zone_topic = config_topics.zone_topic(b.zone_id)

        def complete(seen: Seen) -> bool:
            return (
                tunnel_topic in seen
                and zone_topic in seen
                and any(t.startswith(f"outlast/v1/dns/{b.zone_id}/") for t in seen)
            )

        seen = await collect(broker, complete)
        assert all(m["retain"] for m in seen.values())
        # Every configuration message is signed by the control plane's key (issue 21, item 2).
        verifier = load_verifier(cp.data_dir / "config-signing.pub")
        for topic, message in seen.items():
            assert verifier.open(topic, message["raw"]) == message["payload"], topic
        tunnel = seen[tunnel_topic]["payload"]
        assert set(tunnel) == {
            "version",
            "tunnel_id",
            "account_tag",
            "name",
            "verifier",
            "deleted",
            "updated_at",
        }
        assert tunnel["verifier"] == derive_verifier(creds.tunnel_secret, tunnel_id)
        assert tunnel["account_tag"] == b.account_id and tunnel["deleted"] is False
        zone = seen[zone_topic]["payload"]
        assert zone == {
            "version": zone["version"],
            "zone_id": b.zone_id,
            "account_tag": b.account_id,
            "name": "example.com",
            "deleted": False,
        }
        dns_topic = next(t for t in seen if t.startswith("outlast/v1/dns/"))
        record = seen[dns_topic]["payload"]
        assert dns_topic == config_topics.dns_topic(b.zone_id, record["record_id"])
        assert record["name"] == "app.example.com" and record["type"] == "CNAME"
        assert record["content"] == config_topics.tunnel_target(tunnel_id)
        assert record["tunnel_id"] == tunnel_id and record["zone_name"] == "example.com"
        assert zone["version"] < tunnel["version"] < record["version"]
        status = await health(cp)
        assert status["published_version"] == status["config_version"] == record["version"]

        secret_forms = [
            base64.b64encode(creds.tunnel_secret),
            creds.tunnel_secret.hex().encode(),
            b.api_token.encode(),
        ]
        for message in seen.values():
            for form in secret_forms:
                assert form not in message["raw"]

        (await b.tunnel("delete", "web")).check()
        gone = await collect(
            broker,
            lambda s: dns_topic in s and s.get(tunnel_topic, {}).get("payload", {}).get("deleted"),
        )
        tombstone = gone[tunnel_topic]["payload"]
        assert tombstone["deleted"] is True and tombstone["version"] > record["version"]
        assert gone[dns_topic]["payload"]["deleted"] is False  # DNS records outlive the tunnel

        log = cp.log_text()
        assert "configuration published" in log
        for form in secret_forms:
            assert form.decode() not in log
    finally:
        await cp.stop()
        await broker.stop()


async def test_api_keeps_working_with_broker_down_and_republishes(tmp_path: Path) -> None:
    broker, cp = await start_stack(tmp_path, persistence=False)
    try:
        b = await make_bootstrap(cp, tmp_path / "home")
        secret = base64.b64encode(b"k" * 32).decode()
        path = f"/accounts/{b.account_id}/cfd_tunnel"
        first = (
            await cp.api("POST", path, b.api_token, json={"name": "first", "tunnel_secret": secret})
        ).json()["result"]
        first_topic = config_topics.tunnel_topic(first["id"])
        await collect(broker, lambda s: first_topic in s)

        await broker.stop()
        await eventually(lambda: _broker_state(cp, "disconnected"), "broker disconnect noticed")
        response = await cp.api(
            "POST", path, b.api_token, json={"name": "second", "tunnel_secret": secret}
        )
        assert response.status_code == 200, response.text
        second_topic = config_topics.tunnel_topic(response.json()["result"]["id"])
        listed = await cp.api("GET", path, b.api_token)
        assert sorted(t["name"] for t in listed.json()["result"]) == ["first", "second"]

        await broker.start()  # no persistence: everything retained before is gone
        seen = await collect(broker, lambda s: {first_topic, second_topic} <= set(s))
        assert seen[second_topic]["payload"]["name"] == "second"
        again = await collect(broker, lambda s: {first_topic, second_topic} <= set(s))
        assert again[first_topic]["retain"] and again[second_topic]["retain"]
        metrics = await cp.metrics_text()
        assert "outlast_controlplane_broker_connects_total 2.0" in metrics
    finally:
        await cp.stop()
        await broker.stop()


async def _broker_state(cp: ControlPlaneProcess, state: str) -> bool:
    return (await health(cp))["broker"] == state


def snapshot(pop: str, tunnel_id: str, connector_id: str, indexes: list[int]) -> dict[str, Any]:
    return {
        "pop": pop,
        "online": True,
        "at": "2026-11-22T10:00:00Z",
        "connections": [
            {
                "tunnel_id": tunnel_id,
                "connection_id": str(uuid.uuid4()),
                "conn_index": i,
                "connector_id": connector_id,
                "connector_version": "0.1.0",
                "arch": "linux_x86_64",
                "origin_ip": "127.0.0.1",
                "opened_at": "2026-11-22T10:00:00Z",
            }
            for i in indexes
        ],
    }


def event(
    kind: str, b: Bootstrap, tunnel_id: str, connection_id: str, pop: str = "ams"
) -> dict[str, Any]:
    payload = {
        "event": kind,
        "pop": pop,
        "tunnel_id": tunnel_id,
        "account_tag": b.account_id,
        "connection_id": connection_id,
        "conn_index": 0,
        "connector_id": "c-1",
        "connector_version": "0.1.0",
        "arch": "linux_x86_64",
        "origin_ip": "127.0.0.1",
        "at": "2026-11-22T10:00:01.123Z",
    }
    if kind == "unregistered":
        payload["reason"] = "connector shutdown"
    return payload


async def audit(b: Bootstrap, action: str) -> list[dict[str, Any]]:
    response = await b.cp.api(
        "GET",
        f"/accounts/{b.account_id}/audit_logs",
        b.api_token,
        params={"action": action, "direction": "asc"},
    )
    result: list[dict[str, Any]] = response.json()["result"]
    return result


async def test_events_to_audit_and_snapshots_to_connections(tmp_path: Path) -> None:
    broker, cp = await start_stack(tmp_path)
    try:
        b = await make_bootstrap(cp, tmp_path / "home")
        (await b.login()).check()
        tunnel_id = (await b.tunnel("create", "web", "-o", "json")).check().json["id"]
        await eventually(lambda: _broker_state(cp, "connected"), "broker connection")

        for pop, indexes in (("ams", [0, 2]), ("fra", [1, 3])):
            await publish(
                broker,
                config_topics.edge_connections_topic(pop),
                snapshot(pop, tunnel_id, "c-1", indexes),
                retain=True,
            )

        async def four_connections() -> bool:
            got = await cp.api(
                "GET", f"/accounts/{b.account_id}/cfd_tunnel/{tunnel_id}", b.api_token
            )
            return len(got.json()["result"]["connections"]) == 4

        await eventually(four_connections, "snapshots applied")
        row = next(
            line
            for line in (await b.tunnel("list")).check().out.splitlines()
            if line.startswith(tunnel_id)
        )
        assert row.endswith("2xams, 2xfra")
        info = (await b.tunnel("info", "web")).check().out
        assert "c-1" in info and "linux_x86_64" in info and "2xams, 2xfra" in info

        conn_id = str(uuid.uuid4())
        registered = event("registered", b, tunnel_id, conn_id)
        await publish(broker, config_topics.events_topic("ams"), registered, retain=False)
        await publish(broker, config_topics.events_topic("ams"), registered, retain=False)
        await publish(
            broker,
            config_topics.events_topic("ams"),
            event("registered", b, str(uuid.uuid4()), str(uuid.uuid4())),
            retain=False,
        )
        entries = await eventually(lambda: audit(b, "Registered"), "Registered audit entry")
        assert entries[0]["resource"]["id"] == tunnel_id
        assert entries[0]["metadata"]["pop"] == "ams"
        assert entries[0]["metadata"]["connection_id"] == conn_id
        assert entries[0]["actor"] == {"type": "edge", "id": "ams", "email": ""}

        await eventually(
            lambda: _metric_has(
                cp,
                'outlast_controlplane_edge_events_total{event="registered",'
                'outcome="unknown_tunnel"} 1.0',
            ),
            "unknown-tunnel event counted",
        )

        # Events raised while the control plane is down arrive when it is back.
        await cp.stop()
        await publish(
            broker,
            config_topics.events_topic("ams"),
            event("unregistered", b, tunnel_id, conn_id),
            retain=False,
        )
        await cp.start()
        gone = await eventually(lambda: audit(b, "Unregistered"), "Unregistered audit entry")
        assert gone[0]["metadata"]["reason"] == "connector shutdown"
        assert len(await audit(b, "Registered")) == 1  # the duplicate was dropped

        await eventually(four_connections, "snapshots re-applied after restart")
        # The edge's will: fra went offline, so only ams' connections remain.
        await publish(
            broker,
            config_topics.edge_connections_topic("fra"),
            {"pop": "fra", "online": False, "connections": []},
            retain=True,
        )
        await eventually(
            lambda: _metric_has(cp, "outlast_controlplane_active_connections 2.0"),
            "offline snapshot applied",
        )
        refused = await b.tunnel("delete", "web")
        assert refused.code != 0
        assert "active connections (2xams)" in refused.err
        (await b.tunnel("delete", "-f", "web")).check()
        deleted = await audit(b, "Delete tunnel")
        assert deleted[0]["metadata"]["cascade"] is True

    finally:
        await cp.stop()
        await broker.stop()


async def _metric_has(cp: ControlPlaneProcess, line: str) -> bool:
    return line in await cp.metrics_text()
