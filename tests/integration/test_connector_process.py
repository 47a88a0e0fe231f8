"""`outlast tunnel run` as a real process against minimal edges built from the wire's edge API
(real TLS, real origin). Also holds helpers the other connector tests import."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import os
import secrets
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiohttp import web

from harness.stack.ports import free_port
from harness.stack.process import ManagedProcess, outlast_argv
from harness.stack.readiness import wait_http
from reference.connector.credentials import TunnelCredentials
from reference.origin.app import create_app
from reference.tunnel_auth import derive_verifier, verify_proof
from reference.wire import (
    EdgeTunnel,
    HeartbeatConfig,
    RefusalCause,
    RegistrationRequest,
    RegistrationResponse,
    StreamRequest,
    WsMessage,
    WsMessageType,
    accept_tunnel,
)
from tests.unit.test_wire_loopback import TlsMaterial

HEARTBEAT = HeartbeatConfig(interval=0.3, timeout=1.2)
Override = Callable[[RegistrationRequest], RegistrationResponse | None]


@dataclass
class Tunnel:
    """A tunnel's identity and its credentials file."""

    tunnel_id: str
    account_tag: str
    secret: bytes
    credentials_file: Path

    @classmethod
    def create(cls, directory: Path, *, secret: bytes | None = None) -> Tunnel:
        tunnel_id = str(uuid.uuid4())
        account = secrets.token_hex(16)
        secret = secret or secrets.token_bytes(32)
        path = directory / f"{tunnel_id}.json"
        TunnelCredentials(account, secret, tunnel_id, "").write(path)
        return cls(tunnel_id, account, secret, path)

    def with_other_secret(self, directory: Path) -> Path:
        """A credentials file for the same tunnel id with a wrong secret."""
        path = directory / "wrong.json"
        TunnelCredentials(self.account_tag, secrets.token_bytes(32), self.tunnel_id, "").write(path)
        return path


@dataclass
class MiniEdge:
    """One PoP: a TLS tunnel listener that authenticates from a locally held verifier."""

    location: str
    tls: TlsMaterial
    tunnel: Tunnel
    port: int = 0
    override: Override | None = None
    attempts: list[tuple[float, RegistrationRequest]] = field(default_factory=list)
    tunnels: list[EdgeTunnel] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def _authenticate(self, request: RegistrationRequest, nonce: str) -> RegistrationResponse:
        self.attempts.append((time.monotonic(), request))
        if self.override is not None and (answer := self.override(request)) is not None:
            return answer
        if request.tunnel_id != self.tunnel.tunnel_id:
            return RegistrationResponse.refusal(
                RefusalCause.UNKNOWN_TUNNEL, should_retry=True, retry_after=0.5
            )
        if request.account_tag != self.tunnel.account_tag:
            return RegistrationResponse.refusal(RefusalCause.ACCOUNT_MISMATCH, should_retry=False)
        verifier = derive_verifier(self.tunnel.secret, self.tunnel.tunnel_id)
        if not verify_proof(
            verifier,
            request.proof,
            nonce,
            request.tunnel_id,
            request.account_tag,
            request.conn_index,
            request.connector_id,
        ):
            return RegistrationResponse.refusal(RefusalCause.INVALID_SECRET, should_retry=False)
        return RegistrationResponse.success(str(uuid.uuid4()), self.location)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tunnel = await accept_tunnel(
            reader, writer, authenticate=self._authenticate, heartbeat=HEARTBEAT
        )
        if tunnel is not None:
            self.tunnels.append(tunnel)

    async def start(self) -> MiniEdge:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, ssl=self.tls.server_context()
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """PoP outage: stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for tunnel in self.tunnels:
            tunnel._writer.transport.abort()
        self.tunnels.clear()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def live(self) -> list[EdgeTunnel]:
        self.tunnels = [t for t in self.tunnels if not t.closed]
        return [t for t in self.tunnels if t.accepting_streams]

    async def visit(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        host: str = "app.example.com",
        headers: list[tuple[str, str]] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """A visitor request over one of this PoP's registered connections."""
        [tunnel, *_] = self.live()
        stream = await tunnel.open_stream(
            StreamRequest(method, path, host, headers or []), end_body=not body
        )
        if body:
            await stream.send_body(body)
            await stream.end_body()
        status, response_headers = await asyncio.wait_for(stream.response(), 30)
        data = bytearray()
        while chunk := await asyncio.wait_for(stream.read_body_chunk(), 30):
            data += chunk
        return status, dict(response_headers), bytes(data)


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``predicate`` every 20 ms; return the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@contextlib.asynccontextmanager
async def origin_server(name: str = "origin-1") -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(name), shutdown_timeout=1.0, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass
class Connector:
    """A running `outlast tunnel run` process and its endpoints."""

    process: ManagedProcess
    metrics_url: str
    log_path: Path

    async def ready(self) -> tuple[int, dict[str, object]]:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            response = await client.get(f"{self.metrics_url}/ready")
        return response.status_code, response.json()

    async def metrics(self) -> str:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            return (await client.get(f"{self.metrics_url}/metrics")).text

    async def connections(self) -> list[dict[str, object]]:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            body = (await client.get(f"{self.metrics_url}/connections")).json()
        return list(body["connections"])

    async def wait_ready(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            self.process.check_running()
            with contextlib.suppress(httpx.HTTPError, ValueError):
                _status, body = await self.ready()
                last = body
                if body.get("readyConnections") == n:
                    return
            await asyncio.sleep(0.05)
        raise TimeoutError(
            f"connector never had {n} ready connections (last {last}):\n{self.process.log_tail()}"
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, object]]:
        out = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    out.append(entry)
        return out


@contextlib.asynccontextmanager
async def run_connector(
    tmp_path: Path,
    tunnel: Tunnel,
    tls: TlsMaterial,
    edges: list[str],
    *,
    url: str | None = None,
    credentials_file: Path | None = None,
    extra: list[str] | None = None,
    wait_metrics: bool = True,
) -> AsyncIterator[Connector]:
    metrics_port = free_port()
    argv = outlast_argv(
        "tunnel",
        "run",
        tunnel.tunnel_id,
        "--credentials-file",
        str(credentials_file or tunnel.credentials_file),
        "--edge-ca",
        str(tls.ca_file),
        "--metrics",
        f"127.0.0.1:{metrics_port}",
        "--heartbeat-interval",
        str(HEARTBEAT.interval),
        "--heartbeat-timeout",
        str(HEARTBEAT.timeout),
        "--state-dir",
        str(tmp_path / "state"),
        "--rebalance-interval",
        "0.5",
        "--grace-period",
        "5",
        *(["--url", url] if url else []),
        *[arg for edge in edges for arg in ("--edge", edge)],
        *(extra or []),
    )
    log_path = tmp_path / f"connector-{metrics_port}.log"
    env = dict(os.environ, OUTLAST_HOME=str(tmp_path / "home"))
    async with ManagedProcess("connector", argv, log_path, env=env, stop_timeout=10) as process:
        connector = Connector(process, f"http://127.0.0.1:{metrics_port}", log_path)
        if wait_metrics:
            await wait_http(f"{connector.metrics_url}/healthcheck", process=process, timeout=30)
        yield connector


@contextlib.asynccontextmanager
async def pops(tls: TlsMaterial, tunnel: Tunnel, *locations: str) -> AsyncIterator[list[MiniEdge]]:
    edges = [await MiniEdge(loc, tls, tunnel).start() for loc in locations]
    try:
        yield edges
    finally:
        for edge in edges:
            await edge.stop()


# --- tests ------------------------------------------------------------------------------------


async def test_serves_http_and_websocket_spread_over_two_pops(tmp_path: Path) -> None:
    tls = TlsMaterial.create(tmp_path / "tls")
    tunnel = Tunnel.create(tmp_path)
    async with origin_server() as origin, pops(tls, tunnel, "ams", "fra") as (ams, fra):
        async with run_connector(
            tmp_path, tunnel, tls, [ams.address, fra.address], url=origin
        ) as connector:
            await connector.wait_ready(4)
            assert (len(ams.live()), len(fra.live())) == (2, 2)
            conns = await connector.connections()
            assert sorted(str(c["location"]) for c in conns) == ["ams", "ams", "fra", "fra"]
            assert sorted(int(str(c["conn_index"])) for c in conns) == [0, 1, 2, 3]

            body = os.urandom(3_000_000)
            status, headers, data = await ams.visit(
                "POST", "/upload?x=1", body, headers=[("x-request-id", "req-1")]
            )
            payload = json.loads(data)
            assert status == 200 and headers["x-origin-name"] == "origin-1"
            assert payload["body_sha256"] == hashlib.sha256(body).hexdigest()
            assert payload["body_len"] == len(body) and payload["request_id"] == "req-1"
            assert payload["host"] == "app.example.com" and payload["path"] == "/upload"
            assert payload["headers"]["x-outlast-tunnel-id"] == tunnel.tunnel_id
            assert payload["headers"]["x-outlast-edge-location"] == "ams"

            status, headers, data = await fra.visit("GET", "/big?size=5000000")
            assert status == 200 and len(data) == 5_000_000
            assert hashlib.sha256(data).hexdigest() == headers["x-response-sha256"]

            [edge_tunnel, *_] = fra.live()
            stream = await edge_tunnel.open_stream(
                StreamRequest(
                    "GET", "/ws", "app.example.com", [("x-request-id", "w1")], websocket=True
                )
            )
            status, _ = await asyncio.wait_for(stream.response(), 10)
            assert status == 101
            hello = await asyncio.wait_for(stream.receive_ws(), 10)
            assert hello is not None and json.loads(str(hello.data))["origin"] == "origin-1"
            for message in (WsMessage.text("round ✓ trip"), WsMessage.binary(os.urandom(70_000))):
                await stream.send_ws(message)
                assert await asyncio.wait_for(stream.receive_ws(), 10) == message
            await stream.send_ws(WsMessage.close(1000, "bye"))
            closing = await asyncio.wait_for(stream.receive_ws(), 10)
            assert closing is not None and closing.type is WsMessageType.CLOSE

            text = await connector.metrics()
            assert "outlast_tunnel_ha_connections 4.0" in text
            assert 'edge_location="fra"} 1.0' in text and 'edge_location="ams"} 1.0' in text
            assert "outlast_tunnel_total_requests_total 3.0" in text
            status, ready = await connector.ready()
            assert status == 200 and ready["readyConnections"] == 4
            assert uuid.UUID(str(ready["connectorId"]))
            registered = [e for e in connector.events() if e.get("event") == "registered"]
            assert {e["location"] for e in registered} == {"ams", "fra"}
            assert all("connIndex" in e for e in registered)
        memory = json.loads((tmp_path / "state" / f"edges-{tunnel.tunnel_id}.json").read_text())
        assert {(e["address"], e["location"]) for e in memory["edges"]} == {
            (ams.address, "ams"),
            (fra.address, "fra"),
        }
        secret_b64 = base64.b64encode(tunnel.secret).decode()
        log = connector.log()
        assert secret_b64 not in log and tunnel.secret.hex() not in log
        assert derive_verifier(tunnel.secret, tunnel.tunnel_id) not in log
        assert not any(r.proof in log for _, r in ams.attempts + fra.attempts)


async def test_ingress_rules_from_config_file(tmp_path: Path) -> None:
    tls = TlsMaterial.create(tmp_path / "tls")
    tunnel = Tunnel.create(tmp_path)
    async with (
        origin_server("api") as api,
        origin_server("web") as site,
        pops(tls, tunnel, "ams") as (ams,),
    ):
        config = tmp_path / "config.yml"
        config.write_text(
            f"tunnel: {tunnel.tunnel_id}\n"
            "ingress:\n"
            f"  - hostname: app.example.com\n    path: ^/api/\n    service: {api}\n"
            f"  - hostname: '*.example.com'\n    service: {site}\n"
            "  - service: http_status:404\n"
        )
        async with run_connector(
            tmp_path,
            tunnel,
            tls,
            [ams.address],
            extra=["--config", str(config), "--ha-connections", "1"],
        ) as connector:
            await connector.wait_ready(1)
            _, headers, _ = await ams.visit("GET", "/api/x")
            assert headers["x-origin-name"] == "api"
            _, headers, _ = await ams.visit("GET", "/api/x", host="www.example.com:443")
            assert headers["x-origin-name"] == "web"
            status, _, data = await ams.visit("GET", "/", host="other.org")
            assert status == 404 and b"ingress rule #3" in data


async def test_invalid_ingress_exits_2_naming_the_rule(tmp_path: Path) -> None:
    tls = TlsMaterial.create(tmp_path / "tls")
    tunnel = Tunnel.create(tmp_path)
    config = tmp_path / "config.yml"
    config.write_text("ingress:\n  - hostname: a.example.com\n    service: http://127.0.0.1:1\n")
    async with run_connector(
        tmp_path,
        tunnel,
        tls,
        ["127.0.0.1:1"],
        extra=["--config", str(config)],
        wait_metrics=False,
    ) as connector:
        assert await connector.process.wait(30) == 2
    assert "ingress rule #1 (hostname 'a.example.com')" in connector.log()


async def test_origin_down_gives_502_and_counts_an_error(tmp_path: Path) -> None:
    tls = TlsMaterial.create(tmp_path / "tls")
    tunnel = Tunnel.create(tmp_path)
    async with pops(tls, tunnel, "ams") as (ams,):
        async with run_connector(
            tmp_path,
            tunnel,
            tls,
            [ams.address],
            url=f"http://127.0.0.1:{free_port()}",
            extra=["--ha-connections", "1"],
        ) as connector:
            await connector.wait_ready(1)
            status, _, data = await ams.visit("GET", "/")
            assert status == 502 and b"origin unreachable" in data
            assert "outlast_tunnel_request_errors_total 1.0" in await connector.metrics()


async def test_permanent_refusal_exits_1_with_what_to_do(tmp_path: Path) -> None:
    tls = TlsMaterial.create(tmp_path / "tls")
    tunnel = Tunnel.create(tmp_path)
    async with pops(tls, tunnel, "ams") as (ams,):
        ams.override = lambda request: RegistrationResponse.refusal(
            RefusalCause.TUNNEL_DELETED, should_retry=False
        )
        async with run_connector(
            tmp_path, tunnel, tls, [ams.address], wait_metrics=False
        ) as connector:
            assert await connector.process.wait(30) == 1
        log = connector.log()
        assert "was deleted" in log and "outlast tunnel create" in log
        assert len(ams.attempts) <= 4, "a permanent error is not retried"


async def test_wrong_secret_is_refused_and_stops_the_connector(tmp_path: Path) -> None:
    tls = TlsMaterial.create(tmp_path / "tls")
    tunnel = Tunnel.create(tmp_path)
    wrong = tunnel.with_other_secret(tmp_path)
    async with pops(tls, tunnel, "ams") as (ams,):
        async with run_connector(
            tmp_path, tunnel, tls, [ams.address], credentials_file=wrong, wait_metrics=False
        ) as connector:
            assert await connector.process.wait(30) == 1
        log = connector.log()
        assert "rejected the tunnel secret" in log and str(wrong) in log
        assert base64.b64encode(tunnel.secret).decode() not in log


async def test_unknown_tunnel_is_retried_honouring_retry_after(tmp_path: Path) -> None:
    tls = TlsMaterial.create(tmp_path / "tls")
    tunnel = Tunnel.create(tmp_path)
    async with pops(tls, tunnel, "ams") as (ams,):
        known_at = time.monotonic() + 2.5

        def propagating(request: RegistrationRequest) -> RegistrationResponse | None:
            if time.monotonic() < known_at:
                return RegistrationResponse.refusal(
                    RefusalCause.UNKNOWN_TUNNEL, should_retry=True, retry_after=0.8
                )
            return None

        ams.override = propagating
        async with run_connector(
            tmp_path, tunnel, tls, [ams.address], extra=["--ha-connections", "1"]
        ) as connector:
            await connector.wait_ready(1, timeout=30)
            times = [t for t, r in ams.attempts]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert len(times) >= 3 and all(g >= 0.75 for g in gaps), gaps
            assert [r.attempt for _, r in ams.attempts][:3] == [0, 1, 2]
            text = await connector.metrics()
            assert 'outlast_tunnel_register_fail_total{reason="unknown tunnel"}' in text


async def test_sigterm_unregisters_drains_and_exits_0(tmp_path: Path) -> None:
    tls = TlsMaterial.create(tmp_path / "tls")
    tunnel = Tunnel.create(tmp_path)
    async with origin_server() as origin, pops(tls, tunnel, "ams") as (ams,):
        async with run_connector(
            tmp_path, tunnel, tls, [ams.address], url=origin, extra=["--ha-connections", "2"]
        ) as connector:
            await connector.wait_ready(2)
            tunnels = ams.live()
            slow = asyncio.ensure_future(ams.visit("GET", "/slow?delay=1.5"))
            await asyncio.sleep(0.3)
            connector.process.send_signal(signal.SIGTERM)
            await wait_until(lambda: all(t.draining for t in tunnels), 5, "unregistered")
            status, _ = await connector.ready()
            assert status == 503, "/ready drops as soon as the connections unregister"
            code, _, _ = await asyncio.wait_for(slow, 10)
            assert code == 200, "the in-flight request finished during the drain"
            assert await connector.process.wait(15) == 0
            reasons = [await asyncio.wait_for(t.wait_closed(), 5) for t in tunnels]
            assert reasons == ["unregistered", "unregistered"]
        events = [e.get("event") for e in connector.events()]
        assert "unregistered" in events and "stopped" in events


async def test_second_signal_exits_at_once(tmp_path: Path) -> None:
    tls = TlsMaterial.create(tmp_path / "tls")
    tunnel = Tunnel.create(tmp_path)
    async with origin_server() as origin, pops(tls, tunnel, "ams") as (ams,):
        async with run_connector(
            tmp_path,
            tunnel,
            tls,
            [ams.address],
            url=origin,
            extra=["--ha-connections", "1", "--grace-period", "60"],
        ) as connector:
            await connector.wait_ready(1)
            slow = asyncio.ensure_future(ams.visit("GET", "/slow?delay=50"))
            await asyncio.sleep(0.3)
            connector.process.send_signal(signal.SIGTERM)
            await wait_until(lambda: bool(ams.tunnels) and ams.tunnels[0].draining, 5, "drain")
            started = time.monotonic()
            connector.process.send_signal(signal.SIGTERM)
            assert await connector.process.wait(10) == 130
            assert time.monotonic() - started < 5
            slow.cancel()
            with contextlib.suppress(BaseException):
                await slow
