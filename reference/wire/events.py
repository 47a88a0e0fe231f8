"""Events emitted by the sans-I/O protocol cores (:mod:`reference.wire.core`)."""

from __future__ import annotations

from dataclasses import dataclass

from reference.wire.body_digest import Verdict
from reference.wire.messages import (
    Disconnect,
    Headers,
    RegistrationRequest,
    RegistrationResponse,
    StreamRequest,
    WsMessage,
)


class WireEvent:
    """Base class of protocol events."""


# --- control stream -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChallengeReceived(WireEvent):
    """Connector side: the edge's registration challenge arrived."""

    nonce: str
    protocol_version: int


@dataclass(frozen=True)
class RegistrationReceived(WireEvent):
    """Edge side: the connector's registration request arrived (answer it)."""

    request: RegistrationRequest


@dataclass(frozen=True)
class RegistrationAnswered(WireEvent):
    """Connector side: the edge answered the registration."""

    response: RegistrationResponse


@dataclass(frozen=True)
class UnregisterRequested(WireEvent):
    """Edge side: the connector is draining this connection; open no new streams on it."""


@dataclass(frozen=True)
class UnregisterAcknowledged(WireEvent):
    """Connector side: the edge confirmed the unregistration."""


@dataclass(frozen=True)
class DisconnectReceived(WireEvent):
    """Connector side: the edge announced it is closing this connection, and why."""

    disconnect: Disconnect


# --- streams --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamOpened(WireEvent):
    """Connector side: the edge opened a visitor stream."""

    stream_id: int
    request: StreamRequest


@dataclass(frozen=True)
class ResponseStarted(WireEvent):
    """Edge side: response headers arrived (status 101 = WebSocket accepted)."""

    stream_id: int
    status: int
    headers: Headers


@dataclass(frozen=True)
class BodyReceived(WireEvent):
    """Body bytes arrived; acknowledge ``flow_length`` once consumed (``core.acknowledge``)."""

    stream_id: int
    data: bytes
    flow_length: int


@dataclass(frozen=True)
class WsMessageReceived(WireEvent):
    """A complete WebSocket message arrived; acknowledge ``flow_length`` once consumed."""

    stream_id: int
    message: WsMessage
    flow_length: int


@dataclass(frozen=True)
class StreamEnded(WireEvent):
    """The peer finished sending on this stream (END_STREAM). Edge side, HTTP response:
    ``body_digest`` is the tunnel digest's verdict (``reference.wire.body_digest``)."""

    stream_id: int
    body_digest: Verdict | None = None


@dataclass(frozen=True)
class StreamWasReset(WireEvent):
    """The peer reset the stream (or it failed locally with a stream-level protocol error)."""

    stream_id: int
    error_code: int
    response_started: bool


# --- connection -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionClosed(WireEvent):
    """The connection is over: GOAWAY received or sent, heartbeat timeout, protocol error."""

    reason: str
