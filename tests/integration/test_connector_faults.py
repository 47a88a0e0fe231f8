"""The connector process under faults: black-holed link, PoP outage and return, dial failures,
backoff, a tunnel deleted while running. Minimal edges from the wire's edge API, real TLS."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from harness.stack.ports import free_port
from reference.wire import RefusalCause, RegistrationResponse
from tests.integration.test_connector_process import (
    MiniEdge,
    Tunnel,
    origin_server,
    pops,
    run_connector,
    wait_until,
)
from tests.unit.test_wire_loopback import Relay, TlsMaterial


async def test_black_holed_link_is_detected_replaced_and_rebalanced_after_heal(
    tmp_path: Path,
) -> None:
    tls = TlsMaterial.create(tmp_path / "tls")
    tunnel = Tunnel.create(tmp_path)
    async with origin_server() as origin, pops(tls, tunnel, "ams", "fra") as (ams, fra):
        relay = await Relay("127.0.0.1", ams.port).start()
        try:
            async with run_connector(
                tmp_path, tunnel, tls, [f"127.0.0.1:{relay.port}", fra.address], url=origin
            ) as connector:
                await connector.wait_ready(4)
                assert (len(ams.live()), len(fra.live())) == (2, 2)
                doomed = ams.live()

                relay.blackholed = True  # no FIN, no RST: packets just vanish
                started = time.monotonic()
                locations: list[str] = []

                async def all_on_fra() -> bool:
                    nonlocal locations
                    locations = [str(c["location"]) for c in await connector.connections()]
                    return locations == ["fra"] * 4

                while not await all_on_fra():
                    assert time.monotonic() - started < 15, f"not replaced: {locations}"
                    await asyncio.sleep(0.05)
                replaced_after = time.monotonic() - started
                reasons = [await asyncio.wait_for(t.wait_closed(), 5) for t in doomed]
                assert reasons == ["heartbeat timeout", "heartbeat timeout"]
                status, _, _ = await fra.visit("GET", "/after-blackhole")
                assert status == 200
                text = await connector.metrics()
                assert "outlast_tunnel_heartbeat_timeouts_total 2.0" in text
                print(f"black hole detected and replaced after {replaced_after:.2f} s")

                relay.blackholed = False  # healed: the connector spreads again
                await wait_until(
                    lambda: (len(ams.live()), len(fra.live())) == (2, 2), 30, "2/2 spread"
                )
                await connector.wait_ready(4)
                assert sorted(str(c["location"]) for c in await connector.connections()) == [
                    "ams",
                    "ams",
                    "fra",
                    "fra",
                ]
                moved = [e for e in connector.events() if e.get("event") == "rebalance"]
                assert moved, "the spread came back through rebalancing moves"
        finally:
            await relay.aclose()


async def test_dial_failure_moves_to_another_edge(tmp_path: Path) -> None:
    tls = TlsMaterial.create(tmp_path / "tls")
    tunnel = Tunnel.create(tmp_path)
    dead = f"127.0.0.1:{free_port()}"
    async with origin_server() as origin, pops(tls, tunnel, "fra") as (fra,):
        async with run_connector(
            tmp_path, tunnel, tls, [dead, fra.address], url=origin
        ) as connector:
            await connector.wait_ready(4)
            assert len(fra.live()) == 4
            text = await connector.metrics()
            assert 'outlast_tunnel_register_fail_total{reason="dial_error"}' in text
            failed = [e for e in connector.events() if e.get("event") == "register_failed"]
            assert failed and all(e["edge"] == dead for e in failed)


async def test_ready_and_metrics_follow_a_full_outage_and_recovery(tmp_path: Path) -> None:
    tls = TlsMaterial.create(tmp_path / "tls")
    tunnel = Tunnel.create(tmp_path)
    async with origin_server() as origin, pops(tls, tunnel, "ams", "fra") as (ams, fra):
        async with run_connector(
            tmp_path, tunnel, tls, [ams.address, fra.address], url=origin
        ) as connector:
            await connector.wait_ready(4)
            assert "outlast_tunnel_ha_connections 4.0" in await connector.metrics()

            await ams.stop()
            await fra.stop()
            await connector.wait_ready(0, timeout=15)
            status, body = await connector.ready()
            assert status == 503 and body["readyConnections"] == 0
            assert "outlast_tunnel_ha_connections 0.0" in await connector.metrics()
            await asyncio.sleep(3)  # the backoff grows towards its cap meanwhile

            await ams.start()  # same ports again
            await fra.start()
            restarted = time.monotonic()
            await connector.wait_ready(4, timeout=20)
            recovered_after = time.monotonic() - restarted
            print(f"4/4 connections back {recovered_after:.2f} s after both PoPs returned")
            assert recovered_after < 10, "backoff cap 2 s: the healed edges serve again quickly"
            await wait_until(lambda: (len(ams.live()), len(fra.live())) == (2, 2), 30, "2/2 spread")
            status, _, _ = await ams.visit("GET", "/back")
            assert status == 200
            text = await connector.metrics()
            assert "outlast_tunnel_ha_connections 4.0" in text
            assert "outlast_tunnel_register_success_total" in text


async def test_backoff_bounds_the_retry_rate(tmp_path: Path) -> None:
    tls = TlsMaterial.create(tmp_path / "tls")
    tunnel = Tunnel.create(tmp_path)
    accepted: Counter[str] = Counter()

    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted["dials"] += 1
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with run_connector(tmp_path, tunnel, tls, [f"127.0.0.1:{port}"]) as connector:
            await asyncio.sleep(1.0)
            before = accepted["dials"]
            await asyncio.sleep(4.0)
            during = accepted["dials"] - before
            connector.process.check_running()
        # 4 slots whose waits are U(0, 0.8..2 s): about 2-4 dials per slot in 4 s. Without a
        # backoff it would be thousands; without retrying at all, none.
        assert 4 <= during <= 60, during
    finally:
        server.close()


async def test_tunnel_deleted_while_running_stops_the_connector(tmp_path: Path) -> None:
    tls = TlsMaterial.create(tmp_path / "tls")
    tunnel = Tunnel.create(tmp_path)
    async with origin_server() as origin, pops(tls, tunnel, "ams") as (ams,):
        async with run_connector(
            tmp_path, tunnel, tls, [ams.address], url=origin, extra=["--ha-connections", "2"]
        ) as connector:
            await connector.wait_ready(2)
            ams.override = lambda request: RegistrationResponse.refusal(
                RefusalCause.TUNNEL_DELETED, should_retry=False
            )
            started = time.monotonic()
            for edge_tunnel in ams.live():
                await edge_tunnel.close(RefusalCause.TUNNEL_DELETED, should_retry=False)
            assert await connector.process.wait(15) == 1
            assert time.monotonic() - started < 5
        assert "was deleted" in connector.log()


async def test_remembered_edges_are_used_without_edge_flags(tmp_path: Path) -> None:
    tls = TlsMaterial.create(tmp_path / "tls")
    tunnel = Tunnel.create(tmp_path)
    async with origin_server() as origin, pops(tls, tunnel, "ams") as (ams,):
        async with run_connector(
            tmp_path, tunnel, tls, [ams.address], url=origin, extra=["--ha-connections", "1"]
        ) as connector:
            await connector.wait_ready(1)
        async with run_connector(
            tmp_path, tunnel, tls, [], url=origin, extra=["--ha-connections", "1"]
        ) as connector:
            await connector.wait_ready(1)
            assert len(MiniEdge.live(ams)) == 1
