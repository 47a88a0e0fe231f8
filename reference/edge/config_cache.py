"""The edge's replica of the control plane's configuration: tunnels, zones and DNS records.

Payloads arrive per MQTT topic (docs/config-distribution.md). Per topic the cache keeps the
payload with the highest ``version`` and ignores anything older or equal, so re-deliveries and
the control plane's full republish on reconnect are harmless. Tombstones (``deleted: true``) are
kept: a deleted tunnel must stay refused, and its records must stay distinguishable from hostnames
that never existed.

A cache built with a :class:`~reference.config_signing.ConfigVerifier` (every edge's) applies only
messages the control plane signed for their topic (reason ``unsigned`` otherwise), keeps each
signed message, and writes those to its file, so that loading the file verifies them again: a
forged message never enters the cache, its file, or a restarted edge.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from reference.config_signing import ConfigSignatureError, ConfigVerifier
from reference.config_topics import PREFIX, TUNNEL_SUFFIX
from reference.edge.config_models import (
    DnsRecordConfig,
    TunnelConfig,
    ZoneConfig,
    normalize_name,
)

ConfigKind = Literal["tunnel", "zone", "dns"]
ConfigPayload = TunnelConfig | ZoneConfig | DnsRecordConfig


@dataclass(frozen=True)
class ApplyResult:
    """What one payload did to the cache.

    ``applied`` is False for stale, duplicate or invalid payloads; ``reason`` then says which
    (``stale``, ``invalid``, ``unknown_topic``, ``empty``, ``unsigned``: not signed by the
    control plane's key, for a cache that requires signatures). ``deleted_tunnel_id`` is set
    when this payload turned a live (or unknown) tunnel into a tombstone: its connections must
    be closed.
    """

    applied: bool
    reason: str
    kind: ConfigKind | None = None
    version: int | None = None
    deleted_tunnel_id: str | None = None


def parse_topic(topic: str) -> tuple[ConfigKind, tuple[str, ...]] | None:
    """``("tunnel", (tunnel_id,))``, ``("zone", (zone_id,))``, ``("dns", (zone_id, record_id))``
    for a configuration topic, else None."""
    parts = topic.split("/")
    prefix = PREFIX.split("/")
    if parts[: len(prefix)] != prefix:
        return None
    rest = parts[len(prefix) :]
    if len(rest) == 2 and rest[0] == "tunnels" and rest[1]:
        return "tunnel", (rest[1],)
    if len(rest) == 2 and rest[0] == "zones" and rest[1]:
        return "zone", (rest[1],)
    if len(rest) == 3 and rest[0] == "dns" and rest[1] and rest[2]:
        return "dns", (rest[1], rest[2])
    return None


def _ids_match(kind: ConfigKind, ids: tuple[str, ...], payload: ConfigPayload) -> bool:
    if isinstance(payload, TunnelConfig):
        return kind == "tunnel" and ids == (payload.tunnel_id,)
    if isinstance(payload, ZoneConfig):
        return kind == "zone" and ids == (payload.zone_id,)
    return kind == "dns" and ids == (payload.zone_id, payload.record_id)


_MODELS: dict[ConfigKind, type[ConfigPayload]] = {
    "tunnel": TunnelConfig,
    "zone": ZoneConfig,
    "dns": DnsRecordConfig,
}


class ConfigCache:
    """In-memory replica with version rules and lookups for registration, routing and DNS."""

    def __init__(self, verifier: ConfigVerifier | None = None) -> None:
        self.verifier = verifier
        """When set, only messages signed by the control plane are applied."""
        self._signed: dict[str, str] = {}
        self._entries: dict[str, ConfigPayload] = {}
        self._tunnels: dict[str, TunnelConfig] = {}
        self._zones: dict[str, ZoneConfig] = {}
        # Live DNS records by normalized name, then by topic (two records may share a name).
        self._records_by_name: dict[str, dict[str, DnsRecordConfig]] = {}
        # Every record ever seen for a name (tombstones included), to tell "deleted" from "never".
        self._tombstoned_names: set[str] = set()
        self.applied_at: float | None = None
        """Wall-clock time (epoch seconds) of the last payload that changed the cache."""
        self.change_count = 0

    # ---- applying -------------------------------------------------------------------------

    def apply(
        self, topic: str, payload: bytes | str | dict[str, Any], *, now: float | None = None
    ) -> ApplyResult:
        """Apply one received payload for ``topic`` following the version rules."""
        parsed_topic = parse_topic(topic)
        if parsed_topic is None:
            return ApplyResult(False, "unknown_topic")
        kind, ids = parsed_topic
        signed: str | None = None
        if self.verifier is not None:
            if not isinstance(payload, bytes | str) or not payload:
                return ApplyResult(False, "unsigned" if payload else "empty", kind)
            try:
                data = self.verifier.open(topic, payload)
            except ConfigSignatureError:
                return ApplyResult(False, "unsigned", kind)
            signed = payload.decode() if isinstance(payload, bytes) else payload
        elif isinstance(payload, bytes | str):
            if not payload:
                return ApplyResult(False, "empty", kind)
            try:
                data = json.loads(payload)
            except (ValueError, UnicodeDecodeError, RecursionError):
                return ApplyResult(False, "invalid", kind)
        else:
            data = payload
        try:
            model = _MODELS[kind].model_validate(data)
        except ValidationError:
            return ApplyResult(False, "invalid", kind)
        if not _ids_match(kind, ids, model):
            return ApplyResult(False, "invalid", kind)
        held = self._entries.get(topic)
        if held is not None and model.version <= held.version:
            return ApplyResult(False, "stale", kind, model.version)
        deleted_tunnel_id = self._store(topic, model, held)
        if signed is not None:
            self._signed[topic] = signed
        self.applied_at = time.time() if now is None else now
        self.change_count += 1
        return ApplyResult(True, "applied", kind, model.version, deleted_tunnel_id)

    def _store(self, topic: str, model: ConfigPayload, held: ConfigPayload | None) -> str | None:
        self._entries[topic] = model
        if isinstance(model, TunnelConfig):
            was_deleted = isinstance(held, TunnelConfig) and held.deleted
            self._tunnels[model.tunnel_id] = model
            return model.tunnel_id if model.deleted and not was_deleted else None
        if isinstance(model, ZoneConfig):
            self._zones[model.zone_id] = model
            return None
        if isinstance(held, DnsRecordConfig) and held.name:
            by_topic = self._records_by_name.get(held.name)
            if by_topic is not None:
                by_topic.pop(topic, None)
                if not by_topic:
                    del self._records_by_name[held.name]
        if model.name:
            if model.deleted:
                self._tombstoned_names.add(model.name)
            else:
                self._records_by_name.setdefault(model.name, {})[topic] = model
        return None

    # ---- lookups --------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Highest configuration version held (0 when empty)."""
        return max((entry.version for entry in self._entries.values()), default=0)

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> dict[str, ConfigPayload]:
        """Every held payload by topic (tombstones included)."""
        return dict(self._entries)

    def tunnel(self, tunnel_id: str) -> TunnelConfig | None:
        """The tunnel's configuration (possibly a tombstone), or None if never seen."""
        return self._tunnels.get(tunnel_id)

    def tunnels(self) -> list[TunnelConfig]:
        return list(self._tunnels.values())

    def zones(self) -> list[ZoneConfig]:
        """Live zones."""
        return [zone for zone in self._zones.values() if not zone.deleted]

    def zone_for(self, name: str) -> ZoneConfig | None:
        """The live zone with the longest name that ``name`` is in (or equal to)."""
        name = normalize_name(name)
        best: ZoneConfig | None = None
        for zone in self._zones.values():
            if zone.deleted:
                continue
            if (name == zone.name or name.endswith("." + zone.name)) and (
                best is None or len(zone.name) > len(best.name)
            ):
                best = zone
        return best

    def records_named(self, name: str) -> list[DnsRecordConfig]:
        """Live records for exactly ``name``, or else for the wildcard ``*.<parent>``."""
        name = normalize_name(name)
        exact = self._records_by_name.get(name)
        if exact:
            return sorted(exact.values(), key=lambda r: r.version, reverse=True)
        _, dot, parent = name.partition(".")
        if dot:
            wildcard = self._records_by_name.get("*." + parent)
            if wildcard:
                return sorted(wildcard.values(), key=lambda r: r.version, reverse=True)
        return []

    def route_record(self, hostname: str) -> DnsRecordConfig | None:
        """The newest live record for ``hostname`` that visitors are routed by (CNAME first)."""
        records = self.records_named(hostname)
        for record in records:
            if record.type == "CNAME":
                return record
        return records[0] if records else None

    def routed_tunnel_id(self, host: str, record: DnsRecordConfig) -> str | None:
        """The tunnel that ``record`` routes visitors of ``host`` to, under the ownership rule:
        a known, live tunnel is routed to only when its account owns the zone ``host`` is in
        (and ``record`` belongs to that zone). None when the record names no tunnel or the rule
        refuses it. An unknown or deleted tunnel's id is returned: the caller refuses those with
        their own reason (the rule cannot be judged without the tunnel's account)."""
        target = self.tunnel_for_target(record.content) if record.type == "CNAME" else None
        tunnel_id = record.tunnel_id or target
        if tunnel_id is None or (target is not None and target != tunnel_id):
            return None
        tunnel = self._tunnels.get(tunnel_id)
        if tunnel is None or tunnel.deleted:
            return tunnel_id
        zone = self.zone_for(host)
        owned = (
            zone is not None
            and zone.zone_id == record.zone_id
            and bool(zone.account_tag)
            and zone.account_tag == tunnel.account_tag
        )
        return tunnel_id if owned else None

    def was_deleted(self, name: str) -> bool:
        """True when ``name`` had a record that is now deleted (and has no live one)."""
        name = normalize_name(name)
        return name in self._tombstoned_names and not self._records_by_name.get(name)

    def tunnel_for_target(self, name: str) -> str | None:
        """Tunnel id of a ``<uuid>.tunnels.outlast.test`` name, else None."""
        name = normalize_name(name)
        suffix = "." + TUNNEL_SUFFIX
        if not name.endswith(suffix):
            return None
        candidate = name[: -len(suffix)]
        return candidate if "." not in candidate and candidate else None

    # ---- persistence form -----------------------------------------------------------------

    def to_document(self) -> dict[str, Any]:
        """JSON-serialisable form (the on-disk cache file, see docs/edge.md): the payloads for
        reading, and the signed messages they came from (what a verifying load applies)."""
        document: dict[str, Any] = {
            "format": CACHE_FORMAT,
            "version": self.version,
            "applied_at": self.applied_at,
            "entries": {
                topic: entry.model_dump(mode="json")
                for topic, entry in sorted(self._entries.items())
            },
        }
        if self.verifier is not None:
            document["signed"] = dict(sorted(self._signed.items()))
        return document

    @classmethod
    def from_document(
        cls, document: dict[str, Any], verifier: ConfigVerifier | None = None
    ) -> ConfigCache:
        """Rebuild a cache from :meth:`to_document` output; raises ValueError if malformed, or,
        with ``verifier``, if any entry is not a message the control plane signed."""
        if not isinstance(document, dict) or document.get("format") != CACHE_FORMAT:
            raise ValueError(f"not an edge configuration cache (expected format {CACHE_FORMAT!r})")
        entries = document.get("signed" if verifier is not None else "entries")
        if not isinstance(entries, dict):
            what = "'signed' (signed messages)" if verifier is not None else "'entries'"
            raise ValueError(f"cache file has no {what} object")
        cache = cls(verifier)
        for topic, payload in entries.items():
            result = cache.apply(str(topic), payload)
            if not result.applied:
                raise ValueError(f"cache entry {topic!r} is {result.reason}")
        applied_at = document.get("applied_at")
        cache.applied_at = float(applied_at) if isinstance(applied_at, int | float) else None
        cache.change_count = 0
        return cache


CACHE_FORMAT = "outlast-edge-config-cache/1"
