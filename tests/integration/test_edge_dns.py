"""The edge's DNS server with real UDP and TCP packets (dnslib encodes/decodes them)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import pytest
from dnslib import OPCODE, QTYPE, RCODE, DNSRecord

from reference.config_topics import dns_topic, tunnel_target, tunnel_topic, zone_topic
from reference.edge.config_cache import ConfigCache
from reference.edge.dns_answers import DnsIdentity
from reference.edge.dns_server import DnsServer

ACCOUNT = "5ab4e9dfbd435d24068829fda0077963"
ZONE = "023e105f4ecef8ad9ca31a8372d0c353"
TUNNEL = "c1744f8b-faa1-48a4-9e5c-02ac921467fa"
TARGET = tunnel_target(TUNNEL)
VISITOR_IP = "127.0.0.1"


def build_cache() -> ConfigCache:
    cache = ConfigCache()
    cache.apply(
        zone_topic(ZONE),
        {
            "version": 1,
            "zone_id": ZONE,
            "account_tag": ACCOUNT,
            "name": "example.com",
            "deleted": False,
        },
    )
    cache.apply(
        tunnel_topic(TUNNEL),
        {
            "version": 2,
            "tunnel_id": TUNNEL,
            "account_tag": ACCOUNT,
            "name": "web",
            "verifier": "ab" * 32,
            "deleted": False,
        },
    )
    cache.apply(
        dns_topic(ZONE, "e1" * 16),
        {
            "version": 3,
            "record_id": "e1" * 16,
            "zone_id": ZONE,
            "zone_name": "example.com",
            "type": "CNAME",
            "name": "app.example.com",
            "content": TARGET,
            "tunnel_id": TUNNEL,
            "proxied": True,
            "deleted": False,
        },
    )
    return cache


@pytest.fixture
async def dns() -> AsyncIterator[tuple[DnsServer, ConfigCache]]:
    cache = build_cache()
    async with DnsServer(cache, DnsIdentity("ams", VISITOR_IP), "127.0.0.1", 0) as server:
        yield server, cache


async def udp_query(port: int, packet: bytes, timeout: float = 3.0) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(("127.0.0.1", port))
        await loop.sock_sendall(sock, packet)
        return await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout)


async def tcp_query(port: int, packets: list[bytes]) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        replies = []
        for packet in packets:
            writer.write(struct.pack("!H", len(packet)) + packet)
            await writer.drain()
            (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 3))
            replies.append(await asyncio.wait_for(reader.readexactly(length), 3))
        return replies
    finally:
        writer.close()


async def ask(port: int, name: str, qtype: str, *, tcp: bool = False) -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    packet = bytes(query.pack())
    raw = (await tcp_query(port, [packet]))[0] if tcp else await udp_query(port, packet)
    reply = DNSRecord.parse(raw)
    assert reply.header.id == query.header.id
    assert reply.header.qr == 1
    return reply


def answers(reply: DNSRecord) -> list[tuple[str, str, str]]:
    return [
        (str(rr.rname).rstrip("."), QTYPE[rr.rtype], str(rr.rdata).rstrip(".")) for rr in reply.rr
    ]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_cname_query_returns_the_tunnel_cname(
    dns: tuple[DnsServer, ConfigCache], tcp: bool
) -> None:
    server, _ = dns
    reply = await ask(server.port, "app.example.com", "CNAME", tcp=tcp)
    assert reply.header.rcode == RCODE.NOERROR
    assert reply.header.aa == 1
    assert answers(reply) == [("app.example.com", "CNAME", TARGET)]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_a_query_of_a_proxied_name_returns_cname_and_edge_address(
    dns: tuple[DnsServer, ConfigCache], tcp: bool
) -> None:
    server, _ = dns
    reply = await ask(server.port, "App.Example.COM", "A", tcp=tcp)
    assert answers(reply) == [
        ("app.example.com", "CNAME", TARGET),
        (TARGET, "A", VISITOR_IP),
    ]


async def test_unknown_name_in_a_known_zone_is_nxdomain_with_soa(
    dns: tuple[DnsServer, ConfigCache],
) -> None:
    server, _ = dns
    reply = await ask(server.port, "nope.example.com", "A")
    assert reply.header.rcode == RCODE.NXDOMAIN
    assert reply.rr == []
    assert [(str(rr.rname), QTYPE[rr.rtype]) for rr in reply.auth] == [("example.com.", "SOA")]
    # The SOA serial is the configuration version held.
    assert reply.auth[0].rdata.times[0] == 3


async def test_names_outside_known_zones_are_refused(dns: tuple[DnsServer, ConfigCache]) -> None:
    server, _ = dns
    for name in ("example.org", "app.example.com.evil.test", "com"):
        reply = await ask(server.port, name, "A")
        assert reply.header.rcode == RCODE.REFUSED, name
        assert reply.header.aa == 0


async def test_zone_apex_soa_and_nodata(dns: tuple[DnsServer, ConfigCache]) -> None:
    server, _ = dns
    soa = await ask(server.port, "example.com", "SOA")
    assert soa.header.rcode == RCODE.NOERROR and QTYPE[soa.rr[0].rtype] == "SOA"
    txt = await ask(server.port, "example.com", "TXT")
    assert txt.header.rcode == RCODE.NOERROR and txt.rr == [] and len(txt.auth) == 1


async def test_tunnel_target_name_resolves_while_the_tunnel_lives(
    dns: tuple[DnsServer, ConfigCache],
) -> None:
    server, cache = dns
    assert answers(await ask(server.port, TARGET, "A")) == [(TARGET, "A", VISITOR_IP)]
    cache.apply(tunnel_topic(TUNNEL), {"version": 9, "tunnel_id": TUNNEL, "deleted": True})
    assert (await ask(server.port, TARGET, "A")).header.rcode == RCODE.NXDOMAIN
    # The record still exists (named-tunnel DNS is persistent) but no A is synthesized for it.
    assert answers(await ask(server.port, "app.example.com", "A")) == [
        ("app.example.com", "CNAME", TARGET)
    ]


async def test_answers_follow_configuration_changes(dns: tuple[DnsServer, ConfigCache]) -> None:
    server, cache = dns
    cache.apply(
        dns_topic(ZONE, "e1" * 16),
        {
            "version": 10,
            "record_id": "e1" * 16,
            "zone_id": ZONE,
            "deleted": True,
            "name": "app.example.com",
        },
    )
    assert (await ask(server.port, "app.example.com", "CNAME")).header.rcode == RCODE.NXDOMAIN


async def test_several_queries_on_one_tcp_connection(dns: tuple[DnsServer, ConfigCache]) -> None:
    server, _ = dns
    packets = [
        bytes(DNSRecord.question(n, "CNAME").pack())
        for n in ("app.example.com", "nope.example.com", "example.org")
    ]
    replies = [DNSRecord.parse(r) for r in await tcp_query(server.port, packets)]
    assert [r.header.rcode for r in replies] == [RCODE.NOERROR, RCODE.NXDOMAIN, RCODE.REFUSED]


async def test_malformed_packets_get_formerr_or_silence(
    dns: tuple[DnsServer, ConfigCache],
) -> None:
    server, _ = dns
    header_only = struct.pack("!HHHHHH", 0x1234, 0x0100, 5, 0, 0, 0) + b"\x03ab"
    reply = DNSRecord.parse(await udp_query(server.port, header_only))
    assert reply.header.id == 0x1234 and reply.header.rcode == RCODE.FORMERR
    with pytest.raises(TimeoutError):
        await udp_query(server.port, b"\x01", timeout=0.3)
    # The server is still fine afterwards.
    assert (await ask(server.port, "app.example.com", "CNAME")).header.rcode == RCODE.NOERROR


async def test_opcode_status_is_notimp_and_ad_is_never_echoed(
    dns: tuple[DnsServer, ConfigCache],
) -> None:
    server, _ = dns
    status = DNSRecord.question("app.example.com", "A")
    status.header.opcode = OPCODE.STATUS
    for tcp in (False, True):
        packet = bytes(status.pack())
        raw = (
            (await tcp_query(server.port, [packet]))[0]
            if tcp
            else await udp_query(server.port, packet)
        )
        reply = DNSRecord.parse(raw)
        assert reply.header.rcode == RCODE.NOTIMP and reply.rr == [], tcp
        assert reply.header.opcode == OPCODE.STATUS and reply.header.aa == 0
    query = DNSRecord.question("app.example.com", "CNAME")
    query.header.ad = 1
    reply = DNSRecord.parse(await udp_query(server.port, bytes(query.pack())))
    assert reply.header.rcode == RCODE.NOERROR and reply.rr
    assert reply.header.ad == 0
