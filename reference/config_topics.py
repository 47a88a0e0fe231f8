"""MQTT topic names shared by the control plane and the edges (see docs/config-distribution.md)."""

from __future__ import annotations

TUNNEL_SUFFIX = "tunnels.outlast.test"
PREFIX = "outlast/v1"

TUNNELS_FILTER = f"{PREFIX}/tunnels/+"
ZONES_FILTER = f"{PREFIX}/zones/+"
DNS_FILTER = f"{PREFIX}/dns/+/+"
EVENTS_FILTER = f"{PREFIX}/events/+"
EDGE_CONNECTIONS_FILTER = f"{PREFIX}/edges/+/connections"


def tunnel_topic(tunnel_id: str) -> str:
    return f"{PREFIX}/tunnels/{tunnel_id}"


def zone_topic(zone_id: str) -> str:
    return f"{PREFIX}/zones/{zone_id}"


def dns_topic(zone_id: str, record_id: str) -> str:
    return f"{PREFIX}/dns/{zone_id}/{record_id}"


def events_topic(pop: str) -> str:
    return f"{PREFIX}/events/{pop}"


def edge_connections_topic(pop: str) -> str:
    return f"{PREFIX}/edges/{pop}/connections"


def tunnel_target(tunnel_id: str) -> str:
    """CNAME content that routes a hostname to ``tunnel_id``."""
    return f"{tunnel_id}.{TUNNEL_SUFFIX}"
