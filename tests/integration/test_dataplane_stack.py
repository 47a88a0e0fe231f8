"""The connector's data plane through the real stack: real edges (`outlast serve edge`), broker,
control plane, origin and fault proxy (`harness.stack.local.LocalStack`), real TLS.

Covers the connector's part of issue 3's "Done when": WebSocket round trip, POST digests intact,
a black-holed connection detected and replaced (and the spread restored after the heal),
/ready and /metrics following the connections, SIGTERM drain.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import time
from pathlib import Path

import aiohttp
import httpx
import pytest

from harness.faultproxy.client import FaultProxyClient
from harness.stack.local import LocalStack

pytestmark = pytest.mark.timeout(240)

CONNECTOR_ARGS = (
    "--heartbeat-interval",
    "0.5",
    "--heartbeat-timeout",
    "2",
    "--rebalance-interval",
    "1",
    "--grace-period",
    "10",
)


async def connections(client: httpx.AsyncClient, stack: LocalStack) -> list[dict[str, object]]:
    response = await client.get(f"{stack.connector_metrics_url('web')}/connections")
    return list(response.json()["connections"])


async def locations(client: httpx.AsyncClient, stack: LocalStack) -> list[str]:
    return sorted(str(c["location"]) for c in await connections(client, stack))


async def wait_locations(
    client: httpx.AsyncClient, stack: LocalStack, wanted: list[str], timeout: float
) -> float:
    started = time.monotonic()
    seen: list[str] = []
    while time.monotonic() - started < timeout:
        seen = await locations(client, stack)
        if seen == wanted:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"connections never at {wanted} (last {seen})")


async def test_connector_through_real_edges(tmp_path: Path) -> None:
    async with LocalStack(tmp_path / "stack", connector_args=CONNECTOR_ARGS) as stack:
        host = stack.topology.tunnels[0].hostname
        metrics_url = stack.connector_metrics_url("web")
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            await wait_locations(client, stack, ["ams", "ams", "fra", "fra"], 30)
            ready = (await client.get(f"{metrics_url}/ready")).json()
            assert ready["readyConnections"] == 4

            # POST bodies arrive intact through both PoPs.
            for pop in ("ams", "fra"):
                body = os.urandom(2_000_000)
                response = await client.post(
                    f"{stack.visitor_url(pop)}/upload",
                    content=body,
                    headers={"Host": host, "X-Request-Id": f"post-{pop}"},
                )
                assert response.status_code == 200, response.text
                payload = response.json()
                assert payload["body_sha256"] == hashlib.sha256(body).hexdigest()
                assert payload["request_id"] == f"post-{pop}" and payload["origin"] == "origin"
                assert response.headers["x-body-sha256"] == hashlib.sha256(body).hexdigest()

            # WebSocket round trip.
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(
                    f"{stack.visitor_url('fra')}/ws", headers={"Host": host}
                ) as ws:
                    hello = json.loads(await ws.receive_str(timeout=10))
                    assert hello["type"] == "hello" and hello["origin"] == "origin"
                    await ws.send_str("through the tunnel ✓")
                    assert await ws.receive_str(timeout=10) == "through the tunnel ✓"
                    blob = os.urandom(100_000)
                    await ws.send_bytes(blob)
                    assert await ws.receive_bytes(timeout=10) == blob

            # Black-hole the connector -> ams link (both directions, no FIN, no RST).
            async with FaultProxyClient(stack.faultproxy_url) as fp:
                link = await fp.get_proxy("conn-ams")
                started = time.monotonic()
                async with (
                    link.toxic("timeout", timeout=0, stream="downstream", name="bh-down"),
                    link.toxic("timeout", timeout=0, stream="upstream", name="bh-up"),
                ):
                    replaced = await wait_locations(client, stack, ["fra"] * 4, 30)
                    print(f"black hole replaced after {replaced:.2f} s (heartbeat timeout 2 s)")
                    response = await client.get(
                        f"{stack.visitor_url('fra')}/during", headers={"Host": host}
                    )
                    assert response.status_code == 200
                    text = (await client.get(f"{metrics_url}/metrics")).text
                    assert "outlast_tunnel_heartbeat_timeouts_total 2.0" in text
                    assert "outlast_tunnel_ha_connections 4.0" in text
                healed = time.monotonic()
                spread = await wait_locations(client, stack, ["ams", "ams", "fra", "fra"], 60)
                print(
                    f"2/2 spread back {spread:.2f} s after the heal "
                    f"({healed - started:.2f} s black hole)"
                )

            # SIGTERM: unregister, drain the in-flight request, exit 0.
            slow = asyncio.ensure_future(
                client.get(f"{stack.visitor_url('ams')}/slow?delay=2", headers={"Host": host})
            )
            await asyncio.sleep(0.5)
            connector = stack.processes["connector-web"]
            connector.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 5
            while (await client.get(f"{metrics_url}/ready")).status_code != 503:
                assert time.monotonic() < deadline, "/ready never dropped"
                await asyncio.sleep(0.05)
            response = await asyncio.wait_for(slow, 20)
            assert response.status_code == 200, "the in-flight request was drained"
            assert await connector.wait(20) == 0
            after = await client.get(f"{stack.visitor_url('ams')}/", headers={"Host": host})
            assert after.status_code >= 500, "no connection left after the drain"


async def test_deleting_a_running_tunnel_stops_its_connector(tmp_path: Path) -> None:
    async with LocalStack(tmp_path / "stack", connector_args=CONNECTOR_ARGS) as stack:
        connector = stack.processes["connector-web"]
        started = time.monotonic()
        await stack._cli("tunnel", "--origincert", str(stack.origincert), "delete", "-f", "web")
        assert await connector.wait(30) == 1
        print(f"connector stopped {time.monotonic() - started:.2f} s after `tunnel delete -f`")
        log = connector.log_path.read_text()
        assert "was deleted" in log and "outlast tunnel create" in log
        secret = json.loads(stack.credentials_files["web"].read_text())["TunnelSecret"]
        assert secret not in log
