"""Identity of a legacy ("classic") tunnel: one per zone and hostname.

A classic tunnel has no object a user creates: ``outlast tunnel run --legacy --hostname HOST``
registers with the account's origin certificate, and the control plane keeps one tunnel per
``(zone, hostname)``. Its id is derived from those two, so the connector (which sends it in its
registration), the control plane (which checks it) and the harness (which must know which
tunnel answered a visitor) all agree without asking each other. See docs/legacy.md.
"""

from __future__ import annotations

import uuid

#: Namespace of legacy tunnel ids (uuid5); fixed forever, or every legacy tunnel changes id.
LEGACY_NAMESPACE = uuid.UUID("6c1f0a52-8a0e-4d3b-9a55-0b7d1c2e9f40")


def normalize_hostname(hostname: str) -> str:
    """Lower case, no surrounding blanks, no trailing dot."""
    return hostname.strip().rstrip(".").lower()


def legacy_tunnel_id(zone_id: str, hostname: str) -> str:
    """The id of the legacy tunnel serving ``hostname`` in zone ``zone_id``."""
    return str(uuid.uuid5(LEGACY_NAMESPACE, f"{zone_id.lower()}/{normalize_hostname(hostname)}"))
