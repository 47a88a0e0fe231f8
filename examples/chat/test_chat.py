"""The chat example survives its control plane going away with link drops (issue 16, item 3):
once through the pytest plugin (HTTP and a reconnecting WebSocket client), once as a scenario."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from examples.chat.client import ReconnectingClient
from harness.pytest_plugin import Faults, RunningStack, Traffic
from harness.runner import RunOptions, run_scenario
from harness.scenario import load_scenario

pytestmark = [pytest.mark.timeout(120)]

HERE = Path(__file__).parent
REQUESTS = [
    {"path": "/", "expect_status": 200, "expect_body_contains": "named tunnel", "static": True},
    {"method": "POST", "path": "/api/items", "body": '{"a": 1}', "expect_status": 201},
    {"ws": "/ws", "send": "ping", "expect": "pong"},
]


@contextmanager
def chat_client(stack: RunningStack) -> Iterator[ReconnectingClient]:
    """The example's client on its own thread and loop, talking to ``/ws`` via the anycast."""
    url = stack.visitor_url().replace("http", "ws", 1) + "/ws"
    client = ReconnectingClient(url, stack.topology.tunnels[0].hostname)
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(client.run(stop),))
    thread.start()
    try:
        yield client
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def wait_for_pong(client: ReconnectingClient, after: float, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while client.last_pong <= after:
        assert time.monotonic() < deadline, f"no pong since the heal: {client.errors[-3:]}"
        time.sleep(0.05)


def test_chat_survives_control_plane_outage_with_link_drops(
    outlast_stack: RunningStack, outlast_faults: Faults, outlast_traffic: Traffic
) -> None:
    with chat_client(outlast_stack) as client:
        wait_for_pong(client, 0.0)
        with outlast_faults.component_down("controlplane"), outlast_faults.component_down(
            "broker"
        ):
            results = []
            for link in ("conn-ams", "conn-fra"):
                with outlast_faults.link_down(link):
                    results.append(outlast_traffic.measure(1.5, rate=25, requests=REQUESTS))
                healed = time.monotonic()
                results.append(outlast_traffic.measure(1, rate=25, requests=REQUESTS))
                wait_for_pong(client, healed)
    sent = sum(r.ok + r.failed + r.indeterminate for r in results)
    ok = sum(r.ok for r in results)
    assert sent >= 100 and ok / sent >= 0.97, [(r.ok, r.failed, r.indeterminate) for r in results]
    assert client.connects >= 2, "each link drop cuts the client's connection on one of them"
    assert client.pongs > 10


async def test_chat_scenario_passes(tmp_path: Path) -> None:
    scenario = load_scenario(HERE / "scenario.yaml")
    report = await run_scenario(scenario, RunOptions(report_dir=tmp_path))
    failed = [(c["name"], c["detail"]) for c in report.summary["checks"] if not c["passed"]]
    assert report.exit_code == 0, (report.summary["run"]["error"], failed)
    assert report.summary["sla"]["requests"] >= 90
    applied = report.summary["integrity"]["applied"]
    assert applied == ["status", "tunnel", "tunnel_digest", "body", "static_digest"]
    corruption = next(c for c in report.summary["checks"] if c["name"] == "no_corruption")
    assert corruption["data"]["basis"] == ["static_digest", "tunnel_digest"]
    assert corruption["data"]["tunnel_digest"]["verified"] > 0
