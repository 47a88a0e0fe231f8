"""A real ``outlast serve edge`` process with a real mosquitto and real TLS."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import aiomqtt
import httpx
import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from harness.stack.readiness import wait_http
from reference.config_topics import edge_connections_topic, tunnel_target
from reference.wire import RefusalCause, RegistrationRefused
from tests.integration.test_edge_support import (
    ConfigWorld,
    EdgePorts,
    TunnelCreds,
    edge_process,
    eventually,
    make_tls,
    metric_value,
    publish,
    register,
    running_mosquitto,
    signed,
)

pytestmark = pytest.mark.timeout(90)


async def dns_ask(port: int, name: str, qtype: str) -> DNSRecord | None:
    """One UDP query; None if no reply within 1 s."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Reply(loop), remote_addr=("127.0.0.1", port)
    )
    try:
        transport.sendto(bytes(DNSRecord.question(name, qtype).pack()))
        try:
            return DNSRecord.parse(await asyncio.wait_for(protocol.reply, 1.0))
        except TimeoutError:
            return None
    finally:
        transport.close()


class _Reply(asyncio.DatagramProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.reply: asyncio.Future[bytes] = loop.create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.reply.done():
            self.reply.set_result(data)


async def cname_of(port: int, name: str) -> str | None:
    reply = await dns_ask(port, name, "CNAME")
    if reply is None or reply.header.rcode != RCODE.NOERROR or not reply.rr:
        return None
    assert QTYPE[reply.rr[0].rtype] == "CNAME"
    return str(reply.rr[0].rdata).rstrip(".")


async def scrape(ports: EdgePorts) -> str:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        return (await client.get(f"http://127.0.0.1:{ports.metrics}/metrics")).text


async def test_edge_process_end_to_end(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    ports = EdgePorts()
    cfg = ConfigWorld()
    tunnel = TunnelCreds()
    stranger = TunnelCreds()  # another account with its own tunnel
    proofs: list[str] = []
    async with running_mosquitto(tmp_path / "broker") as broker:
        edge = edge_process("ams", ports, broker.port, tmp_path / "cache", tls, tmp_path / "e.log")
        async with edge:
            await wait_http(f"http://127.0.0.1:{ports.metrics}/ready", process=edge)
            assert await cname_of(ports.dns, "app.example.com") is None

            # Configuration arrives -> DNS answers.
            await publish(
                broker.port,
                cfg.zone(tunnel.account_tag),
                cfg.tunnel(tunnel),
                cfg.record("app.example.com", tunnel),
                cfg.tunnel(stranger),
            )
            target = tunnel_target(tunnel.tunnel_id)
            assert await eventually(lambda: cname_of(ports.dns, "app.example.com")) == target
            a_reply = await dns_ask(ports.dns, "app.example.com", "A")
            assert a_reply is not None
            assert [QTYPE[rr.rtype] for rr in a_reply.rr] == ["CNAME", "A"]
            assert str(a_reply.rr[1].rdata) == "127.0.0.1"

            # A registration over TLS, then a visitor request through it.
            connector = await register(tls, ports.tunnel, tunnel, sent_proofs=proofs)
            assert connector.location == "ams"
            async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
                visitor = f"http://127.0.0.1:{ports.visitor}"
                response = await client.get(visitor + "/x", headers={"Host": "app.example.com"})
                assert response.status_code == 200
                assert response.headers["X-Outlast-Pop"] == "ams"
                missing = await client.get(visitor + "/", headers={"Host": "no.example.com"})
                assert missing.json()["error_code"] == 1001

            # Refusals: wrong secret and another account are permanent, unknown is retryable.
            with pytest.raises(RegistrationRefused) as wrong:
                await register(tls, ports.tunnel, tunnel, secret=b"w" * 32, sent_proofs=proofs)
            assert wrong.value.response.should_retry is False
            assert wrong.value.response.cause == RefusalCause.INVALID_SECRET
            # Issue 21, item 1: the verifier read off the broker makes a right proof, but
            # the edge wants the secret that hashes to it.
            with pytest.raises(RegistrationRefused) as stolen:
                await register(
                    tls,
                    ports.tunnel,
                    tunnel,
                    secret=b"w" * 32,
                    verifier=tunnel.verifier,
                    sent_proofs=proofs,
                )
            assert stolen.value.response.should_retry is False
            assert stolen.value.response.cause == RefusalCause.INVALID_SECRET
            with pytest.raises(RegistrationRefused) as foreign:
                await register(
                    tls,
                    ports.tunnel,
                    tunnel,
                    account_tag=stranger.account_tag,
                    secret=stranger.secret,
                    sent_proofs=proofs,
                )
            assert foreign.value.response.should_retry is False
            assert foreign.value.response.cause is not None
            assert foreign.value.response.cause.startswith("unauthorized")
            with pytest.raises(RegistrationRefused) as unknown:
                await register(tls, ports.tunnel, TunnelCreds(), sent_proofs=proofs)
            assert unknown.value.response.should_retry is True
            assert unknown.value.response.retry_after == 2.0

            metrics = await scrape(ports)
            assert (
                metric_value(
                    metrics, "outlast_edge_tunnel_connections", {"tunnel_id": tunnel.tunnel_id}
                )
                == 1
            )
            assert (
                metric_value(
                    metrics, "outlast_edge_registrations_total", {"result": "ok", "reason": "ok"}
                )
                == 1
            )
            for reason, count in (
                ("invalid_secret", 2),
                ("account_mismatch", 1),
                ("unknown_tunnel", 1),
            ):
                assert (
                    metric_value(
                        metrics,
                        "outlast_edge_registrations_total",
                        {"result": "failed", "reason": reason},
                    )
                    == count
                ), reason
            assert (
                metric_value(metrics, "outlast_edge_visitor_requests_total", {"status": "200"}) == 1
            )
            assert metric_value(metrics, "outlast_edge_config_version") == cfg.version
            assert (
                metric_value(metrics, "outlast_edge_control_plane_calls_total", {"kind": "named"})
                == 0
            )
            age = metric_value(metrics, "outlast_edge_config_age_seconds")
            assert age is not None and 0 <= age < 60

            # Tombstone: the connection is closed within 1 s, re-registration is permanent.
            async with aiomqtt.Client("127.0.0.1", broker.port) as cp:
                topic, payload = cfg.tunnel(tunnel, deleted=True)
                started = time.monotonic()
                await cp.publish(topic, signed(topic, payload), qos=1, retain=True)
                reason = await asyncio.wait_for(connector.wait_closed(), 5)
                closed_after = time.monotonic() - started
            assert closed_after < 1.0, f"deleted tunnel's connection closed after {closed_after}"
            assert connector.disconnect is not None
            assert connector.disconnect.should_retry is False
            assert "deleted" in reason
            with pytest.raises(RegistrationRefused) as deleted:
                await register(tls, ports.tunnel, tunnel, sent_proofs=proofs)
            assert deleted.value.response.should_retry is False
            assert "deleted" in (deleted.value.response.cause or "")
            metrics = await scrape(ports)
            assert (
                metric_value(
                    metrics, "outlast_edge_tunnel_connections", {"tunnel_id": tunnel.tunnel_id}
                )
                is None
            )
            assert metric_value(metrics, "outlast_edge_connections") == 0
            # The DNS record is persistent: it still answers after the tunnel is gone.
            assert await cname_of(ports.dns, "app.example.com") == target

    # Logs never contain secrets, proofs or verifiers.
    log = (tmp_path / "e.log").read_text()
    assert "Registered tunnel connection" in log and "registration refused" in log
    for creds in (tunnel, stranger):
        for secret_form in (
            creds.secret.hex(),
            base64.b64encode(creds.secret).decode(),
            creds.verifier,
        ):
            assert secret_form not in log
    assert proofs and not any(proof in log for proof in proofs)


async def test_restart_with_broker_down_serves_from_cache(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    ports = EdgePorts()
    cfg = ConfigWorld()
    tunnel = TunnelCreds()
    cache_dir = tmp_path / "cache"
    async with running_mosquitto(tmp_path / "broker") as broker:
        edge = edge_process("fra", ports, broker.port, cache_dir, tls, tmp_path / "e1.log")
        async with edge:
            await wait_http(f"http://127.0.0.1:{ports.metrics}/ready", process=edge)
            await publish(
                broker.port,
                cfg.zone(tunnel.account_tag),
                cfg.tunnel(tunnel),
                cfg.record("app.example.com", tunnel),
            )

            async def persisted() -> bool:
                value = metric_value(await scrape(ports), "outlast_edge_config_persisted_version")
                return value == cfg.version

            await eventually(persisted)
            connector = await register(tls, ports.tunnel, tunnel)
            async with aiomqtt.Client("127.0.0.1", broker.port) as watcher:
                await watcher.subscribe(edge_connections_topic("fra"), qos=1)
                await edge.kill()  # a crash: no graceful shutdown; the MQTT will fires

                async def offline_snapshot() -> dict[str, object]:
                    async for message in watcher.messages:
                        snapshot: dict[str, object] = json.loads(bytes(message.payload))
                        if snapshot["online"] is False:
                            return snapshot
                    raise AssertionError("subscription ended")

                snapshot = await asyncio.wait_for(offline_snapshot(), 10)
            assert snapshot == {"pop": "fra", "online": False, "connections": []}
            await asyncio.wait_for(connector.wait_closed(), 10)

        await broker.stop()  # control plane never ran; now the broker is down too
        edge = edge_process("fra", ports, broker.port, cache_dir, tls, tmp_path / "e2.log")
        async with edge:
            ready = await wait_http(f"http://127.0.0.1:{ports.metrics}/ready", process=edge)
            assert ready.json()["config_version"] == cfg.version
            assert ready.json()["broker_connected"] is False
            target = tunnel_target(tunnel.tunnel_id)
            assert await cname_of(ports.dns, "app.example.com") == target
            connector = await register(tls, ports.tunnel, tunnel)
            async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
                response = await client.get(
                    f"http://127.0.0.1:{ports.visitor}/", headers={"Host": "app.example.com"}
                )
            assert response.status_code == 200
            assert response.json()["host"] == "app.example.com"
            metrics = await scrape(ports)
            assert metric_value(metrics, "outlast_edge_broker_connected") == 0
            assert metric_value(metrics, "outlast_edge_config_version") == cfg.version
            assert (
                metric_value(
                    metrics, "outlast_edge_tunnel_connections", {"tunnel_id": tunnel.tunnel_id}
                )
                == 1
            )

            # The broker comes back: the edge reconnects on its own.
            await broker.start()

            async def broker_link_up() -> bool:
                return metric_value(await scrape(ports), "outlast_edge_broker_connected") == 1

            await eventually(broker_link_up, timeout=20)
            await connector.close()
