"""Shared helpers for the edge tests (no tests here): a real mosquitto on a free port, a publisher
of contract payloads (docs/config-distribution.md), TLS material, the connector side of the wire
protocol driven from the test, and the argv of a real ``outlast serve edge`` process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.stack.ports import free_port
from harness.stack.process import ManagedProcess, outlast_argv
from harness.stack.readiness import wait_tcp
from reference import config_topics as topics
from reference.config_signing import ConfigSigner
from reference.pki import CertAndKey, create_ca, issue_certificate
from reference.tunnel_auth import compute_proof, derive_verifier
from reference.wire import (
    ConnectorStream,
    ConnectorTunnel,
    HeartbeatConfig,
    RegistrationRequest,
    WsMessageType,
    connect_tunnel,
)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


# ---- broker ----------------------------------------------------------------------------------


@dataclass
class Mosquitto:
    """A mosquitto bound to 127.0.0.1 with persistence, restartable on the same port."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None

    def _config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.data_dir}/",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to a user that cannot write here
        path.write_text("\n".join(lines) + "\n")
        return path

    async def start(self) -> None:
        self.process = ManagedProcess(
            "mosquitto", [MOSQUITTO, "-c", str(self._config())], self.data_dir / "mosquitto.log"
        )
        await self.process.start()
        await wait_tcp("127.0.0.1", self.port, timeout=15, process=self.process)

    async def stop(self) -> None:
        if self.process is not None:
            await self.process.stop()


@contextlib.asynccontextmanager
async def running_mosquitto(data_dir: Path) -> AsyncIterator[Mosquitto]:
    broker = Mosquitto(data_dir)
    try:
        await broker.start()
        yield broker
    finally:
        await broker.stop()


# ---- configuration (what the control plane would publish) ------------------------------------


@dataclass
class TunnelCreds:
    """A tunnel with its credentials, as the control plane would have created it."""

    account_tag: str = field(default_factory=lambda: secrets.token_hex(16))
    tunnel_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    name: str = "web"

    @property
    def verifier(self) -> str:
        return derive_verifier(self.secret, self.tunnel_id)


@dataclass
class ConfigWorld:
    """Builds contract payloads with one increasing version counter."""

    zone_id: str = field(default_factory=lambda: secrets.token_hex(16))
    zone_name: str = "example.com"
    version: int = 0

    def next_version(self) -> int:
        self.version += 1
        return self.version

    def zone(self, account_tag: str, *, deleted: bool = False) -> tuple[str, dict[str, Any]]:
        return topics.zone_topic(self.zone_id), {
            "version": self.next_version(),
            "zone_id": self.zone_id,
            "account_tag": account_tag,
            "name": self.zone_name,
            "deleted": deleted,
        }

    def tunnel(self, tunnel: TunnelCreds, *, deleted: bool = False) -> tuple[str, dict[str, Any]]:
        return topics.tunnel_topic(tunnel.tunnel_id), {
            "version": self.next_version(),
            "tunnel_id": tunnel.tunnel_id,
            "account_tag": tunnel.account_tag,
            "name": tunnel.name,
            "verifier": tunnel.verifier,
            "deleted": deleted,
            "updated_at": "2026-11-22T10:00:00Z",
        }

    def record(
        self,
        hostname: str,
        tunnel: TunnelCreds,
        *,
        record_id: str | None = None,
        deleted: bool = False,
    ) -> tuple[str, dict[str, Any]]:
        record_id = record_id or hashlib.md5(hostname.encode()).hexdigest()
        return topics.dns_topic(self.zone_id, record_id), {
            "version": self.next_version(),
            "record_id": record_id,
            "zone_id": self.zone_id,
            "zone_name": self.zone_name,
            "type": "CNAME",
            "name": hostname,
            "content": topics.tunnel_target(tunnel.tunnel_id),
            "tunnel_id": tunnel.tunnel_id,
            "proxied": True,
            "deleted": deleted,
        }


#: The test's control plane key: edges started by these helpers trust its public half.
CONFIG_SIGNER = ConfigSigner(Ed25519PrivateKey.generate())


def signed(topic: str, payload: dict[str, Any]) -> bytes:
    """The message the control plane would publish for ``payload``."""
    return CONFIG_SIGNER.sign(topic, payload)


async def publish(port: int, *messages: tuple[str, dict[str, Any]]) -> None:
    """Publish retained QoS 1 configuration messages, signed, like the control plane does."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"test-cp-{uuid.uuid4().hex[:8]}") as c:
        for topic, payload in messages:
            await c.publish(topic, signed(topic, payload), qos=1, retain=True)


# ---- TLS -------------------------------------------------------------------------------------


@dataclass
class EdgeTls:
    ca: CertAndKey
    cert_file: Path
    key_file: Path
    config_key: Path  # the public half of CONFIG_SIGNER, as an edge is provisioned with it

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca.cert_pem.decode())


def make_tls(directory: Path) -> EdgeTls:
    ca = create_ca("outlast test CA")
    leaf = issue_certificate(ca, "edge", dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "edge.pem", directory / "edge-key.pem"
    cert.write_bytes(leaf.cert_pem)
    key.write_bytes(leaf.key_pem)
    key.chmod(0o600)
    config_key = directory / "config-signing.pub"
    config_key.write_bytes(
        CONFIG_SIGNER.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return EdgeTls(ca, cert, key, config_key)


# ---- the connector side, driven from the test -----------------------------------------------


async def echo_handler(stream: ConnectorStream) -> None:
    """An origin inside the connector: HTTP echo (JSON) and WebSocket echo."""
    request = stream.request
    if request.websocket:
        await stream.accept_websocket()
        while (message := await stream.receive_ws()) is not None:
            if message.type == WsMessageType.CLOSE:
                break
            await stream.send_ws(message)
        await stream.end_body()
        return
    digest = hashlib.sha256()
    size = 0
    while chunk := await stream.read_body_chunk():
        digest.update(chunk)
        size += len(chunk)
    body = json.dumps(
        {
            "method": request.method,
            "path": request.path,
            "host": request.host,
            "body_sha256": digest.hexdigest(),
            "body_size": size,
            "headers": dict(request.headers),
        }
    ).encode()
    await stream.send_response(200, [("content-type", "application/json")])
    await stream.send_body(body)
    await stream.end_body()


async def register(
    tls: EdgeTls,
    port: int,
    tunnel: TunnelCreds,
    *,
    conn_index: int = 0,
    connector_id: str | None = None,
    handler: Any = echo_handler,
    secret: bytes | None = None,
    account_tag: str | None = None,
    sent_proofs: list[str] | None = None,
    verifier: str | None = None,
) -> ConnectorTunnel:
    """Register one connection for ``tunnel`` at the edge on ``port`` (TLS, real handshake).
    ``secret``/``account_tag`` override the credentials (to test refusals); ``verifier`` makes
    the proof with that verifier instead of the secret's (an attacker who read it off the
    broker); proofs sent are appended to ``sent_proofs``."""
    connector_id = connector_id or str(uuid.uuid4())
    sent_secret = secret or tunnel.secret
    verifier = verifier or derive_verifier(sent_secret, tunnel.tunnel_id)
    account = account_tag or tunnel.account_tag

    def build(nonce: str) -> RegistrationRequest:
        proof = compute_proof(verifier, nonce, tunnel.tunnel_id, account, conn_index, connector_id)
        if sent_proofs is not None:
            sent_proofs.append(proof)
        return RegistrationRequest(
            tunnel_id=tunnel.tunnel_id,
            account_tag=account,
            conn_index=conn_index,
            connector_id=connector_id,
            proof=proof,
            tunnel_secret=base64.b64encode(sent_secret).decode(),
            version="0.1.0-test",
            arch="linux_x86_64",
        )

    return await connect_tunnel(
        "127.0.0.1",
        port,
        tls.client_context(),
        build_registration=build,
        handle_stream=handler,
        heartbeat=HeartbeatConfig(interval=0.5, timeout=3.0),
        server_hostname="localhost",
    )


# ---- an edge process -------------------------------------------------------------------------


@dataclass
class EdgePorts:
    tunnel: int = field(default_factory=free_port)
    visitor: int = field(default_factory=free_port)
    dns: int = field(default_factory=free_port)
    metrics: int = field(default_factory=free_port)


def edge_process(
    pop: str, ports: EdgePorts, broker_port: int, cache_dir: Path, tls: EdgeTls, log: Path
) -> ManagedProcess:
    argv = outlast_argv(
        "serve",
        "edge",
        "--pop",
        pop,
        "--tunnel-listen",
        f"127.0.0.1:{ports.tunnel}",
        "--visitor-listen",
        f"127.0.0.1:{ports.visitor}",
        "--dns-listen",
        f"127.0.0.1:{ports.dns}",
        "--broker",
        f"127.0.0.1:{broker_port}",
        "--cache-dir",
        str(cache_dir),
        "--tls-cert",
        str(tls.cert_file),
        "--tls-key",
        str(tls.key_file),
        "--config-key",
        str(tls.config_key),
        "--metrics-listen",
        f"127.0.0.1:{ports.metrics}",
    )
    return ManagedProcess(f"edge-{pop}", argv, log)


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of one sample in Prometheus text, or None when absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        if metric != name:
            continue
        found = dict(
            part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part
        )
        found = {k: v.strip('"') for k, v in found.items()}
        if labels is None or all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


async def eventually(predicate: Any, *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``predicate()`` (sync or async) until truthy; return its value or raise."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {last!r})")
        await asyncio.sleep(interval)
