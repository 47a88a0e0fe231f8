"""The reference system on a real multi-node swarm: placement, faults through the orchestrator,
and nothing left behind."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from harness.stack.base import StackError
from harness.stack.swarm import SwarmStack
from harness.swarm.cluster import SwarmCluster

pytestmark = [
    pytest.mark.swarm,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(900),  # a node's engine restart and rejoin on a loaded 2-core machine
]
STATE = Path(os.environ.get("OUTLAST_SWARM_STATE", ".outlast/swarm"))


def _cluster() -> SwarmCluster:
    return SwarmCluster(STATE)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SwarmStack]:
    swarm = SwarmStack(tmp_path_factory.mktemp("swarm"), cluster=_cluster())
    await swarm.up()
    try:
        yield swarm
    finally:
        await swarm.down()
        assert not any(swarm.leftovers().values()), swarm.leftovers()


async def _served_by(url: str, hostname: str, tries: int = 1) -> str | None:
    """The PoP header of one visitor GET through ``url`` (None: not served)."""
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        for _ in range(tries):
            try:
                response = await client.get(f"{url}/", headers={"Host": hostname})
                if response.status_code == 200:
                    return response.headers.get("X-Outlast-Pop", "served")
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    return None


async def test_services_are_pinned_to_their_nodes(stack: SwarmStack) -> None:
    nodes = {
        t["service"].split("_", 1)[1]: t["node"]
        for t in stack.task_states()
        if t["state"] == "running"
    }
    assert nodes["edge-ams"] == "pop-ams"
    assert nodes["edge-fra"] == "pop-fra"
    assert nodes["connector"] == "connectors"
    assert nodes["controlplane"] not in ("pop-ams", "pop-fra", "connectors")


async def test_only_loopback_ports_are_published(stack: SwarmStack) -> None:
    client = stack.cluster.client
    for service in client.services.list(
        filters={"label": f"com.docker.stack.namespace={stack.project}"}
    ):
        assert not service.attrs.get("Endpoint", {}).get("Ports"), service.name
    gateway = client.containers.get(stack.gateway_name)
    bindings = [b for binds in gateway.attrs["HostConfig"]["PortBindings"].values() for b in binds]
    assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)


async def test_node_down_keeps_serving_through_the_other_pop(stack: SwarmStack) -> None:
    hostname = stack.tunnel.hostname
    assert await _served_by(stack.anycast_url, hostname, tries=20) is not None
    await stack.node_down("pop-ams")
    started = time.monotonic()
    try:
        # the visitor entry withdraws the dead PoP; fra keeps serving
        deadline = time.monotonic() + 60
        served = 0
        while time.monotonic() < deadline and served < 5:
            served += await _served_by(stack.visitor_url("fra"), hostname) is not None
        assert served >= 5, "fra stopped serving while the ams node was down"
        assert await _served_by(stack.visitor_url("ams"), hostname) is None
    finally:
        await stack.node_up("pop-ams")
    print(f"pop-ams down and back in {time.monotonic() - started:.1f} s")
    await stack.wait_serving(timeout=240)
    print(f"served through both PoPs again {time.monotonic() - started:.1f} s after node_down")


async def test_task_kill_is_restarted_by_swarm(stack: SwarmStack) -> None:
    _, before = await asyncio.to_thread(stack.task_container, "origin")
    await stack.task_kill("origin")
    deadline = time.monotonic() + 120
    while True:
        try:
            _, after = await asyncio.to_thread(stack.task_container, "origin")
            if after != before:
                break
        except StackError:
            pass
        assert time.monotonic() < deadline, "swarm did not start a new origin task"
        await asyncio.sleep(1)
    await stack.wait_serving(timeout=240)


async def test_missing_image_on_a_worker_is_named(tmp_path: Path) -> None:
    """Broken system: a worker without the Outlast image is refused, naming node and service."""
    cluster = _cluster()
    code, _ = await asyncio.to_thread(
        cluster.node_exec, "connectors", ["docker", "tag", "outlast:offline", "outlast:kept"]
    )
    assert code == 0
    await asyncio.to_thread(cluster.node_exec, "connectors", ["docker", "rmi", "outlast:offline"])
    try:
        swarm = SwarmStack(tmp_path, cluster=cluster)
        with pytest.raises(
            StackError, match=r"service (origin|connector).*node connectors.*missing"
        ):
            await swarm.up()
        assert not any(swarm.leftovers().values())
    finally:
        await asyncio.to_thread(
            cluster.node_exec, "connectors", ["docker", "tag", "outlast:kept", "outlast:offline"]
        )
        await asyncio.to_thread(cluster.node_exec, "connectors", ["docker", "rmi", "outlast:kept"])
