"""A named tunnel reconnects without its control plane, and never even asks it.

Phase 1 keeps the control plane UP while both edges restart (every connector connection drops):
its request counter must not move, so "no control-plane call" is measured, not assumed.
Phase 2 stops the control plane and the broker: traffic continues; both edges restart again
(from their caches); the connector re-registers and serves while both are still down.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.stack.local import LocalStack

pytestmark = pytest.mark.timeout(180)


def _total(text: str, family_name: str) -> float:
    families = [f for f in text_string_to_metric_families(text) if f.name == family_name]
    assert families, f"metric {family_name} not exposed: the check would prove nothing"
    return sum(s.value for f in families for s in f.samples if s.name.endswith("_total"))


async def _serves_everywhere(client: httpx.AsyncClient, stack: LocalStack) -> None:
    host = stack.topology.tunnels[0].hostname
    for pop in stack.topology.pops:
        response = await client.get(f"{stack.visitor_url(pop)}/check", headers={"Host": host})
        assert response.status_code == 200, f"{pop}: {response.status_code} {response.text}"
        assert response.json()["origin"] == "origin"


async def _restart_edges(stack: LocalStack) -> None:
    await asyncio.gather(*(stack.restart(f"edge-{pop}") for pop in stack.topology.pops))
    await stack.wait_serving(stack.topology.tunnels[0], timeout=30)


async def test_named_tunnel_reconnects_with_zero_control_plane_requests(tmp_path: Path) -> None:
    async with LocalStack(tmp_path / "stack") as stack:
        tunnel = stack.topology.tunnels[0]
        connector = stack.processes[tunnel.connector]
        assert stack.api_url.split("//")[1] not in " ".join(connector.argv), (
            "the connector must not even know the control plane's address"
        )
        edge_metrics = [stack.endpoints()["pops"][p]["metrics_url"] for p in stack.topology.pops]
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            before = _total(
                (await client.get(f"{stack.api_url}/metrics")).text,
                "outlast_controlplane_http_requests",
            )
            assert before > 0, "the stack's own bootstrap calls must show in the counter"

            # Phase 1: control plane up, every tunnel connection dropped by edge restarts.
            await _restart_edges(stack)
            await _serves_everywhere(client, stack)
            after = _total(
                (await client.get(f"{stack.api_url}/metrics")).text,
                "outlast_controlplane_http_requests",
            )
            assert after == before, f"named reconnects made {after - before} control-plane requests"

            # Phase 2: control plane and broker down; traffic keeps flowing...
            await stack.stop("controlplane")
            await stack.stop("broker")
            await _serves_everywhere(client, stack)
            # ...and survives every connection dropping again, edges serving from their caches.
            pid = connector.pid
            await _restart_edges(stack)
            await _serves_everywhere(client, stack)
            assert connector.pid == pid and connector.running, "the connector itself kept running"
            for url in edge_metrics:
                text = (await client.get(url)).text
                assert _total(text, "outlast_edge_control_plane_calls") == 0, url
