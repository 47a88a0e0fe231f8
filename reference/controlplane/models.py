"""The control plane's persistent objects, as the store returns them."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from reference.config_topics import tunnel_target


def utc_now() -> str:
    """RFC 3339 UTC timestamp with milliseconds (``2026-11-22T10:00:00.123Z``)."""
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    created_at: str

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created_on": self.created_at}


@dataclass(frozen=True)
class User:
    id: str
    email: str
    token_issued_at: str


@dataclass(frozen=True)
class Zone:
    id: str
    account_id: str
    account_name: str
    name: str
    created_at: str
    version: int

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": "active",
            "account": {"id": self.account_id, "name": self.account_name},
            "created_on": self.created_at,
        }

    def contains(self, hostname: str) -> bool:
        """True when ``hostname`` is the zone apex or a name below it."""
        return hostname == self.name or hostname.endswith("." + self.name)


@dataclass(frozen=True)
class Tunnel:
    id: str
    account_id: str
    name: str
    secret: bytes = field(repr=False)
    created_at: str
    deleted_at: str | None
    updated_at: str
    version: int

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True)
class LegacyTunnel:
    """A legacy ("classic") tunnel: one per zone and hostname, created by its first registration
    (id from ``reference.legacy_tunnel.legacy_tunnel_id``). It has no secret a user holds: every
    registration presents the account's API token instead (see docs/legacy.md)."""

    id: str
    account_id: str
    zone_id: str
    hostname: str
    verifier: str = field(repr=False)
    created_at: str
    registered_at: str
    version: int


@dataclass(frozen=True)
class DnsRecord:
    id: str
    zone_id: str
    zone_name: str
    type: str
    name: str
    content: str
    tunnel_id: str | None
    proxied: bool
    ttl: int
    created_at: str
    modified_at: str
    deleted: bool
    version: int

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "zone_id": self.zone_id,
            "zone_name": self.zone_name,
            "type": self.type,
            "name": self.name,
            "content": self.content,
            "proxied": self.proxied,
            "ttl": self.ttl,
            "tunnel_id": self.tunnel_id,
            "created_on": self.created_at,
            "modified_on": self.modified_at,
        }

    def routes_to(self, tunnel_id: str) -> bool:
        return self.type == "CNAME" and self.content == tunnel_target(tunnel_id)


@dataclass(frozen=True)
class Actor:
    """Who caused an audit entry: a user, the admin, an edge, or the control plane itself."""

    type: str
    id: str = ""
    email: str = ""

    def to_api(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "email": self.email}


ADMIN = Actor(type="admin", id="admin")
SYSTEM = Actor(type="system", id="controlplane")


@dataclass(frozen=True)
class AuditEntry:
    id: str
    account_id: str
    when: str
    action: str
    result: bool
    actor: Actor
    resource_type: str
    resource_id: str
    metadata: dict[str, Any]

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "when": self.when,
            "action": {"type": self.action, "result": self.result},
            "actor": self.actor.to_api(),
            "owner": {"id": self.account_id},
            "resource": {"type": self.resource_type, "id": self.resource_id},
            "metadata": self.metadata,
        }

    @classmethod
    def from_row(cls, row: Any) -> AuditEntry:
        return cls(
            id=row["id"],
            account_id=row["account_id"],
            when=row["at"],
            action=row["action"],
            result=bool(row["result"]),
            actor=Actor(type=row["actor_type"], id=row["actor_id"], email=row["actor_email"]),
            resource_type=row["resource_type"],
            resource_id=row["resource_id"],
            metadata=json.loads(row["metadata"]),
        )
