"""The edge network on real processes (LocalStack): forwarding between PoPs learnt without control
plane and broker, the anycast entry withdrawing a killed PoP, and connector replicas."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from harness.faultproxy.client import FaultProxyClient
from harness.stack.local import LocalStack
from harness.stack.topology import Topology, TunnelSpec
from tests.integration.test_edge_support import eventually, metric_value

pytestmark = pytest.mark.timeout(180)
HOST = "app.example.com"


async def _get(client: httpx.AsyncClient, url: str) -> httpx.Response | None:
    """One visitor GET on a fresh connection (each one is a new anycast flow)."""
    try:
        return await client.get(f"{url}/probe", headers={"Host": HOST, "Connection": "close"})
    except httpx.HTTPError:
        return None


async def _connections(client: httpx.AsyncClient, stack: LocalStack, pop: str) -> float:
    text = (await client.get(stack.pop_metrics_url(pop))).text
    return metric_value(text, "outlast_edge_connections") or 0.0


async def test_forwarding_is_learnt_without_control_plane_and_broker(tmp_path: Path) -> None:
    async with (
        LocalStack(tmp_path / "stack") as stack,
        httpx.AsyncClient(trust_env=False, timeout=5) as client,
        FaultProxyClient(stack.faultproxy_url) as faultproxy,
    ):
        await stack.stop("controlplane")
        await stack.stop("broker")
        # Every connection moves to fra: ams holds none of them.
        await (await faultproxy.get_proxy("conn-ams")).disable()
        await eventually(lambda: _zero_and_four(client, stack), timeout=20, interval=0.2)
        response = await _get(client, stack.visitor_url("ams"))
        assert response is not None and response.status_code == 200, response
        assert response.headers["X-Outlast-Pop"] == "ams"
        assert response.headers["X-Outlast-Tunnel-Pop"] == "fra"
        # Partitioned from fra, ams can no longer serve: 530 / 1033, not a hang.
        await (await faultproxy.get_proxy("pop-ams-fra")).disable()
        refused = await eventually(
            lambda: _status(client, stack.visitor_url("ams"), 530), timeout=10, interval=0.1
        )
        assert refused.json()["error_code"] == 1033
        await (await faultproxy.get_proxy("pop-ams-fra")).enable()
        healed = await eventually(
            lambda: _status(client, stack.visitor_url("ams"), 200), timeout=10, interval=0.1
        )
        assert healed.headers["X-Outlast-Tunnel-Pop"] == "fra"


async def _zero_and_four(client: httpx.AsyncClient, stack: LocalStack) -> bool:
    return (await _connections(client, stack, "ams"), await _connections(client, stack, "fra")) == (
        0,
        4,
    )


async def _status(client: httpx.AsyncClient, url: str, status: int) -> httpx.Response | None:
    response = await _get(client, url)
    return response if response is not None and response.status_code == status else None


async def test_anycast_withdraws_a_killed_pop_after_the_convergence_delay(tmp_path: Path) -> None:
    async with (
        LocalStack(tmp_path / "stack") as stack,
        httpx.AsyncClient(trust_env=False, timeout=5) as client,
    ):
        entry = stack.anycast_url
        landed = {
            r.headers["X-Outlast-Pop"] for r in [await _get(client, entry) for _ in range(20)] if r
        }
        assert landed == {"ams", "fra"}, "both PoPs must receive visitors while both are healthy"
        await stack.kill("edge-ams")
        killed = time.monotonic()
        failures_after: list[float] = []
        fra_only_since: float | None = None
        while time.monotonic() - killed < 8 and fra_only_since is None:
            batch = [await _get(client, entry) for _ in range(10)]
            now = time.monotonic() - killed
            bad = [r for r in batch if r is None or r.status_code != 200]
            if bad:
                failures_after.append(now)
            elif all(r and r.headers["X-Outlast-Pop"] == "fra" for r in batch):
                fra_only_since = now
        assert fra_only_since is not None, "the anycast entry never stopped sending visitors to ams"
        # Withdrawal takes the convergence delay (1 s) plus a failed health check; margins for CI.
        assert fra_only_since < 1.0 + 3.0, fra_only_since
        await eventually(lambda: _routed(client, stack, "ams", False), timeout=4, interval=0.1)
        assert all(
            r and r.headers["X-Outlast-Pop"] == "fra"
            for r in [await _get(client, entry) for _ in range(20)]
        )
        # Back after a restart (plus the announce delay).
        await stack.start("edge-ams")
        await eventually(lambda: _lands_on(client, entry, "ams"), timeout=15, interval=0.1)


async def _routed(client: httpx.AsyncClient, stack: LocalStack, pop: str, routed: bool) -> bool:
    pops = (await client.get(f"{stack.anycast_control_url}/pops")).json()["pops"]
    return next(p for p in pops if p["name"] == pop)["routed"] is routed


async def _lands_on(client: httpx.AsyncClient, url: str, pop: str) -> bool:
    for _ in range(10):
        response = await _get(client, url)
        if response is not None and response.headers.get("X-Outlast-Pop") == pop:
            return True
    return False


async def test_replicas_share_the_load_and_one_can_stop(tmp_path: Path) -> None:
    topology = Topology(tunnels=(TunnelSpec("web", HOST, replicas=2),))
    async with (
        LocalStack(tmp_path / "stack", topology) as stack,
        httpx.AsyncClient(trust_env=False, timeout=5) as client,
    ):
        assert {"connector-web", "connector-web-2"} <= set(stack.processes)
        await eventually(lambda: _total_connections(client, stack, 8), timeout=20, interval=0.2)
        served_by = set()
        for _ in range(40):
            response = await _get(client, stack.anycast_url)
            assert response is not None and response.status_code == 200
            served_by.add(response.headers["X-Outlast-Connection"])
        assert len(served_by) > 4, "requests must be spread over both replicas' connections"
        # One replica stops (drains); visitors keep being served by the other.
        stopping = asyncio.create_task(stack.stop("connector-web"))
        results = []
        while not stopping.done():
            results.append(await _get(client, stack.anycast_url))
        await stopping
        results += [await _get(client, stack.anycast_url) for _ in range(10)]
        assert all(r is not None and r.status_code == 200 for r in results), [
            (r.status_code, r.text[:100]) if r else None
            for r in results
            if not r or r.status_code != 200
        ]
        await eventually(lambda: _total_connections(client, stack, 4), timeout=10, interval=0.2)


async def _total_connections(client: httpx.AsyncClient, stack: LocalStack, wanted: int) -> bool:
    counts = [await _connections(client, stack, pop) for pop in stack.topology.pops]
    return sum(counts) == wanted


async def test_a_withdrawn_pop_gets_no_new_visitors_but_keeps_serving(tmp_path: Path) -> None:
    from harness.faults.base import FaultContext, make_fault

    async with (
        LocalStack(tmp_path / "stack") as stack,
        httpx.AsyncClient(trust_env=False, timeout=5) as client,
        FaultProxyClient(stack.faultproxy_url) as faultproxy,
    ):
        ctx = FaultContext(stack, faultproxy, stack.api_url, str(stack.admin_token_file))
        fault = make_fault("pop_withdraw", "ams", {})
        await fault.inject(ctx)
        withdrawn = time.monotonic()
        await eventually(
            lambda: _only_lands_on(client, stack.anycast_url, "fra"), timeout=10, interval=0.1
        )
        assert time.monotonic() - withdrawn >= 0.9, "withdrawal must take the convergence delay"
        # ams still runs and serves through its own address.
        direct = await _get(client, stack.visitor_url("ams"))
        assert direct is not None and direct.status_code == 200
        await fault.heal(ctx)
        await eventually(lambda: _lands_on(client, stack.anycast_url, "ams"), timeout=10)


async def _only_lands_on(client: httpx.AsyncClient, url: str, pop: str) -> bool:
    answers = [await _get(client, url) for _ in range(12)]
    return all(r is not None and r.headers.get("X-Outlast-Pop") == pop for r in answers)
