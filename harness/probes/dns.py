"""DNS queries to every edge: the CNAME of each hostname, over real UDP packets."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from dnslib import QTYPE, RCODE, DNSRecord

from harness.journal import Journal


class _OneAnswer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def query(
    server: tuple[str, int], name: str, qtype: str = "CNAME", timeout: float = 2.0
) -> DNSRecord:
    """One DNS query over UDP; raises TimeoutError or OSError."""
    request = DNSRecord.question(name, qtype)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_OneAnswer, remote_addr=server)
    try:
        transport.sendto(request.pack())
        data = await asyncio.wait_for(protocol.answer, timeout)
    finally:
        transport.close()
    reply = DNSRecord.parse(data)
    if reply.header.id != request.header.id:
        raise OSError("DNS reply id does not match the query")
    return reply


class DnsProbe:
    """Every ``interval`` seconds, asks each edge for the CNAME of each hostname."""

    def __init__(
        self,
        journal: Journal,
        servers: Mapping[str, tuple[str, int]],
        hostnames: Sequence[str],
        interval: float,
        timeout: float = 2.0,
    ) -> None:
        self.journal = journal
        self.servers = dict(servers)
        self.hostnames = list(hostnames)
        self.interval = interval
        self.timeout = timeout

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.gather(
                *(self.one(pop, hostname) for pop in self.servers for hostname in self.hostnames)
            )
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass

    async def one(self, pop: str, hostname: str) -> None:
        op = self.journal.invoke(
            "dns", "dns_query", {"pop": pop, "hostname": hostname, "qtype": "CNAME"}
        )
        try:
            reply = await query(self.servers[pop], hostname, "CNAME", self.timeout)
        except TimeoutError:
            self.journal.complete(op, "info", error=f"no DNS answer within {self.timeout:g} s")
            return
        except OSError as exc:
            self.journal.complete(op, "fail", error=f"{type(exc).__name__}: {exc}")
            return
        answer = sorted(str(rr.rdata).rstrip(".") for rr in reply.rr if rr.rtype == QTYPE.CNAME)
        self.journal.complete(op, "ok", {"rcode": RCODE[reply.header.rcode], "answer": answer})
