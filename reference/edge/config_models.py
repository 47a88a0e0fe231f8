"""The configuration objects an edge replicates (payloads of docs/config-distribution.md).

Each model parses one retained MQTT payload. Unknown fields are ignored (forward compatibility);
a tombstone (``"deleted": true``) needs only its version and id.
"""

from __future__ import annotations

import re
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def normalize_name(name: str) -> str:
    """DNS name in canonical form: lower case, no trailing dot."""
    return name.strip().rstrip(".").lower()


def is_tunnel_id(value: str) -> bool:
    """True when ``value`` is a canonical (lower-case, hyphenated) UUID."""
    try:
        return str(uuid.UUID(value)) == value
    except (ValueError, AttributeError, TypeError):
        return False


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    version: int = Field(gt=0)
    deleted: bool = False


class TunnelConfig(_Payload):
    """``outlast/v1/tunnels/{tunnel_id}``: what an edge needs to authenticate a tunnel."""

    tunnel_id: str
    account_tag: str = ""
    name: str = ""
    verifier: str = Field(default="", repr=False)
    updated_at: str | None = None
    #: ``legacy`` for a legacy (classic) tunnel: it registers through the control plane with
    #: the account's API token, never with a tunnel secret (docs/legacy.md).
    kind: Literal["named", "legacy"] = "named"
    hostname: str = ""

    @field_validator("tunnel_id")
    @classmethod
    def _tunnel_id_is_uuid(cls, value: str) -> str:
        if not is_tunnel_id(value):
            raise ValueError(f"tunnel_id {value!r} is not a lower-case UUID")
        return value

    @model_validator(mode="after")
    def _live_tunnel_has_credentials(self) -> TunnelConfig:
        if not self.deleted:
            if not self.account_tag:
                raise ValueError("a live tunnel needs account_tag")
            if not _HEX64.match(self.verifier):
                raise ValueError("a live tunnel needs a 64-hex verifier")
        return self


class ZoneConfig(_Payload):
    """``outlast/v1/zones/{zone_id}``: a DNS zone the edges answer for."""

    zone_id: str
    account_tag: str = ""
    name: str = ""

    @field_validator("name")
    @classmethod
    def _normalize(cls, value: str) -> str:
        return normalize_name(value)

    @model_validator(mode="after")
    def _live_zone_has_name(self) -> ZoneConfig:
        if not self.deleted and not self.name:
            raise ValueError("a live zone needs a name")
        return self


class DnsRecordConfig(_Payload):
    """``outlast/v1/dns/{zone_id}/{record_id}``: one DNS record (usually a tunnel CNAME)."""

    record_id: str
    zone_id: str
    zone_name: str = ""
    type: str = "CNAME"
    name: str = ""
    content: str = ""
    tunnel_id: str | None = None
    proxied: bool = True

    @field_validator("name", "zone_name")
    @classmethod
    def _normalize(cls, value: str) -> str:
        return normalize_name(value)

    @field_validator("type")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.strip().upper()

    @model_validator(mode="after")
    def _live_record_has_name(self) -> DnsRecordConfig:
        if not self.deleted and (not self.name or not self.content):
            raise ValueError("a live DNS record needs a name and content")
        return self
