"""Authoritative DNS answers for the zones in the edge's configuration cache (pure, no I/O).

* A name in no known zone -> REFUSED (this edge is not authoritative for it).
* A name with a live record -> the record (CNAME queries get the CNAME; A queries for a proxied
  tunnel CNAME get the CNAME plus an A record of the tunnel target pointing at this edge's
  visitor address; other types -> NOERROR without answers, SOA in authority).
* A name in a known zone without a record -> NXDOMAIN with the zone's SOA in authority
  (the zone apex itself exists: SOA and NS queries for it are answered).
* ``<uuid>.tunnels.outlast.test`` -> A of this edge's visitor address while the tunnel is live,
  NXDOMAIN otherwise (an implicit zone every edge serves).
* Any opcode but QUERY (STATUS, NOTIFY, UPDATE, ...) -> NOTIMP. The AD bit is never set in an
  answer: this server does not validate DNSSEC (RFC 4035 §3.2.3 forbids echoing it).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dnslib import AAAA, CNAME, NS, OPCODE, QTYPE, RCODE, RR, SOA, TXT, A, DNSRecord

from reference.config_topics import TUNNEL_SUFFIX
from reference.edge.config_cache import ConfigCache
from reference.edge.config_models import DnsRecordConfig, normalize_name

RECORD_TTL = 60
SOA_MINIMUM_TTL = 60


@dataclass(frozen=True)
class DnsIdentity:
    """Who is answering: the PoP name (for the SOA/NS names) and the visitor address that
    A records of proxied names point at."""

    pop: str
    visitor_ip: str

    @property
    def nameserver(self) -> str:
        return f"{self.pop}.ns.outlast.test"


def _soa(zone_name: str, identity: DnsIdentity, serial: int) -> RR:
    return RR(
        zone_name,
        QTYPE.SOA,
        ttl=SOA_MINIMUM_TTL,
        rdata=SOA(
            identity.nameserver,
            f"hostmaster.{zone_name}",
            (serial % 2**32, 600, 300, 86400, SOA_MINIMUM_TTL),
        ),
    )


def _record_rdata(record: DnsRecordConfig) -> tuple[int, object] | None:
    content = record.content
    try:
        if record.type == "CNAME":
            return QTYPE.CNAME, CNAME(normalize_name(content))
        if record.type == "A" and ipaddress.ip_address(content).version == 4:
            return QTYPE.A, A(content)
        if record.type == "AAAA" and ipaddress.ip_address(content).version == 6:
            return QTYPE.AAAA, AAAA(content)
    except ValueError:
        return None
    if record.type == "TXT":
        return QTYPE.TXT, TXT(content)
    return None


def answer_query(cache: ConfigCache, request: DNSRecord, identity: DnsIdentity) -> DNSRecord:
    """The authoritative reply to ``request`` (one question; others get FORMERR)."""
    reply = request.reply()
    reply.header.ra = 0
    reply.header.ad = 0
    if request.header.opcode != OPCODE.QUERY:
        reply.header.rcode = RCODE.NOTIMP
        reply.header.aa = 0
        return reply
    if len(request.questions) != 1:
        reply.header.rcode = RCODE.FORMERR
        reply.header.aa = 0
        return reply
    question = request.questions[0]
    qname = normalize_name(str(question.qname))
    qtype = question.qtype
    serial = cache.version

    if qname == TUNNEL_SUFFIX or qname.endswith("." + TUNNEL_SUFFIX):
        return _answer_tunnel_target(cache, reply, qname, qtype, identity, serial)

    zone = cache.zone_for(qname)
    if zone is None:
        reply.header.aa = 0
        reply.header.rcode = RCODE.REFUSED
        return reply

    records = cache.records_named(qname)
    if not records:
        if qname == zone.name:
            _answer_apex(reply, zone.name, qtype, identity, serial)
        else:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(_soa(zone.name, identity, serial))
        return reply

    answered = False
    for record in records:
        rdata = _record_rdata(record)
        if rdata is None:
            continue
        rtype, data = rdata
        if rtype == QTYPE.CNAME and qtype != QTYPE.CNAME:
            # A CNAME answers every type; for A/ANY of a proxied tunnel name add the target's A.
            reply.add_answer(RR(qname, QTYPE.CNAME, ttl=RECORD_TTL, rdata=data))
            answered = True
            target = normalize_name(record.content)
            routed = cache.routed_tunnel_id(qname, record) is not None
            if (
                qtype in (QTYPE.A, QTYPE.ANY)
                and record.proxied
                and routed
                and _is_live_target(cache, target)
            ):
                reply.add_answer(RR(target, QTYPE.A, ttl=RECORD_TTL, rdata=A(identity.visitor_ip)))
            break
        if rtype == qtype or qtype == QTYPE.ANY:
            reply.add_answer(RR(qname, rtype, ttl=RECORD_TTL, rdata=data))
            answered = True
    if not answered:
        reply.add_auth(_soa(zone.name, identity, serial))
    return reply


def _answer_apex(
    reply: DNSRecord, zone_name: str, qtype: int, identity: DnsIdentity, serial: int
) -> None:
    if qtype in (QTYPE.SOA, QTYPE.ANY):
        reply.add_answer(_soa(zone_name, identity, serial))
    if qtype in (QTYPE.NS, QTYPE.ANY):
        reply.add_answer(RR(zone_name, QTYPE.NS, ttl=RECORD_TTL, rdata=NS(identity.nameserver)))
    if not reply.rr:
        reply.add_auth(_soa(zone_name, identity, serial))


def _is_live_target(cache: ConfigCache, target: str) -> bool:
    tunnel_id = cache.tunnel_for_target(target)
    if tunnel_id is None:
        return False
    tunnel = cache.tunnel(tunnel_id)
    return tunnel is not None and not tunnel.deleted


def _answer_tunnel_target(
    cache: ConfigCache,
    reply: DNSRecord,
    qname: str,
    qtype: int,
    identity: DnsIdentity,
    serial: int,
) -> DNSRecord:
    if qname == TUNNEL_SUFFIX:
        _answer_apex(reply, TUNNEL_SUFFIX, qtype, identity, serial)
        return reply
    if not _is_live_target(cache, qname):
        reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(_soa(TUNNEL_SUFFIX, identity, serial))
        return reply
    if qtype in (QTYPE.A, QTYPE.ANY):
        reply.add_answer(RR(qname, QTYPE.A, ttl=RECORD_TTL, rdata=A(identity.visitor_ip)))
    else:
        reply.add_auth(_soa(TUNNEL_SUFFIX, identity, serial))
    return reply
