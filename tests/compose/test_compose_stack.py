"""The Compose backend against a real Docker engine (scripts/compose-ci runs these).

One project (two connector replicas) serves every test of this module, in order: visitors
through the tunnel, links only through the fault proxy, the anycast entry, forwarding between the
PoPs, a killed control-plane container, a toxic on a connector link, and finally ``down`` leaving
no container, network or volume.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import dnslib
import httpx
import pytest
import pytest_asyncio

from harness.faultproxy.client import FaultProxyClient
from harness.stack.compose import ComposeStack
from harness.stack.readiness import wait_http
from harness.stack.topology import Topology, TunnelSpec

pytestmark = [
    pytest.mark.compose,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(300),
]
HOSTNAME = "app.example.com"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ComposeStack]:
    topology = Topology(tunnels=(TunnelSpec("web", HOSTNAME, replicas=2),))
    compose_stack = ComposeStack(tmp_path_factory.mktemp("compose"), topology, ready_timeout=180)
    await compose_stack.up()
    try:
        yield compose_stack
    finally:
        await compose_stack.down()


async def _visit(client: httpx.AsyncClient, stack: ComposeStack, pop: str) -> httpx.Response:
    return await client.get(f"{stack.visitor_url(pop)}/probe", headers={"Host": HOSTNAME})


def _mode(path: str) -> int:
    return Path(path).stat().st_mode


def _read(path: Path) -> str:
    return path.read_text()


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def test_up_serves_visitors_through_the_tunnel_on_every_pop(stack: ComposeStack) -> None:
    endpoints = stack.endpoints()
    assert endpoints["backend"] == "compose"
    tunnel_id = endpoints["tunnels"][0]["id"]
    assert tunnel_id and stack.startup_seconds is not None
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        for pop in endpoints["pops"]:
            response = await _visit(client, stack, pop)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["origin"] == "origin"
            assert body["headers"]["x-outlast-pop"] == pop
            assert body["headers"]["x-outlast-tunnel-id"] == tunnel_id
    # DNS of the edge (published UDP port) answers the routed hostname with the tunnel's CNAME.
    host, port = endpoints["pops"]["ams"]["dns"].rsplit(":", 1)
    answer = dnslib.DNSRecord.parse(
        dnslib.DNSRecord.question(HOSTNAME, "CNAME").send(host, int(port), timeout=5)
    )
    assert any(tunnel_id in str(rr.rdata) for rr in answer.rr), answer
    # The secrets the harness needs on the host were copied out with tight modes.
    for path in (endpoints["admin_token_file"], endpoints["origincert"]):
        assert _mode(path) & 0o077 == 0, path


async def test_containers_reach_each_other_only_through_the_fault_proxy(
    stack: ComposeStack,
) -> None:
    script = (
        "import socket, sys\n"
        "host, port = sys.argv[1], int(sys.argv[2])\n"
        "try:\n"
        "    socket.create_connection((host, port), 3).close()\n"
        "    print('reached')\n"
        "except OSError as exc:\n"
        "    print('blocked', exc)\n"
    )

    async def dial(component: str, host: str, port: int) -> str:
        code, output = await stack.exec_in(component, ["python", "-c", script, host, str(port)])
        assert code == 0, output
        return output.strip()

    assert (await dial("connector-web", "edge-ams", 7844)).startswith("blocked")
    assert (await dial("controlplane", "broker", 1883)).startswith("blocked")
    assert (await dial("edge-fra", "controlplane", 8080)).startswith("blocked")
    assert await dial("connector-web", "toxiproxy", 10001) == "reached"


_BROKER_PROBE = """
import asyncio, json, ssl, sys
from reference.broker.probe import RawMqttClient
from reference.broker.tls import client_context

async def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    directory = "/var/lib/outlast/broker-client"
    own = json.load(open(f"{directory}/credentials.json"))
    tls = client_context(f"{directory}/broker-ca.pem")
    answers = {"own_user": own["username"]}
    try:
        plain = await RawMqttClient.open(host, port)
        answers["plaintext"] = (await plain.connect("probe", timeout=5)).return_code
    except (ConnectionError, TimeoutError) as exc:
        answers["plaintext"] = f"refused: {type(exc).__name__}"
    try:
        await RawMqttClient.open(host, port, tls=ssl.create_default_context())
        answers["untrusted"] = "connected"
    except ssl.SSLError as exc:
        answers["untrusted"] = f"refused: {type(exc).__name__}"
    async with await RawMqttClient.open(host, port, tls=tls) as anonymous:
        answers["anonymous"] = (await anonymous.connect("probe")).return_code
    async with await RawMqttClient.open(host, port, tls=tls) as client:
        connack = await client.connect(own["username"], username=own["username"],
                                       password=own["password"].encode())
        answers["own_credentials"] = connack.return_code
    print(json.dumps(answers))

asyncio.run(main())
"""


async def test_the_broker_link_is_tls_with_users_and_no_client_holds_anothers_password(
    stack: ComposeStack,
) -> None:
    """From inside edge-ams, through its broker link: plaintext and an untrusted CA fail,
    anonymous is refused (5), its own credentials pass (0); its container holds only its own
    broker credential (mode 0600) and the host copies are 0600 too."""
    import json

    code, output = await stack.exec_in(
        "edge-ams", ["python", "-c", _BROKER_PROBE, "toxiproxy", "10021"]
    )
    assert code == 0, output
    answers = json.loads(output.strip().splitlines()[-1])
    assert answers["own_user"] == "edge-ams"
    assert str(answers["plaintext"]).startswith("refused"), answers
    assert str(answers["untrusted"]).startswith("refused"), answers
    assert answers["anonymous"] == 5 and answers["own_credentials"] == 0, answers
    code, listing = await stack.exec_in(
        "edge-ams", ["sh", "-c", "stat -c '%a %n' /var/lib/outlast/broker-client/*"]
    )
    assert code == 0, listing
    assert "600 /var/lib/outlast/broker-client/credentials.json" in listing
    assert sorted(line.split("/")[-1] for line in listing.split()[1::2]) == [
        "broker-ca.pem",
        "credentials.json",
    ]
    endpoints = stack.endpoints()
    assert set(endpoints["broker_credentials"]) == {"controlplane", "edge-ams", "edge-fra"}
    for path in endpoints["broker_credentials"].values():
        assert _mode(path) & 0o077 == 0, path


async def test_anycast_entry_serves_visitors_dns_and_both_replicas(stack: ComposeStack) -> None:
    endpoints = stack.endpoints()
    tunnel = endpoints["tunnels"][0]
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        served_by: set[str] = set()
        for _ in range(10):
            response = await client.get(
                f"{endpoints['visitor_url']}/probe", headers={"Host": HOSTNAME}
            )
            assert response.status_code == 200, response.text
            assert response.json()["origin"] == "origin"
            served_by.add(response.headers["X-Outlast-Pop"])
        assert served_by <= set(endpoints["pops"]), served_by
        pops = (await client.get(f"{endpoints['anycast']['control_url']}/pops")).json()
        assert {p["name"]: p["routed"] for p in pops["pops"]} == {"ams": True, "fra": True}
        # Both replicas hold registered connections of the one tunnel.
        assert list(tunnel["connectors"]) == ["connector-web", "connector-web-2"]
        for urls in tunnel["connectors"].values():
            assert (await client.get(urls["ready_url"])).status_code == 200
    assert stack.service_of("connector-web-2") == "connector-2"
    assert await stack.container_status("connector-web-2") == "running"
    assert await stack.container_status("anycast") == "running"
    host, port = endpoints["dns"].rsplit(":", 1)
    answer = dnslib.DNSRecord.parse(
        dnslib.DNSRecord.question(HOSTNAME, "CNAME").send(host, int(port), timeout=5)
    )
    assert any(tunnel["id"] in str(rr.rdata) for rr in answer.rr), answer


async def test_visitor_landing_at_a_pop_without_connections_is_forwarded(
    stack: ComposeStack,
) -> None:
    """fra withdrawn at the anycast front (every visitor lands at ams) and conn-ams down (ams
    holds no connection): ams forwards over pop-ams-fra, the response names fra."""
    control = stack.endpoints()["anycast"]["control_url"]
    async with (
        FaultProxyClient(stack.faultproxy_url) as faultproxy,
        httpx.AsyncClient(timeout=10.0, trust_env=False) as client,
    ):

        async def routed() -> dict[str, bool]:
            pops = (await client.get(f"{control}/pops")).json()["pops"]
            return {p["name"]: p["routed"] for p in pops}

        withdrawn = await client.post(f"{control}/pops/fra/withdraw")
        assert withdrawn.status_code == 202, withdrawn.text
        try:

            async def fra_withdrawn() -> bool:
                return await routed() == {"ams": True, "fra": False}

            await _eventually(fra_withdrawn, 15, "the withdrawal of fra")
            conn_ams = await faultproxy.get_proxy("conn-ams")
            async with conn_ams.down():

                async def ams_forwards() -> bool:
                    response = await _visit(client, stack, "ams")
                    return response.headers.get("X-Outlast-Tunnel-Pop") == "fra"

                await _eventually(ams_forwards, 30, "edge ams forwarding to fra")
                for _ in range(10):
                    response = await client.get(
                        f"{stack.anycast_url}/probe", headers={"Host": HOSTNAME}
                    )
                    assert response.status_code == 200, response.text
                    assert response.headers["X-Outlast-Pop"] == "ams"
                    assert response.headers["X-Outlast-Tunnel-Pop"] == "fra"
                    assert response.json()["origin"] == "origin"
        finally:
            await client.post(f"{control}/pops/fra/announce")
    await _eventually(lambda: _all_routed(control), 15, "fra announced again at the anycast front")
    await stack.wait_serving(timeout=60)


async def _all_routed(control: str) -> bool:
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        pops = (await client.get(f"{control}/pops")).json()["pops"]
    return all(p["routed"] for p in pops)


async def test_killed_controlplane_container_does_not_stop_traffic(stack: ComposeStack) -> None:
    await stack.kill("controlplane")
    try:
        assert await stack.container_status("controlplane") == "exited"
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
            with pytest.raises(httpx.HTTPError):
                await client.get(f"{stack.api_url}/health", timeout=2.0)
            statuses = []
            for _ in range(10):
                for pop in ("ams", "fra"):
                    statuses.append((await _visit(client, stack, pop)).status_code)
                await asyncio.sleep(0.2)
        assert statuses == [200] * 20
    finally:
        await stack.start("controlplane")
    await wait_http(f"{stack.api_url}/health", timeout=90)
    assert await stack.container_status("controlplane") == "running"


async def test_toxics_on_a_connector_link_show_their_effect(stack: ComposeStack) -> None:
    async with (
        FaultProxyClient(stack.faultproxy_url) as faultproxy,
        httpx.AsyncClient(timeout=10.0, trust_env=False) as client,
    ):
        conn_ams = await faultproxy.get_proxy("conn-ams")
        pop_ams_fra = await faultproxy.get_proxy("pop-ams-fra")
        async with conn_ams.down():

            async def ams_forwards() -> bool:
                response = await _visit(client, stack, "ams")
                return response.headers.get("X-Outlast-Tunnel-Pop") == "fra"

            await _eventually(ams_forwards, 30, "edge ams forwarding to fra")
            # Partitioned from fra as well, ams has no way to the tunnel; fra still serves.
            async with pop_ams_fra.down():

                async def ams_lost_the_tunnel() -> bool:
                    return (await _visit(client, stack, "ams")).status_code != 200

                await _eventually(ams_lost_the_tunnel, 30, "edge ams losing the tunnel")
                fra = [(await _visit(client, stack, "fra")).status_code for _ in range(5)]
                assert fra == [200] * 5
        await wait_http(f"{stack.visitor_url('ams')}/", timeout=60, headers={"Host": HOSTNAME})

        conn_fra = await faultproxy.get_proxy("conn-fra")
        async with conn_fra.toxic("latency", latency=600, stream="downstream"):
            started = time.monotonic()
            response = await _visit(client, stack, "fra")
            slow = time.monotonic() - started
        assert response.status_code == 200
        assert slow >= 0.6, f"latency toxic not applied: {slow:.3f} s"


async def test_paused_edge_stops_answering_until_resumed(stack: ComposeStack) -> None:
    await stack.pause("edge-fra")
    try:
        assert await stack.container_status("edge-fra") == "paused"
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            with pytest.raises(httpx.TimeoutException):
                await _visit(client, stack, "fra")
            assert (await _visit(client, stack, "ams")).status_code == 200
    finally:
        await stack.resume("edge-fra")
    await wait_http(f"{stack.visitor_url('fra')}/", timeout=60, headers={"Host": HOSTNAME})


async def test_down_leaves_no_container_network_or_volume(stack: ComposeStack) -> None:
    assert any(stack.leftovers().values())  # sanity: the project exists before down
    await stack.down()
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
    assert "controlplane" in _read(stack.state_dir / "logs" / "controlplane.log")
