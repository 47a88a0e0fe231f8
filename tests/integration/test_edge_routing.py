"""Visitor routing through an in-process edge (real mosquitto, real TLS tunnel connections driven
from the test with the connector side of the wire protocol)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import httpx
import pytest
from dnslib import QTYPE, DNSRecord

from reference.config_topics import edge_connections_topic, events_topic
from reference.edge.dns_answers import DnsIdentity, answer_query
from reference.edge.server import EdgeConfig, EdgeServer
from reference.wire import ConnectorStream, HeartbeatConfig, StreamReset
from tests.integration.test_edge_support import (
    ConfigWorld,
    EdgeTls,
    Mosquitto,
    TunnelCreds,
    echo_handler,
    eventually,
    make_tls,
    metric_value,
    publish,
    register,
    running_mosquitto,
)

pytestmark = pytest.mark.timeout(60)


@dataclass
class World:
    edge: EdgeServer
    broker: Mosquitto
    tls: EdgeTls
    config: ConfigWorld
    tunnel: TunnelCreds
    client: httpx.AsyncClient

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.edge.visitor_port}"

    async def get(self, path: str, host: str = "app.example.com", **kw: object) -> httpx.Response:
        return await self.client.get(self.url + path, headers={"Host": host}, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    tls = make_tls(tmp_path / "tls")
    async with running_mosquitto(tmp_path / "broker") as broker:
        config = EdgeConfig(
            pop="ams",
            tunnel_listen=("127.0.0.1", 0),
            visitor_listen=("127.0.0.1", 0),
            dns_listen=("127.0.0.1", 0),
            broker=("127.0.0.1", broker.port),
            cache_dir=tmp_path / "cache",
            tls_cert=tls.cert_file,
            tls_key=tls.key_file,
            config_key=tls.config_key,
        )
        cfg = ConfigWorld()
        tunnel = TunnelCreds()
        await publish(
            broker.port,
            cfg.zone(tunnel.account_tag),
            cfg.tunnel(tunnel),
            cfg.record("app.example.com", tunnel),
        )
        async with EdgeServer(config) as edge, httpx.AsyncClient(timeout=10, trust_env=False) as c:
            await eventually(lambda: edge.cache.version == cfg.version)
            yield World(edge, broker, tls, cfg, tunnel, c)


async def test_get_and_large_post_arrive_intact(world: World) -> None:
    connector = await register(world.tls, world.edge.tunnel_port, world.tunnel)
    try:
        response = await world.get("/hello?x=1")
        assert response.status_code == 200
        assert response.headers["X-Outlast-Pop"] == "ams"
        assert response.headers["X-Outlast-Connection"] == connector.connection_id
        echoed = response.json()
        assert (echoed["method"], echoed["path"], echoed["host"]) == (
            "GET",
            "/hello?x=1",
            "app.example.com",
        )
        assert echoed["headers"]["x-forwarded-for"] == "127.0.0.1"

        body = os.urandom(3 * 1024 * 1024 + 17)
        post = await world.client.post(
            world.url + "/upload", content=body, headers={"Host": "app.example.com"}
        )
        assert post.status_code == 200
        assert post.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
        assert post.json()["body_size"] == len(body)
    finally:
        await connector.close()


async def test_requests_spread_over_all_connections(world: World) -> None:
    connector_id = str(uuid.uuid4())
    connectors = [
        await register(
            world.tls, world.edge.tunnel_port, world.tunnel, conn_index=i, connector_id=connector_id
        )
        for i in range(4)
    ]
    try:
        used: Counter[str] = Counter()
        for _ in range(40):
            response = await world.get("/")
            assert response.status_code == 200
            used[response.headers["X-Outlast-Connection"]] += 1
        assert set(used) == {c.connection_id for c in connectors}
        assert min(used.values()) >= 5, used
    finally:
        for connector in connectors:
            await connector.close()


async def test_idempotent_requests_are_retried_on_another_connection(world: World) -> None:
    seen_by_failing: list[str] = []

    async def fail_before_response(stream: ConnectorStream) -> None:
        seen_by_failing.append(stream.request.method)
        raise StreamReset("origin connection refused")  # the connector resets the stream

    failing = await register(
        world.tls, world.edge.tunnel_port, world.tunnel, conn_index=0, handler=fail_before_response
    )
    healthy = await register(world.tls, world.edge.tunnel_port, world.tunnel, conn_index=1)
    try:
        for _ in range(6):
            response = await world.get("/idempotent")
            assert response.status_code == 200
            assert response.headers["X-Outlast-Connection"] == healthy.connection_id
        retries = metric_value(
            world.edge.metrics.render().decode(),  # type: ignore[union-attr]
            "outlast_edge_visitor_retries_total",
        )
        assert retries == seen_by_failing.count("GET") >= 1

        statuses = []
        for _ in range(6):
            post = await world.client.post(
                world.url + "/not-idempotent",
                content=b"pay once",
                headers={"Host": "app.example.com"},
            )
            statuses.append(post.status_code)
            if post.status_code == 502:
                assert post.json()["error_code"] == 1035
        # A POST that failed on the first connection is not resent anywhere.
        assert statuses.count(502) == seen_by_failing.count("POST") >= 1
        assert statuses.count(200) == 6 - statuses.count(502)
    finally:
        await failing.close()
        await healthy.close()


async def test_websocket_round_trip(world: World) -> None:
    connector = await register(world.tls, world.edge.tunnel_port, world.tunnel)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(world.url + "/ws", headers={"Host": "app.example.com"}) as ws,
        ):
            await ws.send_str("hello through the tunnel")
            assert await asyncio.wait_for(ws.receive_str(), 5) == "hello through the tunnel"
            blob = os.urandom(200_000)
            await ws.send_bytes(blob)
            assert await asyncio.wait_for(ws.receive_bytes(), 5) == blob
            await ws.close()
        assert ws.close_code == 1000
    finally:
        await connector.close()


async def test_visitor_errors_are_distinct(world: World) -> None:
    other = TunnelCreds(account_tag=world.tunnel.account_tag)
    doomed = TunnelCreds(account_tag=world.tunnel.account_tag)
    cfg = world.config
    await publish(
        world.broker.port,
        cfg.tunnel(other),
        cfg.record("idle.example.com", other),
        cfg.tunnel(doomed),
        cfg.record("gone.example.com", doomed),
    )
    await publish(world.broker.port, cfg.tunnel(doomed, deleted=True))
    await eventually(lambda: world.edge.cache.version == cfg.version)

    unknown = await world.get("/", host="nope.example.com")
    assert (unknown.status_code, unknown.json()["error_code"]) == (404, 1001)
    assert "no such hostname" in unknown.json()["error"]
    outside = await world.get("/", host="www.other.org:8080")
    assert (outside.status_code, outside.json()["error_code"]) == (404, 1001)

    idle = await world.get("/", host="idle.example.com")
    assert (idle.status_code, idle.json()["error_code"]) == (530, 1033)
    assert other.tunnel_id in idle.json()["error"]
    assert "no active connection" in idle.json()["error"]

    gone = await world.get("/", host="gone.example.com")
    assert (gone.status_code, gone.json()["error_code"]) == (530, 1016)
    assert "deleted" in gone.json()["error"]

    for response in (unknown, idle, gone):
        assert response.headers["X-Outlast-Pop"] == "ams"

    metrics = (await world.get("/metrics", host="127.0.0.1")).text
    assert metric_value(metrics, "outlast_edge_visitor_requests_total", {"status": "404"}) == 2
    assert metric_value(metrics, "outlast_edge_visitor_requests_total", {"status": "530"}) == 2


async def test_health_paths_are_local_only(world: World) -> None:
    ready = await world.get("/ready", host=f"127.0.0.1:{world.edge.visitor_port}")
    assert ready.status_code == 200
    assert ready.json()["pop"] == "ams" and ready.json()["broker_connected"] is True
    connector = await register(world.tls, world.edge.tunnel_port, world.tunnel)
    try:
        # For a routed hostname /metrics belongs to the origin, not to the edge.
        routed = await world.get("/metrics")
        assert routed.json()["path"] == "/metrics"
    finally:
        await connector.close()


async def test_reconnect_with_same_index_replaces_the_half_dead_connection(world: World) -> None:
    connector_id = str(uuid.uuid4())
    old = await register(world.tls, world.edge.tunnel_port, world.tunnel, connector_id=connector_id)
    new = await register(world.tls, world.edge.tunnel_port, world.tunnel, connector_id=connector_id)
    try:
        await asyncio.wait_for(old.wait_closed(), 5)
        assert old.disconnect is not None and old.disconnect.should_retry is True
        assert [c.connection_id for c in world.edge.connections.all()] == [new.connection_id]
        assert (await world.get("/")).headers["X-Outlast-Connection"] == new.connection_id
    finally:
        await new.close()


async def test_unregistered_connection_gets_no_new_requests(world: World) -> None:
    connector = await register(world.tls, world.edge.tunnel_port, world.tunnel)
    try:
        assert (await world.get("/")).status_code == 200
        assert await connector.unregister()
        await eventually(lambda: len(world.edge.connections) == 0)
        response = await world.get("/")
        assert (response.status_code, response.json()["error_code"]) == (530, 1033)
    finally:
        await connector.close()


async def test_connections_snapshot_and_events_reach_the_broker(world: World) -> None:
    """Events: one per change. Snapshots: current state (changes close together may coalesce)."""
    events: list[dict[str, Any]] = []
    snapshots: list[dict[str, Any]] = []

    async def collect_until(sub: aiomqtt.Client, done: Callable[[], bool]) -> None:
        async for message in sub.messages:
            payload = json.loads(bytes(message.payload))
            if message.topic.matches(events_topic("ams")):
                events.append(payload)
            else:
                snapshots.append(payload)
            if done():
                return

    def listed() -> list[list[str]]:
        return [[c["connection_id"] for c in s["connections"]] for s in snapshots]

    async with aiomqtt.Client("127.0.0.1", world.broker.port) as sub:
        await sub.subscribe(events_topic("ams"), qos=1)
        await sub.subscribe(edge_connections_topic("ams"), qos=1)
        connector = await register(world.tls, world.edge.tunnel_port, world.tunnel, conn_index=2)
        await asyncio.wait_for(
            collect_until(sub, lambda: [connector.connection_id] in listed()), 10
        )
        await connector.close()
        await asyncio.wait_for(
            collect_until(sub, lambda: len(events) >= 2 and listed()[-1] == []), 10
        )
    assert [e["event"] for e in events] == ["registered", "unregistered"]
    registered = events[0]
    assert registered["tunnel_id"] == world.tunnel.tunnel_id
    assert registered["connection_id"] == connector.connection_id
    assert registered["conn_index"] == 2 and registered["pop"] == "ams"
    assert registered["account_tag"] == world.tunnel.account_tag
    assert registered["connector_version"] == "0.1.0-test"
    assert events[1]["connection_id"] == connector.connection_id
    assert "reason" in events[1]
    assert snapshots[-1]["online"] is True and snapshots[-1]["pop"] == "ams"


async def test_failure_after_the_response_started_is_not_a_silent_truncation(world: World) -> None:
    async def break_mid_body(stream: ConnectorStream) -> None:
        while await stream.read_body_chunk():
            pass
        await stream.send_response(200, [("content-type", "application/octet-stream")])
        await stream.send_body(b"x" * 100_000)
        raise StreamReset("origin died mid-response")

    connector = await register(
        world.tls, world.edge.tunnel_port, world.tunnel, handler=break_mid_body
    )
    try:
        # The response had started (200 + 100 kB): the visitor's connection is aborted.
        with pytest.raises(httpx.TransportError):
            response = await world.get("/partial")
            pytest.fail(
                f"truncated body delivered as complete: {response.status_code}, "
                f"{len(response.content)} B"
            )
        # The edge is fine afterwards, and the failed stream was not retried (response started).
        assert (await world.get("/partial", host="nope.example.com")).status_code == 404
        metrics = world.edge.metrics.render().decode()  # type: ignore[union-attr]
        assert metric_value(metrics, "outlast_edge_visitor_retries_total") == 0
    finally:
        await connector.close()


class BlackHoleRelay:
    """A TCP relay that can start swallowing all bytes both ways (no FIN, no RST)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.black_holed = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> BlackHoleRelay:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if not self.black_holed:
                    dst.write(data)
                    await dst.drain()

        await asyncio.gather(
            pump(reader, up_writer), pump(up_reader, writer), return_exceptions=True
        )


async def test_black_holed_connection_is_dropped_from_routing(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    cfg, tunnel = ConfigWorld(), TunnelCreds()
    async with running_mosquitto(tmp_path / "broker") as broker:
        await publish(
            broker.port,
            cfg.zone(tunnel.account_tag),
            cfg.tunnel(tunnel),
            cfg.record("app.example.com", tunnel),
        )
        config = EdgeConfig(
            pop="ams",
            tunnel_listen=("127.0.0.1", 0),
            visitor_listen=("127.0.0.1", 0),
            dns_listen=("127.0.0.1", 0),
            broker=("127.0.0.1", broker.port),
            cache_dir=tmp_path / "cache",
            tls_cert=tls.cert_file,
            tls_key=tls.key_file,
            config_key=tls.config_key,
            heartbeat=HeartbeatConfig(interval=0.25, timeout=1.5),
        )
        async with EdgeServer(config) as edge, BlackHoleRelay(edge.tunnel_port) as relay:
            await eventually(lambda: edge.cache.version == cfg.version)
            connector = await register(tls, relay.port, tunnel)
            try:
                assert len(edge.connections) == 1
                relay.black_holed = True
                started = time.monotonic()
                await eventually(lambda: len(edge.connections) == 0, timeout=15)
                detected_after = time.monotonic() - started
                assert detected_after >= 1.0  # not before the heartbeat timeout
                metrics = edge.metrics.render().decode()  # type: ignore[union-attr]
                assert (
                    metric_value(
                        metrics,
                        "outlast_edge_unregistrations_total",
                        {"reason": "heartbeat_timeout"},
                    )
                    == 1
                )
                assert (
                    metric_value(
                        metrics, "outlast_edge_tunnel_connections", {"tunnel_id": tunnel.tunnel_id}
                    )
                    == 0
                )
                async with httpx.AsyncClient(trust_env=False) as client:
                    response = await client.get(
                        f"http://127.0.0.1:{edge.visitor_port}/",
                        headers={"Host": "app.example.com"},
                    )
                assert (response.status_code, response.json()["error_code"]) == (530, 1033)
            finally:
                await connector.close()


async def test_a_zone_cannot_route_to_another_accounts_tunnel(world: World) -> None:
    """Issue 21, item 3, edge side: even if a record in account A's zone names account B's
    tunnel (a control plane bug, an old cache), the edge does not route it, and its DNS does not
    offer the edge's address for it. B's tunnel itself is connected and healthy."""
    victim = TunnelCreds()  # another account
    cfg = world.config
    await publish(world.broker.port, cfg.tunnel(victim), cfg.record("hijack.example.com", victim))
    await eventually(lambda: world.edge.cache.version == cfg.version)
    reached: list[str] = []

    async def victim_origin(stream: ConnectorStream) -> None:
        reached.append(stream.request.host)
        await echo_handler(stream)

    connector = await register(world.tls, world.edge.tunnel_port, victim, handler=victim_origin)
    try:
        for _ in range(5):
            response = await world.get("/", host="hijack.example.com")
            assert (response.status_code, response.json()["error_code"]) == (404, 1002)
            assert "not routed to a tunnel of its zone's account" in response.json()["error"]
        assert reached == []
        query = DNSRecord.question("hijack.example.com", "A")
        reply = answer_query(world.edge.cache, query, DnsIdentity("ams", "127.0.0.1"))
        assert [QTYPE[rr.rtype] for rr in reply.rr] == ["CNAME"]
    finally:
        await connector.close()
    assert (await world.get("/")).status_code == 530  # A's own route is untouched
