"""Forwarding between PoPs: two in-process edges (real mosquitto for their configuration, real TLS
tunnel connections driven from the test). A PoP without a connection of the tunnel serves the
visitor through the peer that holds one, having learnt that from the peer itself."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import pytest

from harness.stack.ports import free_port
from reference.edge.peers import FORWARDED_FROM_HEADER
from reference.edge.server import EdgeConfig, EdgeServer
from tests.integration.test_edge_support import (
    ConfigWorld,
    EdgeTls,
    Mosquitto,
    TunnelCreds,
    eventually,
    make_tls,
    metric_value,
    publish,
    register,
    running_mosquitto,
)

pytestmark = pytest.mark.timeout(60)
HOST = "app.example.com"


@dataclass
class Pair:
    ams: EdgeServer
    fra: EdgeServer
    broker: Mosquitto
    tls: EdgeTls
    tunnel: TunnelCreds
    client: httpx.AsyncClient

    def url(self, edge: EdgeServer) -> str:
        return f"http://127.0.0.1:{edge.visitor_port}"

    async def get(self, edge: EdgeServer, path: str = "/hello") -> httpx.Response:
        return await self.client.get(self.url(edge) + path, headers={"Host": HOST})


def _config(
    pop: str, peer: str, ports: dict[str, int], broker: int, tmp: Path, tls: EdgeTls
) -> EdgeConfig:
    return EdgeConfig(
        pop=pop,
        tunnel_listen=("127.0.0.1", 0),
        visitor_listen=("127.0.0.1", 0),
        dns_listen=("127.0.0.1", 0),
        broker=("127.0.0.1", broker),
        cache_dir=tmp / f"cache-{pop}",
        tls_cert=tls.cert_file,
        tls_key=tls.key_file,
        config_key=tls.config_key,
        peer_listen=("127.0.0.1", ports[pop]),
        peers={peer: ("127.0.0.1", ports[peer])},
        peer_poll_wait=2.0,
    )


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    tls = make_tls(tmp_path / "tls")
    ports = {"ams": free_port(), "fra": free_port()}
    async with running_mosquitto(tmp_path / "broker") as broker:
        cfg = ConfigWorld()
        tunnel = TunnelCreds()
        await publish(
            broker.port, cfg.zone(tunnel.account_tag), cfg.tunnel(tunnel), cfg.record(HOST, tunnel)
        )
        async with (
            EdgeServer(_config("ams", "fra", ports, broker.port, tmp_path, tls)) as ams,
            EdgeServer(_config("fra", "ams", ports, broker.port, tmp_path, tls)) as fra,
            httpx.AsyncClient(timeout=10, trust_env=False) as client,
        ):
            await eventually(lambda: ams.cache.version == fra.cache.version == cfg.version)
            await eventually(lambda: ams.peers.reachable("fra") and fra.peers.reachable("ams"))
            yield Pair(ams, fra, broker, tls, tunnel, client)


async def test_a_pop_without_connections_serves_through_the_peer(pair: Pair) -> None:
    connector = await register(pair.tls, pair.fra.tunnel_port, pair.tunnel)
    try:
        await eventually(lambda: pair.ams.peers.holders(pair.tunnel.tunnel_id) == ["fra"])
        response = await pair.get(pair.ams, "/hello?x=1")
        assert response.status_code == 200, response.text
        assert response.headers["X-Outlast-Pop"] == "ams"
        assert response.headers["X-Outlast-Tunnel-Pop"] == "fra"
        assert response.headers["X-Outlast-Connection"] == connector.connection_id
        echoed = response.json()
        assert (echoed["path"], echoed["host"]) == ("/hello?x=1", HOST)
        assert FORWARDED_FROM_HEADER.lower() not in echoed["headers"]

        body = os.urandom(3 * 1024 * 1024 + 5)
        post = await pair.client.post(
            pair.url(pair.ams) + "/upload", content=body, headers={"Host": HOST}
        )
        assert post.status_code == 200
        assert post.json()["body_sha256"] == hashlib.sha256(body).hexdigest()

        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(pair.url(pair.ams) + "/ws", headers={"Host": HOST}) as ws,
        ):
            assert ws._response.headers["X-Outlast-Tunnel-Pop"] == "fra"
            blob = os.urandom(100_000)
            await ws.send_bytes(blob)
            assert await asyncio.wait_for(ws.receive_bytes(), 5) == blob
            await ws.close()

        metrics = pair.ams.metrics
        assert metrics is not None

        def forwarded() -> float | None:
            text = metrics.render().decode()
            labels = {"peer": "fra", "outcome": "ok"}
            return metric_value(text, "outlast_edge_forwarded_requests_total", labels)

        # The WebSocket counts once its session has ended at ams.
        assert await eventually(lambda: forwarded() == 3, timeout=5.0)
    finally:
        await connector.close()


async def test_registrations_are_learnt_without_the_broker(pair: Pair) -> None:
    await pair.broker.stop()  # no broker (and no control plane in this test at all)
    await eventually(lambda: pair.ams.sync is not None and not pair.ams.sync.connected)
    connector = await register(pair.tls, pair.fra.tunnel_port, pair.tunnel)
    try:
        response = await eventually(
            lambda: _served_by(pair, pair.ams, "fra"), timeout=5.0, interval=0.1
        )
        assert response.headers["X-Outlast-Pop"] == "ams"
    finally:
        await connector.close()
    # Once the connection is gone the peer says so, and ams stops forwarding.
    gone = await eventually(lambda: _status(pair, pair.ams, 530), timeout=5.0, interval=0.1)
    assert gone.json()["error_code"] == 1033
    assert "nor at any PoP it can reach" in gone.json()["error"]


async def test_an_unreachable_peer_is_not_used(pair: Pair) -> None:
    connector = await register(pair.tls, pair.fra.tunnel_port, pair.tunnel)
    try:
        await eventually(lambda: pair.ams.peers.holders(pair.tunnel.tunnel_id) == ["fra"])
        await pair.fra.stop()
        response = await eventually(lambda: _status(pair, pair.ams, 530), timeout=5.0)
        assert response.json()["error_code"] == 1033
        assert not pair.ams.peers.reachable("fra")
    finally:
        await connector.close()


async def test_a_forwarded_request_is_never_forwarded_again(pair: Pair) -> None:
    """fra's peer listener gets a request 'from ams' while only ams holds a connection: fra must
    answer from its own (empty) registry, not send it back to ams."""
    connector = await register(pair.tls, pair.ams.tunnel_port, pair.tunnel)
    try:
        await eventually(lambda: pair.fra.peers.holders(pair.tunnel.tunnel_id) == ["ams"])
        assert pair.fra.peer_port is not None
        response = await pair.client.get(
            f"http://127.0.0.1:{pair.fra.peer_port}/loop",
            headers={"Host": HOST, FORWARDED_FROM_HEADER: "ams"},
        )
        assert response.status_code == 530
        assert response.json()["error_code"] == 1033
        # ... while a visitor at fra is forwarded to ams as usual.
        visitor = await pair.get(pair.fra)
        assert visitor.status_code == 200
        assert visitor.headers["X-Outlast-Tunnel-Pop"] == "ams"
        # The peer listener refuses requests that do not say which PoP forwarded them.
        bare = await pair.client.get(
            f"http://127.0.0.1:{pair.fra.peer_port}/x", headers={"Host": HOST}
        )
        assert bare.status_code == 400
    finally:
        await connector.close()


async def _served_by(pair: Pair, edge: EdgeServer, tunnel_pop: str) -> httpx.Response | None:
    response = await pair.get(edge)
    ok = response.status_code == 200 and response.headers.get("X-Outlast-Tunnel-Pop") == tunnel_pop
    return response if ok else None


async def _status(pair: Pair, edge: EdgeServer, status: int) -> httpx.Response | None:
    response = await pair.get(edge)
    return response if response.status_code == status else None
