"""Legacy (classic) tunnels on the real stack, next to a named one (every component a process).

* With the control plane up, a legacy connector registers with cert.pem alone: the edge asks the
  control plane, which creates the hostname's DNS record; the record goes away once the tunnel
  has had no connection for the grace period, and comes back with the next registration.
* With the control plane down, a legacy tunnel whose connections drop cannot come back (its
  connector keeps retrying), while the named tunnel does; it comes back once the control plane
  returns.
* Wrong, rolled and foreign tokens, and the zone apex, are refused with clear errors.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from dnslib import RCODE
from prometheus_client.parser import text_string_to_metric_families

from harness.faultproxy.client import FaultProxyClient
from harness.probes.dns import query
from harness.stack.local import LocalStack
from harness.stack.ports import free_port
from harness.stack.process import outlast_argv
from harness.stack.topology import Topology, TunnelSpec
from reference.config_topics import tunnel_target
from reference.connector.credentials import OriginCert
from reference.legacy_tunnel import legacy_tunnel_id
from tests.integration.controlplane_fixtures import outlast_cli

pytestmark = pytest.mark.timeout(180)

NAMED = TunnelSpec("web", "app.example.com")
LEGACY = TunnelSpec("old", "old.example.com", "legacy")
TOPOLOGY = Topology(tunnels=(NAMED, LEGACY))


async def eventually(
    probe: Callable[[], Awaitable[bool]], timeout: float, what: str, every: float = 0.2
) -> float:
    """Seconds until ``probe()`` is true; fails the test after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await probe():
            return time.monotonic() - started
        await asyncio.sleep(every)
    raise AssertionError(f"not within {timeout} s: {what}")


async def visit(client: httpx.AsyncClient, stack: LocalStack, pop: str, host: str) -> Any:
    try:
        return await client.get(f"{stack.visitor_url(pop)}/legacy-test", headers={"Host": host})
    except httpx.HTTPError:
        return None


async def serves(client: httpx.AsyncClient, stack: LocalStack, tunnel: TunnelSpec) -> bool:
    """Served at every PoP, by this tunnel."""
    for pop in stack.topology.pops:
        response = await visit(client, stack, pop, tunnel.hostname)
        if response is None or response.status_code != 200:
            return False
        served = response.json()["headers"].get("x-outlast-tunnel-id")
        assert served == stack.tunnel_ids[tunnel.name], f"misrouted at {pop}: {served}"
    return True


async def down_everywhere(client: httpx.AsyncClient, stack: LocalStack, host: str) -> bool:
    for pop in stack.topology.pops:
        response = await visit(client, stack, pop, host)
        if response is not None and response.status_code == 200:
            return False
    return True


async def records(client: httpx.AsyncClient, stack: LocalStack, token: str | None = None) -> dict:
    response = await client.get(
        f"{stack.api_url}/client/v4/zones/{stack.zone_id}/dns_records",
        headers={"Authorization": f"Bearer {token or stack.api_token}"},
    )
    return {r["name"]: r for r in response.json()["result"]}


def control_plane_calls(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "outlast_edge_control_plane_calls":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    found[sample.labels["kind"]] = sample.value
    assert set(found) == {"named", "legacy"}, "the metric must exist or the check proves nothing"
    return found


async def edge_calls(client: httpx.AsyncClient, stack: LocalStack) -> dict[str, float]:
    total = {"named": 0.0, "legacy": 0.0}
    for pop in stack.topology.pops:
        text = (await client.get(stack.endpoints()["pops"][pop]["metrics_url"])).text
        for kind, value in control_plane_calls(text).items():
            total[kind] += value
    return total


async def drop_connector_links(stack: LocalStack) -> None:
    """Every connector connection drops (both PoP links cut, then restored)."""
    async with FaultProxyClient(stack.faultproxy_url) as proxies:
        links = [await proxies.get_proxy(f"conn-{pop}") for pop in stack.topology.pops]
        for link in links:
            await link.disable()
        await asyncio.sleep(0.5)
        for link in links:
            await link.enable()


async def run_legacy_connector(
    stack: LocalStack, cert: Path, hostname: str, timeout: float = 40.0
) -> tuple[int | None, str]:
    """``outlast tunnel run --legacy`` until it exits (or ``timeout``); exit code and stderr."""
    args = [
        "tunnel",
        "--origincert",
        str(cert),
        "run",
        "--legacy",
        "--hostname",
        hostname,
        "--url",
        stack.endpoints()["origin_url"],
        "--edge-ca",
        str(stack.edge_ca_file),
        "--metrics",
        f"127.0.0.1:{free_port()}",
        "--state-dir",
        str(cert.parent / "state"),
    ]
    for pop in stack.topology.pops:
        args += ["--edge", stack.proxy_address(f"conn-{pop}")]
    env = dict(os.environ)
    env["OUTLAST_HOME"] = str(cert.parent)
    proc = await asyncio.create_subprocess_exec(
        *outlast_argv(*args),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        _, err = await proc.communicate()
        return None, err.decode()
    return proc.returncode, err.decode()


def cert_with_token(stack: LocalStack, path: Path, token: str) -> Path:
    """A copy of the stack user's cert.pem holding another API token."""
    cert = OriginCert.load(stack.origincert)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    OriginCert(
        cert.zone_id, cert.account_id, token, cert.endpoint, cert.cert_pem, cert.key_pem
    ).write(path, force=True)
    return path


async def admin(stack: LocalStack, *args: str) -> dict[str, Any]:
    done = await outlast_cli(
        "controlplane",
        "--api",
        stack.api_url,
        "--admin-token-file",
        str(stack.admin_token_file),
        *args,
        home=stack.home,
    )
    result: dict[str, Any] = done.check().json
    return result


async def test_legacy_registration_creates_dns_and_the_grace_period_removes_it(
    tmp_path: Path,
) -> None:
    grace = 2.0
    async with LocalStack(tmp_path / "stack", TOPOLOGY, legacy_dns_grace=grace) as stack:
        legacy_id = legacy_tunnel_id(stack.zone_id or "", LEGACY.hostname)
        assert stack.tunnel_ids["old"] == legacy_id
        connector = stack.processes[LEGACY.connector]
        assert "--legacy" in connector.argv and "--credentials-file" not in connector.argv
        dns = {p: stack.endpoints()["pops"][p]["dns"].rsplit(":", 1) for p in TOPOLOGY.pops}
        servers = {p: (host, int(port)) for p, (host, port) in dns.items()}
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            assert await serves(client, stack, LEGACY) and await serves(client, stack, NAMED)
            found = await records(client, stack)
            assert found[LEGACY.hostname]["content"] == tunnel_target(legacy_id)
            named_record = found[NAMED.hostname]
            for server in servers.values():
                reply = await query(server, LEGACY.hostname)
                assert str(reply.rr[0].rdata).rstrip(".") == tunnel_target(legacy_id)
            calls = await edge_calls(client, stack)
            assert calls["named"] == 0, "named registrations never call the control plane"
            assert calls["legacy"] >= len(stack.topology.pops), calls
            audit = await client.get(
                f"{stack.api_url}/client/v4/accounts/{stack.account_id}/audit_logs",
                params={"resource_id": legacy_id},
                headers={"Authorization": f"Bearer {stack.api_token}"},
            )
            actions = {e["action"]["type"] for e in audit.json()["result"]}
            assert {"Create tunnel", "Registered"} <= actions, actions

            # The connector stops: after the grace period the record is gone, everywhere.
            await stack.stop(LEGACY.connector)
            stopped = time.monotonic()

            async def record_gone() -> bool:
                return LEGACY.hostname not in await records(client, stack)

            await eventually(record_gone, grace + 10, "legacy record removed")
            assert time.monotonic() - stopped >= grace * 0.9, "removed before the grace period"

            async def nxdomain_everywhere() -> bool:
                for server in servers.values():
                    if (await query(server, LEGACY.hostname)).header.rcode != RCODE.NXDOMAIN:
                        return False
                return True

            await eventually(nxdomain_everywhere, 10, "edges stop answering for the legacy name")
            response = await visit(client, stack, TOPOLOGY.pops[0], LEGACY.hostname)
            assert response is not None and response.status_code == 404
            # The named tunnel's record is untouched.
            assert (await records(client, stack))[NAMED.hostname] == named_record

            # The next registration creates the record again.
            await stack.start(LEGACY.connector)
            await eventually(lambda: serves(client, stack, LEGACY), 20, "legacy serves again")
            assert LEGACY.hostname in await records(client, stack)
        # The API token travelled with every legacy registration; no component logged it.
        token = stack.api_token or ""
        for log in (tmp_path / "stack" / "logs").glob("*.log"):
            assert token not in log.read_text(), f"API token leaked into {log.name}"


async def test_legacy_cannot_come_back_while_the_control_plane_is_down(tmp_path: Path) -> None:
    async with LocalStack(tmp_path / "stack", TOPOLOGY) as stack:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            assert await serves(client, stack, LEGACY)
            before = await edge_calls(client, stack)
            await stack.stop("controlplane")
            # Running connections survive the outage: nothing has dropped yet.
            assert await serves(client, stack, LEGACY) and await serves(client, stack, NAMED)

            await drop_connector_links(stack)
            await eventually(lambda: serves(client, stack, NAMED), 15, "named reconnects")
            # The legacy connector keeps trying (it is still running) and stays down.
            for _ in range(10):
                assert await down_everywhere(client, stack, LEGACY.hostname)
                await asyncio.sleep(0.5)
            assert stack.processes[LEGACY.connector].running, "it must keep retrying, not exit"
            ready = await client.get(f"{stack.connector_metrics_url('old')}/ready")
            assert ready.status_code == 503
            during = await edge_calls(client, stack)
            assert during["named"] == before["named"] == 0
            assert during["legacy"] > before["legacy"], "the legacy retries went to the API"
            log = stack.processes[LEGACY.connector].log_path.read_text()
            assert "control plane unavailable" in log

            await stack.start("controlplane")
            took = await eventually(
                lambda: serves(client, stack, LEGACY), 30, "legacy back after the control plane"
            )
            assert took < 30
            assert (await edge_calls(client, stack))["named"] == 0


async def test_wrong_rolled_and_foreign_tokens_and_the_apex_are_refused_clearly(
    tmp_path: Path,
) -> None:
    async with LocalStack(tmp_path / "stack", TOPOLOGY) as stack:
        users = tmp_path / "users"
        # The zone apex: legacy tunnels only create records for subdomains.
        code, err = await run_legacy_connector(stack, stack.origincert, "example.com")
        assert code == 1, err
        assert "legacy tunnels only create records for subdomains" in err

        # A token the control plane never issued.
        wrong = cert_with_token(stack, users / "wrong" / "cert.pem", "olt_" + "x" * 43)
        code, err = await run_legacy_connector(stack, wrong, "new.example.com")
        assert code == 1, err
        assert "refused the API token" in err and "unknown API token" in err

        # Another account's user, with a cert.pem naming this account's zone.
        other = await admin(
            stack, "bootstrap", "--account", "globex", "--zone", "globex.test", "--email", "b@g.t"
        )
        foreign = cert_with_token(stack, users / "foreign" / "cert.pem", other["api_token"])
        code, err = await run_legacy_connector(stack, foreign, "new.example.com")
        assert code == 1, err
        assert "has no access to zone" in err

        # The user's token is rolled: the running legacy tunnel keeps serving (tokens are checked
        # at registration)...
        old_cert = cert_with_token(stack, users / "old" / "cert.pem", stack.api_token or "")
        await admin(stack, "roll-token", "--email", TOPOLOGY.email)
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            assert await serves(client, stack, LEGACY)
            # ...a new legacy connector with the old cert.pem is refused...
            code, err = await run_legacy_connector(stack, old_cert, "new.example.com")
            assert code == 1, err
            assert "rolled" in err and "tunnel login" in err
            # ...and the running one is refused at its next registration, and stops, while the
            # named tunnel reconnects as if nothing happened.
            await drop_connector_links(stack)
            await eventually(lambda: serves(client, stack, NAMED), 15, "named reconnects")
            legacy = stack.processes[LEGACY.connector]

            async def exited() -> bool:
                return not legacy.running

            await eventually(exited, 20, "the legacy connector stops on the rolled token")
            log = legacy.log_path.read_text()
            assert "refused the API token" in log and "rolled" in log
            assert await down_everywhere(client, stack, LEGACY.hostname)
