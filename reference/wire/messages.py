"""Values exchanged over a tunnel connection: registration, visitor requests, WebSocket messages.

These are plain data; encoding to and from the wire lives in :mod:`reference.wire.framing`
(control messages, WebSocket messages) and :mod:`reference.wire.core` (HTTP/2 headers).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Final

from reference.wire.errors import WireProtocolError

#: Version of the tunnel protocol spoken by this implementation (sent in the control stream).
PROTOCOL_VERSION: Final = 1


@dataclass(frozen=True)
class HeartbeatConfig:
    """PING heartbeats: each side pings every ``interval`` seconds and declares the connection
    dead when it has received nothing at all (no frame, no PING ACK) for ``timeout`` seconds.

    The defaults detect a black-holed link within 3 s (plus up to one tick, 0.25 s) while tolerating
    two lost PINGs.
    """

    interval: float = 1.0
    timeout: float = 3.0

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError(f"heartbeat interval must be > 0 s, got {self.interval}")
        if self.timeout <= self.interval:
            raise ValueError(
                f"heartbeat timeout ({self.timeout} s) must be longer than the interval "
                f"({self.interval} s), or every connection would time out between two PINGs"
            )


@dataclass(frozen=True)
class WireSettings:
    """Flow-control and size limits (HTTP/2 SETTINGS this side announces).

    ``max_ws_message`` must fit in one stream window (a WebSocket message is acknowledged to the
    flow-control window only once it is complete, so a larger message could never arrive).
    """

    stream_window: int = 2 * 1024 * 1024
    connection_window: int = 16 * 1024 * 1024
    max_frame_size: int = 16_384
    max_concurrent_streams: int = 4096
    max_ws_message: int = 1024 * 1024
    max_control_message: int = 64 * 1024

    def __post_init__(self) -> None:
        if not 65_535 <= self.stream_window <= 2**31 - 1:
            raise ValueError("stream_window must be in 65535..2**31-1")
        if not self.stream_window <= self.connection_window <= 2**31 - 1:
            raise ValueError("connection_window must be in stream_window..2**31-1")
        if not 16_384 <= self.max_frame_size <= 16_777_215:
            raise ValueError("max_frame_size must be in 16384..16777215")
        if self.max_ws_message + 5 > self.stream_window:
            raise ValueError("max_ws_message + 5 must fit in stream_window")


@dataclass(frozen=True)
class LegacyRegistration:
    """Extra fields of a legacy ("classic") registration: the account API token from the origin
    certificate and the hostname the edge should route (and create a DNS record for)."""

    api_token: str = field(repr=False)
    hostname: str
    zone_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"api_token": self.api_token, "hostname": self.hostname, "zone_id": self.zone_id}

    @classmethod
    def from_json(cls, data: Any) -> LegacyRegistration:
        if not isinstance(data, dict):
            raise WireProtocolError("legacy registration must be an object")
        return cls(
            api_token=_str(data, "api_token"),
            hostname=_str(data, "hostname"),
            zone_id=_str(data, "zone_id", default=""),
        )


@dataclass(frozen=True)
class RegistrationRequest:
    """What the connector sends to register one HA connection (answering the edge's nonce).

    ``tunnel_secret`` is the base64 tunnel secret (sent only inside TLS, checked by the edge
    against its stored verifier) and ``proof`` is ``reference.tunnel_auth.compute_proof(verifier,
    nonce, tunnel_id, account_tag, conn_index, connector_id)``; neither is ever logged (both are
    excluded from ``repr``).
    """

    tunnel_id: str
    account_tag: str
    conn_index: int
    connector_id: str
    proof: str = field(repr=False)
    attempt: int = 0
    version: str = ""
    arch: str = ""
    features: tuple[str, ...] = ()
    legacy: LegacyRegistration | None = None
    tunnel_secret: str = field(default="", repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "tunnel_id": self.tunnel_id,
            "account_tag": self.account_tag,
            "conn_index": self.conn_index,
            "connector_id": self.connector_id,
            "proof": self.proof,
            "tunnel_secret": self.tunnel_secret,
            "attempt": self.attempt,
            "version": self.version,
            "arch": self.arch,
            "features": list(self.features),
            "legacy": self.legacy.to_json() if self.legacy else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RegistrationRequest:
        features = data.get("features", [])
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise WireProtocolError("registration field 'features' must be a list of strings")
        legacy = data.get("legacy")
        return cls(
            tunnel_id=_str(data, "tunnel_id"),
            account_tag=_str(data, "account_tag"),
            conn_index=_int(data, "conn_index", 0, 255),
            connector_id=_str(data, "connector_id"),
            proof=_str(data, "proof"),
            attempt=_int(data, "attempt", 0, 2**31),
            version=_str(data, "version", default=""),
            arch=_str(data, "arch", default=""),
            features=tuple(features),
            legacy=LegacyRegistration.from_json(legacy) if legacy is not None else None,
            tunnel_secret=_str(data, "tunnel_secret", default=""),
        )


class RefusalCause:
    """Recommended ``cause`` strings (free text is allowed; these are the ones the edge and the
    connector agree on). ``should_retry`` in the response, not the cause, decides permanence."""

    #: Tunnel not in the edge's configuration (yet): retry, the configuration may be propagating.
    UNKNOWN_TUNNEL: Final = "unknown tunnel"
    #: The proof does not match the tunnel's verifier: permanent.
    INVALID_SECRET: Final = "unauthorized: invalid tunnel secret"
    #: The account tag does not own the tunnel: permanent.
    ACCOUNT_MISMATCH: Final = "unauthorized: tunnel belongs to another account"
    #: The tunnel was deleted (credentials revoked): permanent.
    TUNNEL_DELETED: Final = "tunnel deleted"
    #: This connector already has this conn_index registered at this edge: retry elsewhere.
    DUPLICATE_CONNECTION: Final = "duplicate connection"
    #: Edge overloaded or shutting down: retry after ``retry_after``.
    UNAVAILABLE: Final = "edge unavailable"
    #: Legacy registration needs the control plane and it did not answer: retry.
    CONTROL_PLANE_UNAVAILABLE: Final = "control plane unavailable"
    #: Legacy registration: the API token was rolled or is invalid: permanent.
    INVALID_TOKEN: Final = "unauthorized: invalid api token"
    #: Registration message malformed or of an unsupported protocol version: permanent.
    BAD_REQUEST: Final = "bad registration request"


@dataclass(frozen=True)
class RegistrationResponse:
    """The edge's answer: ``ok`` with ``connection_id`` and ``location`` (the PoP name), or a
    refusal with ``cause``, ``retry_after`` (seconds, or None for "use your own backoff") and
    ``should_retry`` (False = permanent: the connector stops)."""

    ok: bool
    connection_id: str | None = None
    location: str | None = None
    cause: str | None = None
    retry_after: float | None = None
    should_retry: bool = True

    @classmethod
    def success(cls, connection_id: str, location: str) -> RegistrationResponse:
        return cls(ok=True, connection_id=connection_id, location=location)

    @classmethod
    def refusal(
        cls, cause: str, *, should_retry: bool, retry_after: float | None = None
    ) -> RegistrationResponse:
        return cls(ok=False, cause=cause, retry_after=retry_after, should_retry=should_retry)

    def to_json(self) -> dict[str, Any]:
        if self.ok:
            return {"ok": True, "connection_id": self.connection_id, "location": self.location}
        return {
            "ok": False,
            "cause": self.cause,
            "retry_after": self.retry_after,
            "should_retry": self.should_retry,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RegistrationResponse:
        ok = data.get("ok")
        if ok is True:
            return cls.success(_str(data, "connection_id"), _str(data, "location"))
        if ok is not False:
            raise WireProtocolError("registration response field 'ok' must be a boolean")
        should_retry = data.get("should_retry", True)
        if not isinstance(should_retry, bool):
            raise WireProtocolError("registration response 'should_retry' must be a boolean")
        return cls.refusal(
            _str(data, "cause", default="unspecified"),
            should_retry=should_retry,
            retry_after=_optional_seconds(data, "retry_after"),
        )


@dataclass(frozen=True)
class Disconnect:
    """Sent by the edge on the control stream just before it closes a registered connection
    (e.g. the tunnel was deleted: ``should_retry=False``; PoP shutting down: ``True``)."""

    cause: str
    should_retry: bool = True
    retry_after: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "should_retry": self.should_retry,
            "retry_after": self.retry_after,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Disconnect:
        should_retry = data.get("should_retry", True)
        if not isinstance(should_retry, bool):
            raise WireProtocolError("disconnect 'should_retry' must be a boolean")
        return cls(
            cause=_str(data, "cause", default="unspecified"),
            should_retry=should_retry,
            retry_after=_optional_seconds(data, "retry_after"),
        )


Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class StreamRequest:
    """A visitor request the edge forwards over a new stream.

    ``headers`` are the end-to-end request headers (hop-by-hop ones are dropped on the wire,
    names are lower-cased). ``websocket`` marks an upgrade request: the connector answers it
    with ``accept_websocket`` (seen by the edge as status 101) and then both sides exchange
    :class:`WsMessage` values instead of a body.
    """

    method: str
    path: str
    host: str
    headers: Headers = field(default_factory=list)
    scheme: str = "https"
    websocket: bool = False

    def header(self, name: str, default: str | None = None) -> str | None:
        """First value of header ``name`` (case-insensitive)."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return default


class WsMessageType(enum.IntEnum):
    """Kinds of WebSocket messages relayed inside a stream (values are the frame kind byte)."""

    TEXT = 1
    BINARY = 2
    CLOSE = 8


@dataclass(frozen=True)
class WsMessage:
    """One WebSocket message. ``data`` is str for TEXT, bytes for BINARY; for CLOSE, ``code``
    and ``reason`` describe the close (``data`` is empty)."""

    type: WsMessageType
    data: str | bytes = b""
    code: int = 1000
    reason: str = ""

    @classmethod
    def text(cls, data: str) -> WsMessage:
        return cls(WsMessageType.TEXT, data)

    @classmethod
    def binary(cls, data: bytes) -> WsMessage:
        return cls(WsMessageType.BINARY, data)

    @classmethod
    def close(cls, code: int = 1000, reason: str = "") -> WsMessage:
        return cls(WsMessageType.CLOSE, b"", code, reason)


def _str(data: dict[str, Any], key: str, *, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise WireProtocolError(f"field {key!r} must be a string")
    return value


def _int(data: dict[str, Any], key: str, low: int, high: int) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise WireProtocolError(f"field {key!r} must be an integer in {low}..{high}")
    return value


def _optional_seconds(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86_400:
        raise WireProtocolError(f"field {key!r} must be null or seconds in 0..86400")
    return float(value)
