"""DNS containment for the real cloudflared: its lookups never leave the machine.

Even with ``--edge``, cloudflared asks the system resolver for ``cfd-features.argotunnel.com``
(TXT, feature flags) and ``region1.v2.argotunnel.com`` (its DNS local resolver), and Go's
resolver reads ``/etc/resolv.conf`` only (port 53, no port option). So each replica runs in its
own mount namespace (``unshare --mount``, root only) where ``/etc/resolv.conf`` is bind-mounted
from a file naming the stack's :class:`StackResolver`: a DNS server on a loopback address of
its own (``127.53.X.Y:53``, unique per stack) that answers every query itself and records
each one, so a test can count that every query arrived here. It answers NXDOMAIN (cloudflared
then carries on with its defaults), except the edge SRV record
``_v2-origintunneld._tcp.argotunnel.com``: cloudflared looks it up at every start even with
``--edge`` (``cmd/cloudflared/tunnel/cmd.go``, for its service IP) and, when that lookup fails,
retries it by DNS-over-TLS at ``1.1.1.1:853``; so it gets Cloudflare's two region names
(whose addresses are then NXDOMAIN, which cloudflared ignores). Its connectivity pre-checks,
which dial ``api.cloudflare.com:443``, are switched off with ``--no-prechecks``
(``harness/stack/cloudflared.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from dnslib import QTYPE, RCODE, RR, SRV, DNSRecord

from reference.files import atomic_write

DNS_PORT = 53
#: The SRV record cloudflared must find (else it falls back to DNS over TLS at 1.1.1.1).
EDGE_SRV_SUFFIX = "origintunneld._tcp.argotunnel.com"
EDGE_REGIONS = ("region1.v2.argotunnel.com", "region2.v2.argotunnel.com")


def resolver_host(port: int) -> str:
    """A loopback address of the stack's own, ``127.53.X.Y`` from a port the stack reserved
    (ports are unique per machine, so two stacks never share the address)."""
    return f"127.53.{port >> 8 & 0xFF}.{port & 0xFF}"


def can_contain() -> tuple[bool, str]:
    """Whether a mount namespace can be made here, and if not, why."""
    if not sys.platform.startswith("linux"):
        return False, "mount namespaces are Linux only"
    if os.geteuid() != 0:
        return False, "making a mount namespace needs root"
    if shutil.which("unshare") is None:
        return False, "unshare (util-linux) is not on PATH"
    return True, ""


def write_resolv_conf(path: Path, host: str) -> Path:
    """The ``resolv.conf`` a contained replica sees: only the stack's resolver."""
    atomic_write(path, f"nameserver {host}\noptions timeout:1 attempts:1\n".encode(), mode=0o644)
    return path


def contained_argv(argv: list[str], resolv_conf: Path) -> list[str]:
    """``argv`` run in a new mount namespace whose ``/etc/resolv.conf`` is ``resolv_conf``. No
    fork: unshare and sh exec into the program, so its pid, process group and parent-death
    signal stay those the stack gave it."""
    script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        script,
        str(resolv_conf),
        *argv,
    ]


@dataclass(frozen=True)
class Query:
    """One question the resolver was asked."""

    name: str
    qtype: str
    client: str


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, resolver: StackResolver) -> None:
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.resolver.answer(data, addr[0])
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


@dataclass
class StackResolver:
    """UDP DNS on ``host:53`` that answers every query (NXDOMAIN but for the edge SRV record)
    and records it (also as JSON lines in ``log_path``)."""

    host: str
    log_path: Path
    port: int = DNS_PORT
    queries: list[Query] = field(default_factory=list)
    _transport: asyncio.DatagramTransport | None = None

    def answer(self, packet: bytes, client: str) -> bytes | None:
        try:
            request = DNSRecord.parse(packet)
        except Exception:  # not DNS: nothing to answer
            return None
        if request.header.qr:
            return None
        reply = request.reply()
        reply.header.rcode = RCODE.NXDOMAIN
        for question in request.questions:
            query = Query(str(question.qname).rstrip("."), QTYPE.get(question.qtype), client)
            if query.qtype == "SRV" and query.name.endswith(EDGE_SRV_SUFFIX):
                reply.header.rcode = RCODE.NOERROR
                for target in EDGE_REGIONS:
                    reply.add_answer(
                        RR(question.qname, QTYPE.SRV, rdata=SRV(1, 1, 7844, target), ttl=60)
                    )
            self.queries.append(query)
            line = {"t": time.time(), "name": query.name, "type": query.qtype, "client": client}
            with self.log_path.open("a") as log:
                log.write(json.dumps(line) + "\n")
        return bytes(reply.pack())

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self.port)
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
