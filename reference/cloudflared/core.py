"""Sans-I/O edge side of cloudflared's HTTP/2 transport.

cloudflared dials TLS and then plays the HTTP/2 *server*; the edge is the client. The edge opens
the control stream (request header ``Cf-Cloudflared-Proxy-Connection-Upgrade: control-stream``)
whose body carries Cap'n Proto RPC both ways (:mod:`reference.cloudflared.rpc`), then one stream
per visitor request. Requests carry the visitor's end-to-end headers as ordinary HTTP/2 headers
(cloudflared 2026.8.2 reads them from the header block). Responses carry the origin's headers
serialised in ``cf-cloudflared-response-headers`` and who answered in
``cf-cloudflared-response-meta`` (``{"src":"origin"}`` or ``{"src":"cloudflared"}``).

Flow control, heartbeats (PING) and stream bookkeeping are the reference wire's
(:class:`reference.wire.core.TunnelProtocol`).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from typing import Any, Final

import h2.exceptions

from reference.cloudflared import rpc
from reference.cloudflared.websocket import PONG, ServerFrameReader, client_frame, message_frame
from reference.wire import events as ev
from reference.wire.core import (
    NO_ERROR,
    EdgeProtocol,
    _decode,
    _encode,
    _Stream,
    end_to_end_headers,
    request_pseudo_headers,
)
from reference.wire.errors import StreamFailedBeforeResponse, TunnelClosed, WireProtocolError
from reference.wire.messages import (
    Disconnect,
    Headers,
    HeartbeatConfig,
    RegistrationRequest,
    RegistrationResponse,
    StreamRequest,
    WireSettings,
    WsMessage,
)

UPGRADE_HEADER: Final = "cf-cloudflared-proxy-connection-upgrade"
CONTROL_STREAM: Final = "control-stream"
WEBSOCKET_STREAM: Final = "websocket"
RESPONSE_HEADERS: Final = "cf-cloudflared-response-headers"
RESPONSE_META: Final = "cf-cloudflared-response-meta"
#: Request header names cloudflared treats as its own, never sent from a visitor.
_RESERVED_PREFIXES: Final = ("cf-cloudflared-", "cf-int-")


def serialize_headers(headers: Headers) -> str:
    """cloudflared's user-header encoding: ``b64(name):b64(value)`` joined by ``;`` (base64
    without padding)."""
    return ";".join(f"{_b64(name)}:{_b64(value)}" for name, value in headers)


def deserialize_headers(text: str) -> Headers:
    """Inverse of :func:`serialize_headers`; raises ValueError on malformed input."""
    out: Headers = []
    for pair in text.split(";"):
        if not pair:
            continue
        parts = pair.split(":")
        if len(parts) != 2:
            raise ValueError("malformed serialised header pair")
        out.append((_unb64(parts[0]), _unb64(parts[1])))
    return out


def _b64(text: str) -> str:
    return base64.b64encode(_encode(text)).decode().rstrip("=")


def _unb64(text: str) -> str:
    try:
        return _decode(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"bad base64 in a serialised header: {exc}") from None


@dataclass(frozen=True)
class ConfigurationPushed(ev.WireEvent):
    """cloudflared pushed its local ingress configuration (``updateLocalConfiguration``)."""

    config: bytes


@dataclass(frozen=True)
class CloudflaredResponse(ev.ResponseStarted):
    """Response headers of a visitor stream; ``source`` is ``origin`` or ``cloudflared`` (it
    could not reach the origin), ``flow_limited`` when cloudflared refused for too many flows."""

    source: str = "origin"
    flow_limited: bool = False


class CloudflaredEdgeProtocol(EdgeProtocol):
    """Edge side of one cloudflared connection; the same calls and events as the reference
    wire's :class:`EdgeProtocol`, so the edge's asyncio layer serves both.

    ``start(nonce, now)`` -> RegistrationReceived -> ``answer_registration`` -> (if ok)
    ``open_stream`` per visitor request; UnregisterRequested when cloudflared drains.
    """

    def __init__(
        self,
        *,
        heartbeat: HeartbeatConfig | None = None,
        settings: WireSettings | None = None,
        now: float,
    ) -> None:
        super().__init__(heartbeat=heartbeat, settings=settings, now=now)
        self.state = "new"  # new|waiting|answering|registered|draining|refused
        self._rpc = rpc.RegistrationRpc()
        self._question: int | None = None
        #: cloudflared's ingress configuration, once it pushed it.
        self.local_configuration: bytes | None = None
        #: Accepted WebSocket streams: their DATA is the origin's RFC 6455 frames.
        self._websockets: dict[int, ServerFrameReader] = {}

    def start(self, nonce: str, now: float) -> None:
        """Send the preface and SETTINGS and open the control stream. cloudflared's transport
        has no challenge: ``nonce`` is kept but never sent (registration checks the secret)."""
        if self._started:
            raise RuntimeError("already started")
        self._started = True
        self._heartbeat.received(now)
        self._heartbeat.ping_sent(now)
        self._initiate()
        stream_id = self._conn.get_next_available_stream_id()
        self._control_id = stream_id
        self._streams[stream_id] = _Stream(kind="control")
        self._conn.send_headers(
            stream_id,
            [
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "localhost"),
                (":path", "/"),
                (UPGRADE_HEADER, CONTROL_STREAM),
            ],
        )
        self.nonce = nonce
        self.state = "waiting"

    def answer_registration(self, response: RegistrationResponse) -> list[ev.WireEvent]:
        """Answer ``registerConnection``. After a refusal cloudflared closes the connection."""
        if self.state != "answering" or self._question is None:
            raise RuntimeError(f"no registration to answer (state {self.state})")
        if response.ok:
            self._rpc.answer_register(
                self._question,
                connection_id=response.connection_id,
                location=response.location or "",
            )
            self.state = "registered"
        else:
            self._rpc.answer_register(
                self._question,
                cause=response.cause or "refused",
                should_retry=response.should_retry,
                retry_after=response.retry_after,
            )
            self.state = "refused"
        self._question = None
        self._send_rpc()
        return []

    def send_disconnect(self, disconnect: Disconnect) -> list[ev.WireEvent]:
        """Close the connection (GOAWAY carrying the cause): cloudflared has no edge-to-connector
        disconnect call on this transport; it reconnects as after any lost connection."""
        return self.close(disconnect.cause, NO_ERROR)

    def open_stream(self, request: StreamRequest, *, end_stream: bool = False) -> int:
        """Open a visitor stream; returns its id. Raises TunnelClosed when not accepting
        streams, StreamFailedBeforeResponse when it cannot be opened now."""
        if self.closed:
            raise TunnelClosed(self.closed_reason or "closed")
        if not self.accepting_streams:
            raise TunnelClosed(f"connection not accepting streams ({self.state})")
        headers = request_pseudo_headers(request)
        headers += [
            (_encode(k), _encode(v))
            for k, v in end_to_end_headers(request.headers)
            if not k.startswith(_RESERVED_PREFIXES)
        ]
        if request.websocket:
            # cloudflared dials the origin as a WebSocket client with the visitor's key and
            # version, then pipes this stream's bytes to the origin's socket.
            names = {k for k, _ in end_to_end_headers(request.headers)}
            headers.append((_encode(UPGRADE_HEADER), _encode(WEBSOCKET_STREAM)))
            if "sec-websocket-key" not in names:
                key = base64.b64encode(os.urandom(16)).decode()
                headers.append((b"sec-websocket-key", _encode(key)))
            if "sec-websocket-version" not in names:
                headers.append((b"sec-websocket-version", b"13"))
        try:
            stream_id = self._conn.get_next_available_stream_id()
            self._conn.send_headers(stream_id, headers, end_stream=end_stream)
        except h2.exceptions.TooManyStreamsError:
            raise StreamFailedBeforeResponse("too many concurrent streams") from None
        except h2.exceptions.NoAvailableStreamIDError:
            raise TunnelClosed("stream ids exhausted") from None
        kind = "websocket" if request.websocket else "http"
        self._streams[stream_id] = _Stream(kind=kind, local_closed=end_stream)
        return stream_id

    def send_ws(self, stream_id: int, message: WsMessage) -> None:
        """Queue one WebSocket message, as a client frame, on an accepted WebSocket stream."""
        if stream_id not in self._websockets:
            raise ValueError(f"stream {stream_id} is not an open WebSocket stream")
        frame = message_frame(message)
        if len(frame) > self.settings.max_ws_message + 14:
            raise ValueError(
                f"WebSocket message exceeds the tunnel limit of {self.settings.max_ws_message} "
                "bytes"
            )
        self.send_data(stream_id, frame)

    # --- internals ----------------------------------------------------------------------------

    def _send_rpc(self) -> None:
        data = self._rpc.data_to_send()
        if data and self._control_id is not None:
            self.send_data(self._control_id, data)

    def _on_data(self, stream_id: int, data: bytes, flow_length: int) -> list[ev.WireEvent]:
        reader = self._websockets.get(stream_id)
        if reader is not None:
            return self._on_websocket_data(stream_id, reader, data, flow_length)
        if stream_id != self._control_id:
            return super()._on_data(stream_id, data, flow_length)
        self.acknowledge(stream_id, flow_length)
        try:
            rpc_events = self._rpc.receive(data)
        except rpc.RpcError as exc:
            raise WireProtocolError(f"control stream: {exc}") from None
        out: list[ev.WireEvent] = []
        for event in rpc_events:
            out.extend(self._on_rpc(event))
        self._send_rpc()
        return out

    def _on_websocket_data(
        self, stream_id: int, reader: ServerFrameReader, data: bytes, flow_length: int
    ) -> list[ev.WireEvent]:
        # Padding and control frames are acknowledged now, message bytes once consumed.
        self.acknowledge(stream_id, flow_length - len(data))
        try:
            messages = reader.feed(data)
        except WireProtocolError:
            self._websockets.pop(stream_id, None)
            self.reset_stream(stream_id, 0x1)
            return [ev.StreamWasReset(stream_id, 0x1, True)]
        for ping in reader.pings:
            self.send_data(stream_id, client_frame(PONG, ping))
        reader.pings.clear()
        if reader.control_bytes:
            self.acknowledge(stream_id, reader.control_bytes)
            reader.control_bytes = 0
        return [ev.WsMessageReceived(stream_id, message, wire) for message, wire in messages]

    def _on_rpc(self, event: rpc.RpcEvent) -> list[ev.WireEvent]:
        if isinstance(event, rpc.RegisterConnection):
            if self.state != "waiting":
                raise WireProtocolError(f"registerConnection in state {self.state}")
            self._question = event.question_id
            self.state = "answering"
            self.registration = RegistrationRequest(
                tunnel_id=event.tunnel_id,
                account_tag=event.account_tag,
                conn_index=event.conn_index,
                connector_id=event.client_id,
                proof="",
                attempt=event.num_previous_attempts,
                version=event.version,
                arch=event.arch,
                features=event.features,
                tunnel_secret=base64.b64encode(event.tunnel_secret).decode(),
            )
            return [ev.RegistrationReceived(self.registration)]
        if isinstance(event, rpc.UnregisterConnection):
            if self.state == "registered":
                self.state = "draining"
                return [ev.UnregisterRequested()]
            return []
        if isinstance(event, rpc.LocalConfigurationPushed):
            self.local_configuration = event.config
            return [ConfigurationPushed(event.config)]
        if isinstance(event, rpc.RpcAborted):
            if self.state == "draining":
                # cloudflared ends its RPC session after unregisterConnection; requests in
                # flight finish within its grace period before it closes the connection.
                return []
            raise WireProtocolError(f"cloudflared aborted the RPC session: {event.reason}")
        return []

    def _on_request(self, stream_id: int, raw: list[Any]) -> list[ev.WireEvent]:
        raise WireProtocolError("cloudflared may not open streams")

    def _on_response(self, stream_id: int, raw: list[Any]) -> list[ev.WireEvent]:
        head = self._response_head(stream_id, raw)
        if head is None:
            return []
        _, status, headers = head
        if stream_id == self._control_id:
            if status != 200:
                raise WireProtocolError(f"cloudflared answered the control stream with {status}")
            return []
        fields = dict(headers)
        try:
            meta = json.loads(fields.get(RESPONSE_META, "") or "{}")
        except ValueError:
            meta = {}
        if not isinstance(meta, dict):
            meta = {}
        try:
            user = deserialize_headers(fields.get(RESPONSE_HEADERS, ""))
        except ValueError:
            self.reset_stream(stream_id)
            return [ev.StreamWasReset(stream_id, 0x1, False)]
        source = str(meta.get("src", "origin"))
        stream = self._streams.get(stream_id)
        if stream is not None and stream.kind == "websocket":
            upgraded = any(k.lower() == "upgrade" and v.lower() == "websocket" for k, v in user)
            if status == 200 and source == "origin" and upgraded:
                # 200 stands for the origin's 101 (HTTP/2 has no 101): frames follow.
                self._websockets[stream_id] = ServerFrameReader(self.settings.max_ws_message)
                return [CloudflaredResponse(stream_id, 101, user, source=source)]
            stream.kind = "http"  # the origin declined the upgrade: an ordinary response
        return [
            CloudflaredResponse(
                stream_id,
                status,
                user,
                source=source,
                flow_limited=bool(meta.get("flow_rate_limited", False)),
            )
        ]

    def _on_stream_ended(self, stream_id: int) -> list[ev.WireEvent]:
        if stream_id == self._control_id:
            # cloudflared ends its side when it stops serving the control stream. After
            # unregisterConnection it still finishes the requests in flight and then closes
            # the connection itself (its EOF ends it here as "unregistered").
            if self.state == "draining":
                return []
            if self.state == "refused":
                return self.close("refused")
            raise WireProtocolError("cloudflared closed the control stream")
        return super()._on_stream_ended(stream_id)

    def _on_stream_reset(self, stream_id: int, error_code: int) -> list[ev.WireEvent]:
        if stream_id == self._control_id and self.state == "draining":
            # After unregisterConnection cloudflared resets the control stream; its requests in
            # flight still finish (it closes the connection after them).
            self._streams.pop(stream_id, None)
            return []
        self._websockets.pop(stream_id, None)
        return super()._on_stream_reset(stream_id, error_code)

    def _eof_reason(self) -> str:
        return "unregistered" if self.state == "draining" else "eof"

    def _goaway_reason(self, error_code: int, detail: str) -> str:
        if self.state == "draining" and error_code == NO_ERROR:
            return "unregistered"
        return super()._goaway_reason(error_code, detail)
