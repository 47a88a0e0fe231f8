"""Planted defects: deliberately broken variants of the reference system.

A check that cannot fail proves nothing, so every scenario and check is also run against a
reference with one of these defects planted, and must then fail. They are switched on with the
environment variable ``OUTLAST_DEFECTS`` (comma-separated names), inherited by every component
the harness starts. Never set it in normal use; a component with a defect active logs a warning.
"""

from __future__ import annotations

import os

ENV = "OUTLAST_DEFECTS"

KNOWN: dict[str, str] = {
    "connector.no_reconnect": "a connection that drops is never dialled again",
    "connector.no_heartbeat": "the connector neither sends nor checks heartbeats",
    "edge.dns_follows_connections": (
        "the edge deletes a tunnel's DNS records when the tunnel's last connection there drops "
        "(the legacy behaviour, wrong for named tunnels)"
    ),
    "edge.forget_cache": "the edge ignores its cache file at start (serves nothing until "
    "the broker delivers configuration)",
    "connector.pinned_pops": (
        "each HA connection is pinned to one PoP and only ever redialled there (no failover "
        "when a PoP goes away)"
    ),
    "connector.retry_permanent_errors": (
        "the connector treats permanent refusals (tunnel deleted, bad secret) as transient and "
        "keeps redialling instead of stopping"
    ),
    "edge.registration_needs_broker": (
        "the edge refuses (retryable) every registration while its broker link is down, as if "
        "it had to announce a connection before accepting it"
    ),
    "edge.short_response_timeout": (
        "the edge gives the connector only 0.5 s to start a response (a timeout tuned on a LAN)"
    ),
    "edge.named_calls_control_plane": (
        "the edge confirms every named registration with the control plane, like a legacy one, "
        "and refuses it (retryable) while the control plane does not answer"
    ),
    "edge.legacy_from_cache": (
        "the edge accepts a legacy registration from its cache when the control plane does not "
        "answer (legacy tunnels would then survive a control-plane outage)"
    ),
    "wire.no_heartbeat": (
        "neither end of a tunnel connection sends heartbeats or times out a silent one"
    ),
    "edge.no_forwarding": (
        "a PoP without a connection of the tunnel answers 530 instead of forwarding the request "
        "to a peer PoP that holds one"
    ),
    "edge.replicas_share_indexes": (
        "the edge keys connections by tunnel and HA index only, so a second connector replica's "
        "connection replaces the first one's instead of joining it"
    ),
    "controlplane.keep_rolled_token": (
        "the control plane keeps accepting an API token after rolling it"
    ),
}


class UnknownDefect(ValueError):
    """``OUTLAST_DEFECTS`` names a defect that does not exist."""


def active() -> frozenset[str]:
    """Defects switched on in this process's environment (unknown names raise)."""
    names = frozenset(n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip())
    unknown = names - set(KNOWN)
    if unknown:
        raise UnknownDefect(
            f"{ENV} names unknown defect(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(KNOWN))}"
        )
    return names


def enabled(name: str) -> bool:
    """Whether defect ``name`` is planted."""
    if name not in KNOWN:
        raise UnknownDefect(f"no defect named {name!r}")
    return name in active()
