"""The real cloudflared as the stack's connector (LocalStack(connector="cloudflared")): 4 HA
connections over both PoPs through the fault proxy, visitors served with its tunnel tag, a
WebSocket through its transport, a link fault acting on it, and kill/start of its process."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import aiohttp
import httpx
import pytest

from harness.faultproxy.client import FaultProxyClient
from harness.probes.metrics import MetricsProbe, ScrapeTarget
from harness.stack.cloudflared import BUNDLED, edge_arguments
from harness.stack.contained_dns import can_contain
from harness.stack.local import LocalStack
from tests.integration.test_edge_support import eventually, metric_value

pytestmark = [
    pytest.mark.timeout(150),
    pytest.mark.skipif(
        not os.access(BUNDLED, os.X_OK),
        reason=f"the real cloudflared binary is not at {BUNDLED} (CI has it)",
    ),
]
HOST = "app.example.com"



def real_path(path: object) -> str:
    """``path`` with symlinks resolved (CI reaches the binary through a ``../shared`` link)."""
    return os.path.realpath(str(path))

def test_edge_list_repeats_each_link_alternating() -> None:
    assert edge_arguments(["A", "F"], 2) == ["--edge", "A", "--edge", "F"] * 2


async def _edge_connections(client: httpx.AsyncClient, stack: LocalStack, pop: str) -> float:
    text = (await client.get(stack.pop_metrics_url(pop))).text
    return metric_value(text, "outlast_edge_connections") or 0.0


async def _ready(client: httpx.AsyncClient, stack: LocalStack) -> int:
    try:
        response = await client.get(f"{stack.connector_metrics_url('web')}/ready")
    except httpx.HTTPError:
        return -1
    return int(response.json()["readyConnections"])


async def test_cloudflared_runs_the_named_tunnel_through_the_fault_proxy(tmp_path: Path) -> None:
    async with (
        LocalStack(tmp_path / "stack", connector="cloudflared") as stack,
        httpx.AsyncClient(trust_env=False, timeout=10) as client,
        FaultProxyClient(stack.faultproxy_url) as faultproxy,
    ):
        endpoints = stack.endpoints()
        tunnel = endpoints["tunnels"][0]
        assert endpoints["connector"]["kind"] == "cloudflared"
        assert endpoints["connector"]["version"].startswith("20")
        assert tunnel["connector_kind"] == "cloudflared"
        assert str(stack.cloudflared_binary) in stack.processes["connector-web"].argv
        creds = stack.home / "web.cloudflared.json"
        assert creds.stat().st_mode & 0o777 == 0o600
        assert json.loads(creds.read_text())["Endpoint"] == ""
        # Up means all four registered, two at each PoP (regions follow the PoPs).
        assert await _ready(client, stack) == 4
        assert [await _edge_connections(client, stack, p) for p in ("ams", "fra")] == [2, 2]

        got = await client.get(endpoints["visitor_url"] + "/x", headers={"Host": HOST})
        assert got.status_code == 200, got.text
        # cloudflared names the tunnel to the origin with the tag the stack gave it.
        assert got.json()["headers"]["cf-warp-tag-tunnel-id"] == tunnel["id"]

        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(endpoints["visitor_url"] + "/ws", headers={"Host": HOST}) as ws,
        ):
            hello = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
            assert hello["headers"]["cf-warp-tag-tunnel-id"] == tunnel["id"]
            blob = os.urandom(200_000)
            await ws.send_bytes(blob)
            await ws.send_str("héllo")
            assert (await asyncio.wait_for(ws.receive(), 10)).data == blob
            assert (await asyncio.wait_for(ws.receive(), 10)).data == "héllo"

        # The probe reads how many are registered from /ready, not cloudflared's gauge.
        probe_target = ScrapeTarget(
            "connector", "connector-web", tunnel["metrics_url"], "web", tunnel["ready_url"]
        )
        journal = _NullJournal()
        probe = MetricsProbe(journal, [probe_target], interval=1)  # type: ignore[arg-type]

        # A link fault acts on cloudflared's connections: ams loses all of them.
        await (await faultproxy.get_proxy("conn-ams")).disable()
        await eventually(
            lambda: _is(_edge_connections(client, stack, "ams"), 0.0), timeout=20, interval=0.2
        )
        await probe.scrape(client, probe_target)
        sample = journal.samples[-1]
        assert sample["ha_connections"] < 4, sample
        # (Not waited for: cloudflared redials the healed link after its supervisor's timer,
        # up to 20 s; docs/cloudflared.md. The fra connections serve what follows.)
        await (await faultproxy.get_proxy("conn-ams")).enable()

        # A graceful stop (SIGTERM) unregisters every connection but lets a request in flight
        # finish: the edge keeps a draining connection until cloudflared closes it.
        slow = asyncio.create_task(
            client.get(endpoints["visitor_url"] + "/slow?delay=1.5", headers={"Host": HOST})
        )
        await asyncio.sleep(0.5)
        await stack.stop("connector-web")
        finished = await slow
        assert finished.status_code == 200, finished.text
        await stack.start("connector-web")
        await eventually(lambda: _is(_ready(client, stack), 4), timeout=30, interval=0.2)

        # kill/start act on its process (in a mount namespace: unshare and sh exec into it).
        pid = stack.processes["connector-web"].pid
        assert os.readlink(f"/proc/{pid}/exe") == real_path(stack.cloudflared_binary)
        await stack.kill("connector-web")
        assert await _ready(client, stack) == -1
        await stack.start("connector-web")
        await eventually(lambda: _is(_ready(client, stack), 4), timeout=30, interval=0.2)
        _assert_dns_contained(stack)


def _assert_dns_contained(stack: LocalStack) -> None:
    """Every DNS query of cloudflared reached the stack's resolver; none went elsewhere."""
    dns = stack.endpoints()["cloudflared_dns"]
    ok, why = can_contain()
    if not ok:
        assert dns == {"contained": False, "reason": why}
        return
    assert dns["contained"], dns
    asked = {(q.name, q.qtype) for q in stack.cloudflared_resolver.queries}  # type: ignore[union-attr]
    assert ("cfd-features.argotunnel.com", "TXT") in asked, asked
    assert all(q.client.startswith("127.") for q in stack.cloudflared_resolver.queries)  # type: ignore[union-attr]
    log = stack.processes["connector-web"].log_path.read_text(errors="replace")
    # Go names the server a failed lookup went to: only the stack's resolver may appear.
    servers = set(re.findall(r"lookup \S+ on ([0-9a-f.:\[\]]+):", log))
    assert servers == {dns["resolver"]}, servers
    # The edge SRV lookup was answered: no DNS-over-TLS fallback to 1.1.1.1:853 was needed.
    assert ("_v2-origintunneld._tcp.argotunnel.com", "SRV") in asked
    assert "the DNS query failed" not in log
    assert "api.cloudflare.com" not in log and "1.1.1.1" not in log


async def _is(value: object, expected: object) -> bool:
    if asyncio.iscoroutine(value):
        value = await value
    return value == expected


class _NullJournal:
    """Collects the probe's samples instead of writing a journal."""

    def __init__(self) -> None:
        self.samples: list[dict[str, object]] = []

    def sample(
        self, kind: str, source: str, value: object = None, error: str | None = None
    ) -> None:
        assert error is None, error
        assert isinstance(value, dict)
        self.samples.append(value)
