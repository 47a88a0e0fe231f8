"""Issue 21's attacks, replayed against a running local stack: prints ``held`` or ``BROKEN``
per finding (``scripts/security-probes --state-dir DIR``; docs/security.md).

Every probe talks to 127.0.0.1 only and leaves the stack as it found it, except for the extra
account it bootstraps (``probe-attacker-<random>``) and the DNS record it tries to forge under
a made-up record id. Exit status: 0 when every probe held, 1 when one broke, 2 when the stack
could not be read.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import socket
import ssl
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import click
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dnslib import DNSRecord

from reference.broker.auth import CONTROLPLANE_USER, BrokerCredential
from reference.broker.probe import ConnectionClosed, RawMqttClient
from reference.broker.tls import client_context
from reference.config_signing import ConfigSigner
from reference.config_topics import DNS_FILTER, TUNNELS_FILTER, dns_topic, tunnel_target
from reference.controlplane.broker_link import CLIENT_ID as CONTROLPLANE_CLIENT_ID
from reference.tunnel_auth import compute_proof
from reference.wire import RegistrationRefused
from reference.wire.connector import connect_tunnel
from reference.wire.messages import RegistrationRequest


@dataclass
class Finding:
    """One probe's outcome: what was tried and what the stack answered."""

    name: str
    held: bool
    answer: str


Probe = Callable[["Target"], Awaitable[Finding]]


class Target:
    """The running stack, from its ``stack.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.data: dict[str, Any] = json.loads((state_dir / "stack.json").read_text())
        host, port = self.data["broker"].rsplit(":", 1)
        self.broker = (host, int(port))
        # A stack without a broker CA (older versions) is probed over plaintext MQTT.
        ca = self.data.get("broker_ca")
        self.broker_tls = client_context(Path(ca)) if ca else None
        self.tunnel = self.data["tunnels"][0]
        self.hostname: str = self.tunnel["hostname"]
        self.visitor_url: str = self.data["visitor_url"]
        self.admin_token = Path(self.data["admin_token_file"]).read_text().strip()
        self.api = self.data["api_url"] + "/client/v4"
        self._attacker: dict[str, str] | None = None

    async def attacker(self) -> dict[str, str]:
        """Another account (made once with the admin bootstrap endpoint): its ids and token."""
        if self._attacker is None:
            name = f"probe-attacker-{secrets.token_hex(3)}"
            async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
                made = await http.post(
                    f"{self.api}/admin/bootstrap",
                    headers={"Authorization": f"Bearer {self.admin_token}"},
                    json={"account": name, "zone": f"{name}.example", "email": f"a@{name}.example"},
                )
            made.raise_for_status()
            self._attacker = {**made.json()["result"], "zone": f"{name}.example"}
        return self._attacker

    def credential(self, user: str) -> BrokerCredential:
        return BrokerCredential.load(Path(self.data["broker_credentials"][user]))

    def mqtt(self, user: str, identifier: str | None = None) -> aiomqtt.Client:
        credential = self.credential(user)
        return aiomqtt.Client(
            *self.broker,
            identifier=identifier or user,
            username=credential.username,
            password=credential.password,
            tls_context=self.broker_tls,
            timeout=5.0,
        )

    async def visit(self) -> httpx.Response:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            return await http.get(f"{self.visitor_url}/probe", headers={"Host": self.hostname})


async def _retained(target: Target, user: str, topic_filter: str) -> list[aiomqtt.Message]:
    """The retained messages under ``topic_filter`` that ``user`` may read.

    Client ids are the usernames, so this session and the real client of ``user`` take each
    other's session over: the messages that arrived before that are what counts.
    """
    found: list[aiomqtt.Message] = []
    for _ in range(5):
        try:
            async with target.mqtt(user, identifier=user) as client:
                await client.subscribe(topic_filter, qos=1)
                async with asyncio.timeout(2.0):
                    async for message in client.messages:
                        found.append(message)
        except (TimeoutError, aiomqtt.MqttError):
            pass
        if found:
            return found
        await asyncio.sleep(0.5)
    return found


async def probe_broker_anonymous(target: Target) -> Finding:
    answers = []
    try:
        plain = await RawMqttClient.open(*target.broker)
        code = (await plain.connect("probe", timeout=5)).return_code
        answers.append(f"plaintext CONNACK {code}")
    except (ConnectionClosed, ConnectionError, TimeoutError) as exc:
        answers.append(f"plaintext refused ({type(exc).__name__})")
    try:
        await RawMqttClient.open(*target.broker, tls=ssl.create_default_context())
        answers.append("untrusted CA connected")
    except (ssl.SSLError, ConnectionError):
        answers.append("untrusted CA refused")
    async with await RawMqttClient.open(*target.broker, tls=target.broker_tls) as anonymous:
        code = (await anonymous.connect("probe")).return_code
        answers.append(f"anonymous TLS CONNACK {code}")
    held = answers[0].startswith("plaintext refused") and answers[1:] == [
        "untrusted CA refused",
        "anonymous TLS CONNACK 5",
    ]
    return Finding("1/2 broker: plaintext, untrusted CA, anonymous", held, "; ".join(answers))


async def probe_stolen_verifier(target: Target) -> Finding:
    """Item 1: an insider with edge-ams's broker password reads the verifier and registers."""
    tunnel_id = target.tunnel["id"]
    messages = await _retained(target, "edge-ams", TUNNELS_FILTER)
    mine = [m for m in messages if m.topic.value.endswith(tunnel_id)]
    if not mine:
        return Finding("1 stolen verifier", False, "no retained tunnel message readable")
    payload = json.loads(json.loads(bytes(mine[0].payload))["payload"])
    verifier = str(payload["verifier"])
    account = str(payload["account_tag"])
    pop = next(iter(target.data["pops"].values()))
    host, port = pop["tunnel"].rsplit(":", 1)
    edge_tls = ssl.create_default_context(cafile=target.data["edge_ca"])
    wrong_secret = secrets.token_bytes(32)
    connector_id = str(uuid.uuid4())

    def build(nonce: str) -> RegistrationRequest:
        return RegistrationRequest(
            tunnel_id=tunnel_id,
            account_tag=account,
            conn_index=0,
            connector_id=connector_id,
            proof=compute_proof(verifier, nonce, tunnel_id, account, 0, connector_id),
            tunnel_secret=base64.b64encode(wrong_secret).decode(),
            version="probe",
            arch="linux_x86_64",
        )

    async def refuse_streams(*_args: object) -> None:
        return None

    try:
        tunnel = await connect_tunnel(
            host, int(port), edge_tls, build_registration=build, handle_stream=refuse_streams,
            server_hostname="localhost",
        )  # fmt: skip
    except RegistrationRefused as exc:
        return Finding("1 stolen verifier", True, f"refused: {exc.response.cause}")
    await tunnel.close()
    return Finding("1 stolen verifier", False, "registered with the verifier and a wrong secret")


async def probe_forged_record(target: Target) -> Finding:
    """Item 2: a forged DNS record at version 999999 (edge's password: ACL; the control
    plane's own password, as if the broker account were stolen: signature)."""
    before = await target.visit()
    messages = await _retained(target, "edge-ams", DNS_FILTER)
    if not messages:
        return Finding("2 forged retained record", False, "no DNS record readable")
    original = json.loads(json.loads(bytes(messages[0].payload))["payload"])
    other_tunnel = str(uuid.uuid4())
    record_id = f"probe-{secrets.token_hex(4)}"
    forged = {
        **original,
        "version": 999999,
        "record_id": record_id,
        "content": tunnel_target(other_tunnel),
        "tunnel_id": other_tunnel,
    }
    topic = dns_topic(str(original["zone_id"]), record_id)
    impostor = ConfigSigner(Ed25519PrivateKey.generate())
    for user in ("edge-ams", CONTROLPLANE_USER):
        async with target.mqtt(user) as client:
            await client.publish(topic, json.dumps(forged).encode(), qos=1, retain=True)
            await client.publish(topic, impostor.sign(topic, forged), qos=1, retain=True)
    await asyncio.sleep(1.5)
    after = await target.visit()
    same = after.headers.get("X-Outlast-Tunnel-Id") == before.headers.get("X-Outlast-Tunnel-Id")
    async with target.mqtt(CONTROLPLANE_USER) as client:  # leave no forged retained message
        await client.publish(topic, b"", qos=1, retain=True)
    answer = f"visitor {before.status_code} -> {after.status_code}, same tunnel: {same}"
    return Finding("2 forged retained record", after.status_code == 200 and same, answer)


async def probe_foreign_cname(target: Target) -> Finding:
    """Item 3: another account routes its hostname to this stack's tunnel."""
    attacker = await target.attacker()
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        answer = await http.post(
            f"{target.api}/zones/{attacker['zone_id']}/dns_records",
            headers={"Authorization": f"Bearer {attacker['api_token']}"},
            json={
                "type": "CNAME",
                "name": f"hijack.{attacker['zone']}",
                "content": tunnel_target(target.tunnel["id"]),
            },
        )
    codes = [e.get("code") for e in answer.json().get("errors", [])]
    return Finding(
        "3 CNAME to another account's tunnel",
        answer.status_code == 403 and 1020 in codes,
        f"{answer.status_code} {codes}",
    )


async def probe_faultproxy_listen(target: Target) -> Finding:
    """Item 5: a proxy on every interface."""
    url = target.data["faultproxy"]["url"]
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        answer = await http.post(
            f"{url}/proxies",
            json={"name": f"probe-{secrets.token_hex(3)}", "listen": "0.0.0.0:0",
                  "upstream": "127.0.0.1:9"},
        )  # fmt: skip
        if answer.status_code < 300:
            await http.delete(f"{url}/proxies/{answer.json()['name']}")
    return Finding("5 fault proxy on 0.0.0.0", answer.status_code >= 400, str(answer.status_code))


async def probe_low_findings(target: Target) -> Finding:
    """Item 8: deep JSON, unknown path status, toxicity range, DNS opcode, bad since."""
    api = target.api
    attacker = await target.attacker()
    user = {"Authorization": f"Bearer {attacker['api_token']}"}
    answers: dict[str, object] = {}
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        deep = "[" * 100_000 + "]" * 100_000
        answers["deep_json"] = (
            await http.post(
                f"{api}/zones/{attacker['zone_id']}/dns_records",
                content=deep,
                headers={**user, "Content-Type": "application/json"},
            )
        ).status_code
        answers["unknown_path"] = (await http.get(f"{api}/no/such/path")).status_code
        faultproxy = target.data["faultproxy"]["url"]
        link = next(iter(target.data["faultproxy"]["proxies"]))
        answers["toxicity_5"] = (
            await http.post(
                f"{faultproxy}/proxies/{link}/toxics",
                json={"type": "latency", "toxicity": 5.0, "attributes": {"latency": 1}},
            )
        ).status_code
        answers["since_notadate"] = (
            await http.get(
                f"{api}/accounts/{attacker['account_id']}/audit_logs?since=notadate", headers=user
            )
        ).status_code
    host, port = target.data["dns"].rsplit(":", 1)
    question = DNSRecord.question(target.hostname, "A")
    question.header.opcode = 2  # STATUS
    question.header.ad = 1
    reply = DNSRecord.parse(question.send(host, int(port), timeout=5))
    answers["dns_status_rcode"] = reply.header.rcode
    answers["dns_ad"] = reply.header.ad
    held = (
        answers["deep_json"] == 400
        and answers["unknown_path"] == 404
        and answers["toxicity_5"] == 400
        and answers["since_notadate"] == 400
        and answers["dns_status_rcode"] == 4  # NOTIMP
        and answers["dns_ad"] == 0
    )
    return Finding("8 low findings", held, json.dumps(answers))


async def probe_client_id_takeover(target: Target) -> Finding:
    """New: edge-ams connects with the control plane's client id."""
    url = target.data["api_url"] + "/metrics"

    def connects(text: str) -> str:
        lines = [ln for ln in text.splitlines() if ln.startswith("outlast_controlplane_broker_")]
        return "; ".join(lines)

    codes = []
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        before = connects((await http.get(url)).text)
        # The control plane's client id: its username now, CLIENT_ID in older versions.
        for client_id in (CONTROLPLANE_USER, CONTROLPLANE_CLIENT_ID):
            async with await RawMqttClient.open(*target.broker, tls=target.broker_tls) as raw:
                raw.credential = target.credential("edge-ams")
                codes.append((await raw.connect(client_id, keepalive=30)).return_code)
                await asyncio.sleep(1.5)
        after = connects((await http.get(url)).text)
    return Finding(
        "new: client-id takeover",
        before == after,
        f"CONNACK {codes}; control plane's broker session untouched: {before == after}",
    )


async def probe_slow_headers(target: Target) -> Finding:
    """Slow clients: a second request on a keep-alive connection whose headers stall."""
    pop = next(iter(target.data["pops"].values()))
    host, port = pop["visitor_url"].removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /probe HTTP/1.1\r\nHost: {target.hostname}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    writer.write(f"GET /probe HTTP/1.1\r\nHost: {target.hostname}\r\n".encode())
    try:
        answer = await asyncio.wait_for(reader.read(), 30)
    except TimeoutError:
        answer = b"(still open after 30 s)"
    writer.close()
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    return Finding(
        "slow clients: stalled second request", status.startswith("HTTP/1.1 408"), status
    )


PROBES: list[Probe] = [
    probe_broker_anonymous,
    probe_stolen_verifier,
    probe_forged_record,
    probe_foreign_cname,
    probe_faultproxy_listen,
    probe_low_findings,
    probe_client_id_takeover,
    probe_slow_headers,
]


async def run_probes(target: Target) -> list[Finding]:
    findings = []
    for probe in PROBES:
        try:
            findings.append(await probe(target))
        except Exception as exc:  # a probe that crashes is reported, the others still run
            name = probe.__name__.removeprefix("probe_")
            findings.append(Finding(name, False, f"probe failed: {type(exc).__name__}: {exc}"))
    return findings


@click.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".outlast/stack"),
    show_default=True,
    help="State directory of a stack from `outlast stack up`.",
)
def main(state_dir: Path) -> None:
    """Replay issue 21's attacks against a running local stack; print held/BROKEN each."""
    try:
        target = Target(state_dir)
    except (OSError, KeyError, ValueError) as exc:
        click.echo(f"cannot read the stack in {state_dir}: {exc}", err=True)
        sys.exit(2)
    socket.setdefaulttimeout(10)
    findings = asyncio.run(run_probes(target))
    for finding in findings:
        verdict = "held  " if finding.held else "BROKEN"
        click.echo(f"{verdict}  {finding.name}: {finding.answer}")
    sys.exit(0 if all(f.held for f in findings) else 1)


if __name__ == "__main__":
    main()
