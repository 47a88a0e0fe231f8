"""Fast reset between examples: undo every fault, start what is down, wait for steady state.

Steady state: every component running, every tunnel served through every PoP, and every
connector at full HA spread over ``min(2, PoPs)`` PoPs. A reset takes well under a second when
the previous example left the system healthy, a few seconds when connections must come back.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from harness.faultproxy.client import FaultProxyClient
from harness.probes.metrics import parse_connector
from harness.stack.local import LocalStack

START_ORDER = ("broker", "controlplane", "origin")


class SteadyStateError(RuntimeError):
    """The stack did not return to steady state in time."""


@dataclass(frozen=True)
class ResetReport:
    """What a reset did and how long it took."""

    seconds: float
    started: tuple[str, ...]
    resumed: tuple[str, ...]


async def _connector_state(client: httpx.AsyncClient, url: str, tunnel: str) -> tuple[int, int]:
    response = await client.get(url)
    response.raise_for_status()
    state = parse_connector(response.text, tunnel)
    return int(state["ha_connections"]), len(set(state["locations"].values()))


async def wait_full_ha(stack: LocalStack, timeout: float) -> None:
    """Wait until every connector reports full HA spread over ``min(2, PoPs)`` PoPs."""
    topology = stack.topology
    wanted_pops = min(2, len(topology.pops))
    wanted = {t.name: _ha_of(stack) for t in topology.tunnels}
    deadline = time.monotonic() + timeout
    last: dict[str, tuple[int, int]] = {}
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
        while True:
            for tunnel in topology.tunnels:
                url = stack.connector_metrics_url(tunnel.name) + "/metrics"
                try:
                    last[tunnel.name] = await _connector_state(client, url, tunnel.name)
                except (httpx.HTTPError, ValueError):
                    last[tunnel.name] = (0, 0)
            if all(
                last[name][0] >= wanted[name] and last[name][1] >= wanted_pops for name in wanted
            ):
                return
            if time.monotonic() >= deadline:
                shown = ", ".join(
                    f"{name}: {ha}/{wanted[name]} connections over {pops} PoP(s)"
                    for name, (ha, pops) in last.items()
                )
                raise SteadyStateError(f"no full HA after {timeout:g} s ({shown})")
            await asyncio.sleep(0.2)


def _ha_of(stack: LocalStack) -> int:
    """HA connections the stack's connectors run with (``--ha-connections``, default 4)."""
    args = list(stack.connector_args)
    if "--ha-connections" in args:
        return int(args[args.index("--ha-connections") + 1])
    return 4


async def reset_stack(stack: LocalStack, timeout: float = 60.0) -> ResetReport:
    """Undo everything an example may have left behind and wait for steady state."""
    started_at = time.monotonic()
    async with FaultProxyClient(stack.faultproxy_url) as faultproxy:
        await faultproxy.reset()
    resumed: list[str] = []
    started: list[str] = []
    for name, process in stack.processes.items():
        if process.paused:
            process.resume()
            resumed.append(name)
    topology = stack.topology
    order = [
        *START_ORDER,
        *(f"edge-{pop}" for pop in topology.pops),
        *(t.connector for t in topology.tunnels),
    ]
    for name in order:
        stopped = stack.processes.get(name)
        if stopped is not None and not stopped.running:
            await stopped.start()
            started.append(name)
    deadline = time.monotonic() + timeout
    try:
        for tunnel in topology.tunnels:
            await stack.wait_serving(tunnel, timeout=max(1.0, deadline - time.monotonic()))
    except Exception as exc:
        raise SteadyStateError(f"tunnels not served through every PoP: {exc}") from exc
    await wait_full_ha(stack, max(1.0, deadline - time.monotonic()))
    return ResetReport(round(time.monotonic() - started_at, 3), tuple(started), tuple(resumed))
