"""The real cloudflared (../shared/cloudflared/cloudflared) against an in-process edge PoP: its
HTTP/2 transport, Cap'n Proto registration, visitor traffic, and a refused secret.

Only 127.0.0.1 is dialled. cloudflared still asks the system resolver for
``cfd-features.argotunnel.com`` (TXT) and an SRV record; nothing here depends on the answers
(containing those lookups is issue 19, item 5)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from reference.edge.server import EdgeConfig, EdgeServer
from reference.pki import issue_certificate
from tests.integration.test_edge_support import (
    ConfigWorld,
    EdgeTls,
    TunnelCreds,
    eventually,
    make_tls,
    metric_value,
    publish,
    running_mosquitto,
)

CLOUDFLARED = Path(__file__).resolve().parents[3] / "shared" / "cloudflared" / "cloudflared"
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not os.access(CLOUDFLARED, os.X_OK),
        reason=f"the real cloudflared binary is not at {CLOUDFLARED} (CI has it)",
    ),
]
HOST = "app.example.com"


async def origin_handler(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    return web.json_response(
        {
            "method": request.method,
            "path": request.path_qs,
            "body_sha256": digest.hexdigest(),
            "body_size": size,
            "headers": dict(request.headers),
        },
        headers={"X-Origin": "yes"},
    )


@contextlib.asynccontextmanager
async def running_origin() -> AsyncIterator[int]:
    app = web.Application(client_max_size=2**30)
    app.router.add_route("*", "/{tail:.*}", origin_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = getattr(site, "_server", None)
    try:
        yield int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


@dataclass
class World:
    edge: EdgeServer
    tls: EdgeTls
    tunnel: TunnelCreds
    origin_port: int
    tmp: Path

    @property
    def visitor(self) -> str:
        return f"http://127.0.0.1:{self.edge.visitor_port}"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    tls = make_tls(tmp_path / "tls")
    # The certificate cloudflared checks: SNI h2.cftunnel.com, issued by the stack's CA.
    leaf = issue_certificate(tls.ca, "edge-ams", dns_names=("h2.cftunnel.com",))
    cert, key = tmp_path / "tls" / "cftunnel.pem", tmp_path / "tls" / "cftunnel-key.pem"
    cert.write_bytes(leaf.cert_pem)
    key.write_bytes(leaf.key_pem)
    (tmp_path / "tls" / "ca.pem").write_bytes(tls.ca.cert_pem)
    async with running_mosquitto(tmp_path / "broker") as broker, running_origin() as origin:
        config = EdgeConfig(
            pop="ams",
            tunnel_listen=("127.0.0.1", 0),
            visitor_listen=("127.0.0.1", 0),
            dns_listen=("127.0.0.1", 0),
            metrics_listen=("127.0.0.1", 0),
            broker=("127.0.0.1", broker.port),
            cache_dir=tmp_path / "cache",
            tls_cert=tls.cert_file,
            tls_key=tls.key_file,
            config_key=tls.config_key,
            cloudflared_listen=("127.0.0.1", 0),
            cloudflared_tls_cert=cert,
            cloudflared_tls_key=key,
        )
        cfg = ConfigWorld()
        tunnel = TunnelCreds()
        await publish(
            broker.port, cfg.zone(tunnel.account_tag), cfg.tunnel(tunnel), cfg.record(HOST, tunnel)
        )
        async with EdgeServer(config) as edge:
            await eventually(lambda: edge.cache.version == cfg.version)
            yield World(edge, tls, tunnel, origin, tmp_path)


@contextlib.asynccontextmanager
async def cloudflared(
    world: World, *, secret: bytes | None = None
) -> AsyncIterator[tuple[Path, asyncio.subprocess.Process]]:
    """Run the real binary against the edge's cloudflared listener; yields its log and process."""
    creds = world.tmp / f"{world.tunnel.tunnel_id}-{secrets.token_hex(3)}.json"
    creds.write_text(
        json.dumps(
            {
                "AccountTag": world.tunnel.account_tag,
                "TunnelSecret": base64.b64encode(secret or world.tunnel.secret).decode(),
                "TunnelID": world.tunnel.tunnel_id,
            }
        )
    )
    log = creds.with_suffix(".log")
    home = world.tmp / "home"
    home.mkdir(exist_ok=True)
    argv = [
        str(CLOUDFLARED),
        "tunnel",
        "--no-autoupdate",
        "--edge",
        f"127.0.0.1:{world.edge.cloudflared_port}",
        "--cacert",
        str(world.tmp / "tls" / "ca.pem"),
        "--protocol",
        "http2",
        "--metrics",
        "127.0.0.1:0",
        "--grace-period",
        "1s",
        "run",
        "--credentials-file",
        str(creds),
        "--url",
        f"http://127.0.0.1:{world.origin_port}",
        world.tunnel.tunnel_id,
    ]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, env=env
        )
    try:
        yield log, process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


def log_has(log: Path, pattern: str) -> re.Match[str] | None:
    return re.search(pattern, log.read_text(errors="replace"))


async def test_cloudflared_registers_and_serves_get_and_post(world: World) -> None:
    async with cloudflared(world) as (log, _process):
        await eventually(
            lambda: world.edge.connections.for_tunnel(world.tunnel.tunnel_id), timeout=30
        )
        line = await eventually(lambda: log_has(log, r"Registered tunnel connection.*"), timeout=10)
        assert "location=ams" in line.group(0) and "protocol=http2" in line.group(0)
        live = world.edge.connections.for_tunnel(world.tunnel.tunnel_id)[0]
        assert live.connection_id in line.group(0)
        assert live.connector_version.startswith("2026.8.2")
        async with httpx.AsyncClient(timeout=15, trust_env=False) as client:
            metrics = (await client.get(f"http://127.0.0.1:{world.edge.metrics_port}/metrics")).text
            ok = metric_value(
                metrics, "outlast_edge_registrations_total", {"result": "ok", "reason": "ok"}
            )
            assert ok is not None and ok >= 1
            got = await client.get(
                world.visitor + "/hello?x=1", headers={"Host": HOST, "X-Test": "t1"}
            )
            assert got.status_code == 200, got.text
            assert got.headers["X-Origin"] == "yes"
            assert got.headers["X-Outlast-Pop"] == "ams"
            echoed = got.json()
            assert (echoed["method"], echoed["path"]) == ("GET", "/hello?x=1")
            assert echoed["headers"]["X-Test"] == "t1"

            body = os.urandom(3 * 1024 * 1024 + 17)
            posted = await client.post(
                world.visitor + "/upload", content=body, headers={"Host": HOST}
            )
            assert posted.status_code == 200, posted.text
            assert posted.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
            assert posted.json()["body_size"] == len(body)


async def test_wrong_secret_is_refused_for_good(world: World) -> None:
    async with cloudflared(world, secret=secrets.token_bytes(32)) as (log, process):
        line = await eventually(
            lambda: log_has(log, r"Register tunnel error from server side.*"), timeout=30
        )
        assert 'error="unauthorized: invalid tunnel secret"' in line.group(0)
        # shouldRetry false at the first connection: cloudflared gives up and exits non-zero.
        await asyncio.wait_for(process.wait(), 20)
        assert process.returncode != 0
        assert log_has(log, r"initial tunnel connection failed.*invalid tunnel secret")
        assert not world.edge.connections.for_tunnel(world.tunnel.tunnel_id)
        async with httpx.AsyncClient(timeout=15, trust_env=False) as client:
            metrics = (await client.get(f"http://127.0.0.1:{world.edge.metrics_port}/metrics")).text
        failed = metric_value(
            metrics,
            "outlast_edge_registrations_total",
            {"result": "failed", "reason": "invalid_secret"},
        )
        assert failed == 1, line.group(0)  # one attempt: the refusal was taken as permanent
