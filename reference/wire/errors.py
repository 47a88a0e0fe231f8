"""Errors of the tunnel wire protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reference.wire.messages import RegistrationResponse


class WireError(Exception):
    """Base class of every error raised by :mod:`reference.wire`."""


class WireProtocolError(WireError):
    """The peer sent something this protocol does not allow (malformed frames, a stream before
    registration, a bad control message...). The connection is closed with GOAWAY."""


class TunnelClosed(WireError):
    """The tunnel connection is closed (or closing); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"tunnel connection closed: {reason}")
        self.reason = reason


class DialError(WireError):
    """The connector could not reach the edge (TCP connect, TLS handshake, or timeout).
    A supervisor should move to another edge address."""


class HandshakeFailed(WireError):
    """Connected, but the registration exchange did not complete (timeout, EOF, protocol error)."""


class RegistrationRefused(WireError):
    """The edge refused the registration; ``response`` holds cause, retry_after, should_retry."""

    def __init__(self, response: RegistrationResponse) -> None:
        kind = "retryable" if response.should_retry else "permanent"
        super().__init__(f"registration refused ({kind}): {response.cause}")
        self.response = response


class StreamError(WireError):
    """A single stream failed; the connection itself may still be fine."""


class StreamFailedBeforeResponse(StreamError):
    """The stream failed before any response headers arrived (reset, connection lost).
    The request may not have reached the origin: an idempotent request can be retried on
    another connection."""


class StreamReset(StreamError):
    """The stream was reset (or its connection lost) after the response had started."""


class BodyDigestMismatch(StreamReset):
    """The response body received does not match the connector's digest of what it sent
    (``reference.wire.body_digest``): it was corrupted in the tunnel and must not reach the
    visitor as complete."""
