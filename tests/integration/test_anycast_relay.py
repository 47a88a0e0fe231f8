"""The anycast front with real sockets on 127.0.0.1, in front of two stand-in PoPs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from dnslib import QTYPE, RR, TXT, DNSRecord
from prometheus_client.parser import text_string_to_metric_families

from harness.stack.ports import free_port
from reference.anycast.health import HealthTarget, check_once
from reference.anycast.routing import Region
from reference.anycast.server import AnycastConfig, AnycastServer, PopEndpoint
from tests.integration.test_edge_support import eventually

pytestmark = pytest.mark.timeout(60)

CONVERGENCE = 0.6
ANNOUNCE_DELAY = 0.4
#: Slack for a shared 2-core machine on top of the modelled delays.
MARGIN = 1.5
HOST = "127.0.0.1"


# ---- stand-in PoPs ---------------------------------------------------------------------------


def dns_answer(pop: str, packet: bytes) -> bytes:
    request = DNSRecord.parse(packet)
    reply = request.reply()
    reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(f"pop={pop}"), ttl=5))
    return bytes(reply.pack())


class _DnsUdp(asyncio.DatagramProtocol):
    def __init__(self, pop: str) -> None:
        self.pop = pop
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(dns_answer(self.pop, data), addr)


class StandInPop:
    """A PoP as the front sees it: ``/ready``, any other path answered with ``X-Outlast-Pop``,
    a WebSocket echo on ``/ws``, and DNS (UDP + TCP) answering ``TXT pop=<name>``.
    Restartable on the same ports."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.http_port = free_port()
        self.dns_port = free_port()
        self.hang_ready = False
        self.ready_hosts: list[str] = []
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def endpoint(self) -> PopEndpoint:
        return PopEndpoint(self.name, (HOST, self.http_port), (HOST, self.dns_port))

    async def _ready(self, request: web.Request) -> web.Response:
        self.ready_hosts.append(request.host)
        if self.hang_ready:
            await asyncio.sleep(30)
        return web.json_response({"status": 200, "pop": self.name})

    async def _any(self, request: web.Request) -> web.Response:
        return web.Response(text=f"hello from {self.name}", headers={"X-Outlast-Pop": self.name})

    async def _gone(self, request: web.Request) -> web.Response:
        return web.Response(status=410)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(f"{self.name}:{message.data}")
        return ws

    async def _dns_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                answer = dns_answer(self.name, await reader.readexactly(length))
                writer.write(struct.pack("!H", len(answer)) + answer)
                await writer.drain()
        writer.close()

    async def start(self) -> None:
        stack = self._stack = contextlib.AsyncExitStack()
        app = web.Application()
        app.router.add_get("/ready", self._ready)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/gone", self._gone)
        app.router.add_route("*", "/{tail:.*}", self._any)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, HOST, self.http_port).start()
        server = await asyncio.start_server(self._dns_tcp, HOST, self.dns_port)
        stack.callback(server.close)
        udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _DnsUdp(self.name), local_addr=(HOST, self.dns_port)
        )
        stack.callback(udp.close)

    async def stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None


@contextlib.asynccontextmanager
async def stand_ins(*names: str) -> AsyncIterator[dict[str, StandInPop]]:
    pops = {name: StandInPop(name) for name in names}
    try:
        for pop in pops.values():
            await pop.start()
        yield pops
    finally:
        for pop in pops.values():
            await pop.stop()


def front_config(
    pops: list[PopEndpoint], regions: tuple[Region, ...] | None = None, *, syn_retries: int = 0
) -> AnycastConfig:
    """A front whose dial failures reset the visitor at once (``syn_retries=0``), unless a test
    asks for the visitor's SYN retransmissions."""
    return AnycastConfig(
        syn_retries=syn_retries,
        listen=(HOST, 0),
        dns_listen=(HOST, 0),
        control_listen=(HOST, 0),
        pops=tuple(pops),
        regions=regions,
        convergence=CONVERGENCE,
        announce_delay=ANNOUNCE_DELAY,
        health_interval=0.1,
        health_timeout=0.3,
        seed=3,
    )


# ---- visitor helpers -------------------------------------------------------------------------


async def served_by(port: int) -> str | None:
    """The PoP that answered one request on a new connection; None if it failed."""
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True), timeout=aiohttp.ClientTimeout(2)
        ) as session:
            async with session.get(f"http://{HOST}:{port}/any", headers={"Host": "app"}) as resp:
                await resp.read()
                return resp.headers.get("X-Outlast-Pop")
    except (aiohttp.ClientError, TimeoutError):
        return None


async def control(front: AnycastServer, method: str, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"http://{HOST}:{front.control_port}{path}") as resp:
            body = await resp.read()
            is_json = resp.content_type == "application/json"
            return resp.status, json.loads(body) if is_json else body.decode()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


async def switch_over(port: int, *, to: str, started: float) -> tuple[float, list[str | None]]:
    """Send requests until ``to`` serves one; when that happened (after ``started``), and what
    the requests before it got."""
    loop = asyncio.get_running_loop()
    before: list[str | None] = []
    while loop.time() - started < CONVERGENCE + ANNOUNCE_DELAY + 10:
        pop = await served_by(port)
        if pop == to:
            return loop.time() - started, before
        before.append(pop)
        await asyncio.sleep(0.03)
    raise AssertionError(f"traffic never reached {to}; got {before[-10:]}")


# ---- tests -----------------------------------------------------------------------------------


async def test_each_region_goes_to_its_preferred_pop() -> None:
    async with stand_ins("ams", "fra") as pops:
        endpoints = [pops["ams"].endpoint, pops["fra"].endpoint]
        async with AnycastServer(front_config(endpoints)) as front:
            served = [await served_by(front.visitor_port) for _ in range(30)]
            _, text = await control(front, "GET", "/metrics")
        assert set(served) == {"ams", "fra"}  # two default regions, drawn per connection
        total = sum(
            metric(text, "anycast_connections_total", region=r, pop=p)
            for r in ("ams", "fra")
            for p in ("ams", "fra")
        )
        assert total == 30
        assert metric(text, "anycast_connections_total", region="ams", pop="ams") > 0
        assert metric(text, "anycast_connections_total", region="ams", pop="fra") == 0
        assert metric(text, "anycast_connections_total", region="fra", pop="ams") == 0
        assert served.count("ams") == metric(
            text, "anycast_connections_total", region="ams", pop="ams"
        )


async def test_keep_alive_connection_stays_with_one_pop() -> None:
    async with stand_ins("ams", "fra") as pops:
        endpoints = [pops["ams"].endpoint, pops["fra"].endpoint]
        async with AnycastServer(front_config(endpoints)) as front:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
                served = set()
                for _ in range(10):
                    async with session.get(f"http://{HOST}:{front.visitor_port}/k") as resp:
                        await resp.read()
                        served.add(resp.headers["X-Outlast-Pop"])
            _, text = await control(front, "GET", "/metrics")
        assert len(served) == 1
        total = sum(
            metric(text, "anycast_connections_total", region=r, pop=p)
            for r in ("ams", "fra")
            for p in ("ams", "fra")
        )
        assert total == 1


async def test_dead_pop_is_withdrawn_after_convergence_and_returns_after_announce_delay() -> None:
    loop = asyncio.get_running_loop()
    async with stand_ins("ams", "fra") as pops:
        endpoints = [pops["ams"].endpoint, pops["fra"].endpoint]
        regions = (Region("eu", ("ams", "fra")),)
        async with AnycastServer(front_config(endpoints, regions)) as front:
            assert await served_by(front.visitor_port) == "ams"

            stopped = loop.time()
            await pops["ams"].stop()
            elapsed, before = await switch_over(front.visitor_port, to="fra", started=stopped)
            # Still routed while the withdrawal propagates: those visitors fail (no retry).
            assert CONVERGENCE - 0.05 <= elapsed <= CONVERGENCE + MARGIN
            assert set(before) <= {None, "ams"} and None in before
            assert [await served_by(front.visitor_port) for _ in range(5)] == ["fra"] * 5
            _, table = await control(front, "GET", "/pops")
            ams = next(p for p in table["pops"] if p["name"] == "ams")
            assert (ams["state"], ams["routed"], ams["last_health"]["ok"]) == (
                "withdrawn",
                False,
                False,
            )

            restarted = loop.time()
            await pops["ams"].start()
            elapsed, before = await switch_over(front.visitor_port, to="ams", started=restarted)
            assert ANNOUNCE_DELAY - 0.05 <= elapsed <= ANNOUNCE_DELAY + MARGIN
            assert set(before) == {"fra"}  # recovering: nothing failed meanwhile

            _, text = await control(front, "GET", "/metrics")
        assert metric(text, "anycast_route_changes_total", pop="ams", change="withdrawn") == 1
        assert metric(text, "anycast_route_changes_total", pop="ams", change="announced") == 1
        assert metric(text, "anycast_dial_failures_total", pop="ams") >= 1
        assert metric(text, "anycast_pop_routed", pop="ams") == 1


async def test_a_visitor_whose_pop_died_is_served_by_the_next_after_a_syn_retransmission() -> None:
    """Before its route is withdrawn, a dead PoP still gets new visitors; their TCP sends the
    SYN again after 1 s, by when the route has moved: served, about a second late."""
    async with stand_ins("ams", "fra") as pops:
        endpoints = [pops["ams"].endpoint, pops["fra"].endpoint]
        regions = (Region("eu", ("ams", "fra")),)
        async with AnycastServer(front_config(endpoints, regions, syn_retries=2)) as front:
            assert await served_by(front.visitor_port) == "ams"
            await pops["ams"].stop()
            loop = asyncio.get_running_loop()
            started = loop.time()
            answer = await served_by(front.visitor_port)  # still routed to ams right now
            waited = loop.time() - started
            assert answer == "fra", "the retransmitted SYN must reach the next PoP"
            assert 0.9 <= waited <= 1.0 + CONVERGENCE + MARGIN, waited
            _, text = await control(front, "GET", "/metrics")
        assert metric(text, "anycast_syn_retransmissions_total", kind="visitor") >= 1
        assert metric(text, "anycast_dial_failures_total", pop="ams") >= 1


async def test_paused_pop_fails_its_health_check_by_timeout() -> None:
    async with stand_ins("ams", "fra") as pops:
        endpoints = [pops["ams"].endpoint, pops["fra"].endpoint]
        regions = (Region("eu", ("ams", "fra")),)
        async with AnycastServer(front_config(endpoints, regions)) as front:
            pops["ams"].hang_ready = True

            async def ams_withdrawn() -> dict[str, Any] | None:
                _, table = await control(front, "GET", "/pops")
                ams = next(p for p in table["pops"] if p["name"] == "ams")
                return ams if not ams["routed"] else None

            ams = await eventually(ams_withdrawn, timeout=CONVERGENCE + 0.3 + MARGIN + 2)
            assert ams["state"] == "withdrawn"
            assert "timeout" in ams["last_health"]["detail"]
            assert await served_by(front.visitor_port) == "fra"


async def test_sigstopped_pop_is_withdrawn_by_health_timeout_and_returns_on_sigcont(
    tmp_path: Path,
) -> None:
    (tmp_path / "ready").write_text("ok")
    port = free_port()
    pop = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "http.server", str(port), "--bind", HOST],
        *["--directory", str(tmp_path)],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    endpoint = PopEndpoint("ams", (HOST, port), (HOST, free_port()))
    try:
        async with AnycastServer(front_config([endpoint])) as front:

            async def ams(routed: bool) -> dict[str, Any] | None:
                _, table = await control(front, "GET", "/pops")
                entry: dict[str, Any] = table["pops"][0]
                ok = (entry["last_health"] or {}).get("ok")
                return entry if entry["routed"] is routed and ok is routed else None

            await eventually(lambda: ams(True), timeout=15)
            pop.send_signal(signal.SIGSTOP)
            entry = await eventually(lambda: ams(False), timeout=CONVERGENCE + 0.3 + MARGIN + 2)
            assert entry["state"] == "withdrawn"
            assert entry["last_health"]["detail"] == "timeout after 0.3 s"
            pop.send_signal(signal.SIGCONT)
            entry = await eventually(lambda: ams(True), timeout=ANNOUNCE_DELAY + MARGIN + 2)
            assert entry["state"] == "announced"
    finally:
        pop.send_signal(signal.SIGCONT)
        pop.kill()
        await pop.wait()


async def test_health_check_reports_status_and_refusal() -> None:
    async with stand_ins("ams") as pops:
        async with aiohttp.ClientSession() as session:
            target = pops["ams"].endpoint.health_target()
            assert (await check_once(session, target, 1.0)).ok
            assert pops["ams"].ready_hosts == ["127.0.0.1"]  # the edge serves /ready for IPs
            gone = HealthTarget(f"http://{HOST}:{pops['ams'].http_port}/gone")
            outcome = await check_once(session, gone, 1.0)
            assert (outcome.ok, outcome.detail) == (False, "status 410")
            refused = await check_once(session, HealthTarget(f"http://{HOST}:{free_port()}/"), 1.0)
            assert not refused.ok and "Connect" in refused.detail


async def test_operator_withdraw_moves_traffic_and_announce_brings_it_back() -> None:
    loop = asyncio.get_running_loop()
    async with stand_ins("ams", "fra") as pops:
        endpoints = [pops["ams"].endpoint, pops["fra"].endpoint]
        regions = (Region("eu", ("ams", "fra")),)
        async with AnycastServer(front_config(endpoints, regions)) as front:
            status, body = await control(front, "POST", "/pops/xyz/withdraw")
            assert status == 404
            assert body == {
                "error": {"code": "unknown_pop", "message": "no PoP 'xyz' (have: ams, fra)"}
            }
            status, body = await control(front, "GET", "/pops/ams/withdraw")
            assert status == 405 and body["error"]["code"] == "method_not_allowed"

            withdrawn = loop.time()
            status, body = await control(front, "POST", "/pops/ams/withdraw")
            assert status == 202
            assert (body["pop"]["operator"], body["pop"]["routed"]) == ("withdrawing", True)
            elapsed, before = await switch_over(front.visitor_port, to="fra", started=withdrawn)
            assert CONVERGENCE - 0.05 <= elapsed <= CONVERGENCE + MARGIN
            assert set(before) == {"ams"}  # healthy all along: nothing failed

            announced = loop.time()
            status, body = await control(front, "POST", "/pops/ams/announce")
            assert (status, body["pop"]["operator"]) == (202, "announcing")
            elapsed, _ = await switch_over(front.visitor_port, to="ams", started=announced)
            assert ANNOUNCE_DELAY - 0.05 <= elapsed <= ANNOUNCE_DELAY + MARGIN


async def test_no_routed_pop_resets_the_visitor_and_is_counted() -> None:
    async with stand_ins("ams") as pops:
        async with AnycastServer(front_config([pops["ams"].endpoint])) as front:
            await control(front, "POST", "/pops/ams/withdraw")
            assert await served_by(front.visitor_port) == "ams"  # withdrawal still propagating

            async def withdrawn() -> bool:
                _, table = await control(front, "GET", "/pops")
                return not table["pops"][0]["routed"]

            await eventually(withdrawn, timeout=CONVERGENCE + MARGIN)
            reader, writer = await asyncio.open_connection(HOST, front.visitor_port)
            writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            with contextlib.suppress(ConnectionError):
                assert await asyncio.wait_for(reader.read(), 2) == b""
            writer.close()
            _, text = await control(front, "GET", "/metrics")
        assert metric(text, "anycast_unroutable_total", kind="visitor") == 1
        assert metric(text, "anycast_pop_routed", pop="ams") == 0


async def test_dns_is_relayed_over_udp_and_tcp() -> None:
    async with stand_ins("ams", "fra") as pops:
        endpoints = [pops["ams"].endpoint, pops["fra"].endpoint]
        regions = (Region("eu", ("fra", "ams")),)
        async with AnycastServer(front_config(endpoints, regions)) as front:
            query = DNSRecord.question("app.example.com", "TXT")
            loop = asyncio.get_running_loop()
            answer: asyncio.Future[bytes] = loop.create_future()

            class Client(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                    answer.set_result(data)

            transport, _ = await loop.create_datagram_endpoint(
                Client, remote_addr=(HOST, front.dns_port)
            )
            transport.sendto(bytes(query.pack()))
            reply = DNSRecord.parse(await asyncio.wait_for(answer, 3))
            transport.close()
            assert reply.header.id == query.header.id
            assert str(reply.rr[0].rdata) == '"pop=fra"'

            reader, writer = await asyncio.open_connection(HOST, front.dns_port)
            ids = []
            for name in ("a.example.com", "b.example.com"):
                q = DNSRecord.question(name, "TXT")
                ids.append(q.header.id)
                packed = bytes(q.pack())
                writer.write(struct.pack("!H", len(packed)) + packed)
            replies = []
            for _ in ids:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                replies.append(DNSRecord.parse(await reader.readexactly(length)))
            writer.close()
            assert [r.header.id for r in replies] == ids
            assert {str(r.rr[0].rdata) for r in replies} == {'"pop=fra"'}
            _, text = await control(front, "GET", "/metrics")
        assert metric(text, "anycast_dns_queries_total", transport="udp", pop="fra") == 1
        assert metric(text, "anycast_dns_queries_total", transport="tcp", pop="fra") == 2


async def _reply_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A PoP that answers only once the visitor has finished sending (needs the FIN)."""
    received = await reader.read()
    writer.write(b"got %d bytes" % len(received))
    await writer.drain()
    writer.close()


async def test_half_close_is_passed_on_both_ways() -> None:
    async with stand_ins("ams") as pops:
        server = await asyncio.start_server(_reply_after_eof, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        ready = f"http://{HOST}:{pops['ams'].http_port}/ready"
        endpoint = PopEndpoint("raw", (HOST, port), (HOST, pops["ams"].dns_port), ready)
        try:
            async with AnycastServer(front_config([endpoint])) as front:
                reader, writer = await asyncio.open_connection(HOST, front.visitor_port)
                writer.write(b"x" * 100_000)
                await writer.drain()
                writer.write_eof()
                reply = await asyncio.wait_for(reader.read(), 5)  # read() = up to EOF
                writer.close()
                _, table = await control(front, "GET", "/pops")
        finally:
            server.close()
        assert reply == b"got 100000 bytes"
        assert table["pops"][0]["last_health"]["ok"] is True  # HEALTH_URL was used


async def test_websocket_upgrade_through_the_relay() -> None:
    async with stand_ins("ams", "fra") as pops:
        endpoints = [pops["ams"].endpoint, pops["fra"].endpoint]
        async with AnycastServer(front_config(endpoints)) as front:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(f"http://{HOST}:{front.visitor_port}/ws") as ws:
                    echoes = []
                    for i in range(5):
                        await ws.send_str(f"m{i}")
                        echoes.append(await asyncio.wait_for(ws.receive_str(), 3))
        pop = echoes[0].split(":")[0]
        assert pop in ("ams", "fra")
        assert echoes == [f"{pop}:m{i}" for i in range(5)]  # pinned to one PoP


async def test_outlast_serve_anycast_process() -> None:
    async with stand_ins("ams", "fra") as pops:
        listen, dns, ctl = free_port(), free_port(), free_port()
        args = [
            sys.executable, "-m", "harness", "serve", "anycast",
            "--listen", f"{HOST}:{listen}",
            "--dns-listen", f"{HOST}:{dns}",
            "--control-listen", f"{HOST}:{ctl}",
            "--pop", f"ams={HOST}:{pops['ams'].http_port},{HOST}:{pops['ams'].dns_port}",
            "--pop", f"fra={HOST}:{pops['fra'].http_port},{HOST}:{pops['fra'].dns_port}",
            "--region", "eu=fra,ams:2",
            "--convergence", "0.5",
        ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        try:

            async def table() -> Any:
                assert process.returncode is None, "outlast serve anycast exited early"
                try:
                    async with aiohttp.ClientSession() as session:
                        async with session.get(f"http://{HOST}:{ctl}/pops") as resp:
                            return await resp.json()
                except aiohttp.ClientError:
                    return None

            pops_table = await eventually(table, timeout=20)
            assert pops_table["convergence"] == 0.5
            assert pops_table["announce_delay"] == 0.5
            assert [p["name"] for p in pops_table["pops"]] == ["ams", "fra"]
            assert pops_table["regions"] == [
                {"name": "eu", "preference": ["fra", "ams"], "weight": 2.0}
            ]
            assert await served_by(listen) == "fra"
            loop = asyncio.get_running_loop()
            sent = loop.time()
            process.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(process.wait(), 10)
            assert returncode == 0
            assert loop.time() - sent < 5
            assert process.stderr is not None
            logs = [json.loads(line) for line in (await process.stderr.read()).splitlines()]
            messages = [entry["message"] for entry in logs]
            assert "anycast front started" in messages
            assert "shutting down on signal" in messages
        finally:
            if process.returncode is None:
                os.kill(process.pid, signal.SIGKILL)
                await process.wait()
