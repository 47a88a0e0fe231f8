"""Sans-I/O protocol cores: HTTP/2 with roles reversed, plus the tunnel's control stream.

No sockets, no clock of its own: feed received bytes with ``receive_data(data, now)``, call
``tick(now)`` at ``next_deadline()`` for heartbeats, and write out ``data_to_send()`` after every
call. Every method returns the :mod:`reference.wire.events` it caused.

* :class:`EdgeProtocol` is the HTTP/2 *client* (it opens streams) — run by the edge on a
  connection the connector dialled.
* :class:`ConnectorProtocol` is the HTTP/2 *server* — run by the connector.

The only exception ``receive_data`` raises on bad input is :class:`WireProtocolError`; after it
the core is closed and ``data_to_send()`` holds a GOAWAY.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any, Final

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack.exceptions
import hyperframe.exceptions

from reference.wire import events as ev
from reference.wire.body_digest import BodyDigest
from reference.wire.errors import StreamFailedBeforeResponse, TunnelClosed, WireProtocolError
from reference.wire.framing import (
    KIND_CONTROL,
    WS_KINDS,
    FrameDecoder,
    decode_control,
    decode_ws,
    encode_control,
    encode_ws,
)
from reference.wire.heartbeat import HeartbeatTracker
from reference.wire.messages import (
    PROTOCOL_VERSION,
    Disconnect,
    Headers,
    HeartbeatConfig,
    RegistrationRequest,
    RegistrationResponse,
    StreamRequest,
    WireSettings,
    WsMessage,
)

#: Header marking what a stream carries: ``control``, ``http`` or ``websocket``.
STREAM_KIND_HEADER: Final = "outlast-stream"
#: Header on the control stream's request carrying the protocol version.
PROTOCOL_HEADER: Final = "outlast-tunnel-protocol"
#: Status the connector sends (with ``outlast-stream: websocket``) to accept a WebSocket;
#: HTTP/2 forbids 101, the edge-side API reports it as 101.
WS_ACCEPT_WIRE_STATUS: Final = 200

# HTTP/2 error codes used here.
NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
INTERNAL_ERROR: Final = 0x2
REFUSED_STREAM: Final = 0x7
CANCEL: Final = 0x8

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "host",
        "http2-settings",
        STREAM_KIND_HEADER,
    }
)

_H2_ERRORS = (
    h2.exceptions.H2Error,
    hpack.exceptions.HPACKError,
    hyperframe.exceptions.HyperframeError,
)


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9a-z]+$")
_BAD_VALUE = re.compile(r"[\x00\r\n]")


def end_to_end_headers(headers: Headers) -> Headers:
    """``headers`` lower-cased, without hop-by-hop, pseudo or malformed headers (what goes on
    the wire)."""
    out: Headers = []
    for name, value in headers:
        key = name.strip().lower()
        if key in HOP_BY_HOP or not _TOKEN.match(key) or _BAD_VALUE.search(value):
            continue
        out.append((key, value.strip()))
    return out


def _decode(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    return raw.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@dataclass
class _Stream:
    """Per-stream bookkeeping."""

    kind: str  # "control" | "http" | "websocket"
    messages: bool = False  # DATA carries framed messages (control, or accepted websocket)
    decoder: FrameDecoder | None = None
    response_started: bool = False
    outbound: bytearray = field(default_factory=bytearray)
    end_pending: bool = False
    local_closed: bool = False
    remote_closed: bool = False
    #: Connector side: digest of the response body sent (ends the stream as a trailer).
    sent_digest: BodyDigest | None = None
    #: Edge side: digest of the response body received, checked against the trailer.
    received_digest: BodyDigest | None = None


class TunnelProtocol:
    """What both roles share: h2 plumbing, flow-controlled sending, heartbeats, the control
    stream's framing. Use :class:`EdgeProtocol` or :class:`ConnectorProtocol`."""

    client_side: bool = False

    def __init__(self, *, heartbeat: HeartbeatConfig, settings: WireSettings, now: float) -> None:
        self.settings = settings
        config = h2.config.H2Configuration(
            client_side=self.client_side,
            header_encoding=None,
            validate_inbound_headers=True,
        )
        self._conn = h2.connection.H2Connection(config)
        self._heartbeat = HeartbeatTracker(heartbeat, now)
        self._pings: dict[bytes, float] = {}
        self._ping_counter = 0
        self._streams: dict[int, _Stream] = {}
        self._control_id: int | None = None
        self._started = False
        self.closed_reason: str | None = None

    # --- public, both roles -----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    @property
    def rtt(self) -> float | None:
        """Last measured PING round trip (seconds)."""
        return self._heartbeat.rtt

    @property
    def open_stream_ids(self) -> list[int]:
        """Visitor streams not yet finished (the control stream excluded)."""
        return [sid for sid in self._streams if sid != self._control_id]

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now."""
        return self._conn.data_to_send()

    def next_deadline(self) -> float:
        """Clock value at which ``tick`` must run next."""
        return self._heartbeat.next_deadline()

    def silence(self, now: float) -> float:
        """Seconds since anything was received from the peer."""
        return self._heartbeat.silence(now)

    def tick(self, now: float) -> list[ev.WireEvent]:
        """Heartbeats: send a PING when due; close when the peer has been silent too long."""
        if self.closed or not self._started:
            return []
        if self._heartbeat.expired(now):
            return self._close_locally("heartbeat timeout", NO_ERROR)
        if self._heartbeat.ping_due(now):
            self._ping_counter += 1
            opaque = struct.pack(">Q", self._ping_counter)
            self._conn.ping(opaque)
            self._pings[opaque] = now
            if len(self._pings) > 16:  # unanswered PINGs are forgotten, not accumulated
                self._pings.pop(next(iter(self._pings)))
            self._heartbeat.ping_sent(now)
        return []

    def receive_data(self, data: bytes, now: float) -> list[ev.WireEvent]:
        """Feed bytes received from the peer; return the events they caused."""
        if self.closed:
            return []
        if data:
            self._heartbeat.received(now)
        try:
            h2_events = self._conn.receive_data(data)
        except _H2_ERRORS as exc:
            self._fail(f"HTTP/2 error: {exc}")
        out: list[ev.WireEvent] = []
        try:
            for h2_event in h2_events:
                out.extend(self._handle(h2_event, now))
                if self.closed:
                    break
            if not self.closed:
                self._flush()
        except WireProtocolError as exc:
            self._fail(str(exc))
        except _H2_ERRORS as exc:
            self._fail(f"HTTP/2 error: {exc}")
        return out

    def receive_eof(self, error: str | None = None) -> list[ev.WireEvent]:
        """The peer closed the transport (``error`` None) or it broke (``error`` says how)."""
        if self.closed:
            return []
        reason = self._eof_reason()
        if error is not None and reason == "eof":
            reason = f"connection lost: {error}"
        self.closed_reason = reason
        return [ev.ConnectionClosed(reason)]

    def close(self, reason: str, error_code: int = NO_ERROR) -> list[ev.WireEvent]:
        """Send GOAWAY and consider the connection closed."""
        if self.closed:
            return []
        return self._close_locally(reason, error_code)

    def acknowledge(self, stream_id: int, flow_length: int) -> None:
        """Return ``flow_length`` consumed bytes of ``stream_id`` to the peer's send window."""
        if self.closed or flow_length <= 0:
            return
        try:
            self._conn.acknowledge_received_data(flow_length, stream_id)
        except _H2_ERRORS:
            pass

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        """Queue body bytes; they go out as the peer's flow-control windows allow."""
        stream = self._writable(stream_id)
        stream.outbound += data
        if stream.sent_digest is not None:
            stream.sent_digest.update(data)
        if end_stream:
            stream.end_pending = True
        self._flush()

    def end_stream(self, stream_id: int) -> None:
        """Finish sending on ``stream_id`` (after any queued data)."""
        self.send_data(stream_id, b"", end_stream=True)

    def send_ws(self, stream_id: int, message: WsMessage) -> None:
        """Queue one WebSocket message on a WebSocket stream."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.kind != "websocket":
            raise ValueError(f"stream {stream_id} is not an open WebSocket stream")
        payload = encode_ws(message)
        if len(payload) - 5 > self.settings.max_ws_message:
            raise ValueError(
                f"WebSocket message of {len(payload) - 5} bytes exceeds the tunnel limit "
                f"of {self.settings.max_ws_message} bytes"
            )
        self.send_data(stream_id, payload)

    def reset_stream(self, stream_id: int, error_code: int = CANCEL) -> None:
        """Abort ``stream_id`` (RST_STREAM); queued data is dropped."""
        if self.closed or self._streams.pop(stream_id, None) is None:
            return
        try:
            self._conn.reset_stream(stream_id, error_code)
        except _H2_ERRORS:
            pass

    def pending_outbound(self, stream_id: int) -> int:
        """Bytes queued on ``stream_id`` waiting for flow-control window (0 if gone)."""
        stream = self._streams.get(stream_id)
        return len(stream.outbound) if stream else 0

    def stream_exists(self, stream_id: int) -> bool:
        return stream_id in self._streams

    # --- internals ----------------------------------------------------------------------------

    def _eof_reason(self) -> str:
        return "eof"

    def _initiate(self) -> None:
        """Connection preface and this side's SETTINGS (windows, frame size, concurrency)."""
        self._conn.initiate_connection()
        codes = h2.settings.SettingCodes
        wanted: dict[h2.settings.SettingCodes | int, int] = {
            codes.INITIAL_WINDOW_SIZE: self.settings.stream_window,
            codes.MAX_FRAME_SIZE: self.settings.max_frame_size,
            codes.MAX_CONCURRENT_STREAMS: self.settings.max_concurrent_streams,
        }
        if self.client_side:
            wanted[codes.ENABLE_PUSH] = 0
        self._conn.update_settings(wanted)
        if self.settings.connection_window > 65_535:
            self._conn.increment_flow_control_window(self.settings.connection_window - 65_535)

    def _writable(self, stream_id: int) -> _Stream:
        if self.closed:
            raise TunnelClosed(self.closed_reason or "closed")
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed or stream.end_pending:
            raise ValueError(f"stream {stream_id} is not open for sending")
        return stream

    def _fail(self, reason: str) -> None:
        """Close with PROTOCOL_ERROR and raise WireProtocolError(reason)."""
        if not self.closed:
            self.closed_reason = f"protocol error: {reason}"
            try:
                self._conn.close_connection(PROTOCOL_ERROR, additional_data=_encode(reason)[:200])
            except _H2_ERRORS:
                pass
        raise WireProtocolError(reason)

    def _close_locally(self, reason: str, error_code: int) -> list[ev.WireEvent]:
        self.closed_reason = reason
        try:
            self._conn.close_connection(error_code, additional_data=_encode(reason)[:200])
        except _H2_ERRORS:
            pass
        return [ev.ConnectionClosed(reason)]

    def _flush(self) -> None:
        for stream_id, stream in list(self._streams.items()):
            while stream.outbound:
                try:
                    window = self._conn.local_flow_control_window(stream_id)
                except _H2_ERRORS:
                    stream.outbound.clear()
                    break
                size = min(window, self._conn.max_outbound_frame_size, len(stream.outbound))
                if size <= 0:
                    break
                chunk = bytes(stream.outbound[:size])
                del stream.outbound[:size]
                self._conn.send_data(stream_id, chunk)
            if stream.end_pending and not stream.outbound and not stream.local_closed:
                stream.local_closed = True
                try:
                    if stream.sent_digest is not None:
                        self._conn.send_headers(
                            stream_id, stream.sent_digest.trailer(), end_stream=True
                        )
                    else:
                        self._conn.end_stream(stream_id)
                except _H2_ERRORS:
                    pass
                self._maybe_forget(stream_id)

    def _maybe_forget(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream and stream.local_closed and stream.remote_closed and not stream.outbound:
            if stream_id != self._control_id:
                del self._streams[stream_id]

    def _send_control(self, message: dict[str, Any]) -> None:
        if self._control_id is None:
            raise WireProtocolError("no control stream")
        self.send_data(self._control_id, encode_control(message))

    def _handle(self, event: h2.events.Event, now: float) -> list[ev.WireEvent]:
        if isinstance(event, h2.events.RequestReceived):
            return self._on_request(event.stream_id, event.headers or [])
        if isinstance(event, h2.events.ResponseReceived):
            return self._on_response(event.stream_id, event.headers or [])
        if isinstance(event, h2.events.DataReceived):
            return self._on_data(event.stream_id, event.data or b"", event.flow_controlled_length)
        if isinstance(event, h2.events.TrailersReceived):
            self._on_trailers(event.stream_id, event.headers or [])
            return []
        if isinstance(event, h2.events.StreamEnded):
            return self._on_stream_ended(event.stream_id)
        if isinstance(event, h2.events.StreamReset):
            return self._on_stream_reset(event.stream_id, event.error_code or 0)
        if isinstance(event, h2.events.PingAckReceived):
            sent_at = self._pings.pop(event.ping_data or b"", None)
            if sent_at is not None:
                self._heartbeat.ack_received(sent_at, now)
            return []
        if isinstance(event, h2.events.ConnectionTerminated):
            detail = _decode(event.additional_data or b"")
            self.closed_reason = self._goaway_reason(int(event.error_code or 0), detail)
            return [ev.ConnectionClosed(self.closed_reason)]
        if isinstance(event, h2.events.PushedStreamReceived):
            raise WireProtocolError("server push is not part of the tunnel protocol")
        # WindowUpdated, RemoteSettingsChanged (flush follows), PingReceived (h2 answers it),
        # SettingsAcknowledged, PriorityUpdated, informational responses,
        # unknown frames: nothing to report.
        return []

    def _goaway_reason(self, error_code: int, detail: str) -> str:
        if error_code == NO_ERROR:
            return f"closed by peer: {detail}" if detail else "closed by peer"
        return f"closed by peer with error {error_code:#x}: {detail}"

    def _on_data(self, stream_id: int, data: bytes, flow_length: int) -> list[ev.WireEvent]:
        stream = self._streams.get(stream_id)
        if stream is None:
            self.acknowledge(stream_id, flow_length)
            return []
        if not stream.messages:
            if not data:
                self.acknowledge(stream_id, flow_length)
                return []
            if stream.received_digest is not None:
                stream.received_digest.update(data)
            return [ev.BodyReceived(stream_id, data, flow_length)]
        # Framed messages: padding is acknowledged now, message bytes once consumed.
        self.acknowledge(stream_id, flow_length - len(data))
        assert stream.decoder is not None
        try:
            frames = stream.decoder.feed(data)
        except WireProtocolError:
            if stream_id == self._control_id:
                raise
            self.reset_stream(stream_id, PROTOCOL_ERROR)
            return [ev.StreamWasReset(stream_id, PROTOCOL_ERROR, stream.response_started)]
        out: list[ev.WireEvent] = []
        for kind, payload, wire_length in frames:
            if stream_id == self._control_id:
                self.acknowledge(stream_id, wire_length)
                out.extend(self._on_control(decode_control(payload)))
                if self.closed:
                    break
            else:
                try:
                    message = decode_ws(kind, payload)
                except WireProtocolError:
                    self.reset_stream(stream_id, PROTOCOL_ERROR)
                    out.append(ev.StreamWasReset(stream_id, PROTOCOL_ERROR, True))
                    break
                out.append(ev.WsMessageReceived(stream_id, message, wire_length))
        return out

    def _on_stream_ended(self, stream_id: int) -> list[ev.WireEvent]:
        stream = self._streams.get(stream_id)
        if stream is None:
            return []
        if stream_id == self._control_id:
            raise WireProtocolError("the peer closed the control stream")
        stream.remote_closed = True
        self._maybe_forget(stream_id)
        digest = stream.received_digest
        return [ev.StreamEnded(stream_id, digest.verdict() if digest is not None else None)]

    def _on_trailers(self, stream_id: int, raw: list[Any]) -> None:
        """Trailers end a body: the connector's digest of it, on an HTTP response stream."""
        stream = self._streams.get(stream_id)
        if stream is not None and stream.received_digest is not None:
            _, trailers = _split_headers(raw)
            stream.received_digest.claim(trailers)

    def _on_stream_reset(self, stream_id: int, error_code: int) -> list[ev.WireEvent]:
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return []
        if stream_id == self._control_id:
            raise WireProtocolError("the peer reset the control stream")
        return [ev.StreamWasReset(stream_id, error_code, stream.response_started)]

    def _message_decoder(self, kinds: frozenset[int], limit: int) -> FrameDecoder:
        return FrameDecoder(kinds, limit)

    # Role-specific hooks.
    def _on_request(self, stream_id: int, raw: list[Any]) -> list[ev.WireEvent]:
        raise WireProtocolError("unexpected request headers")

    def _on_response(self, stream_id: int, raw: list[Any]) -> list[ev.WireEvent]:
        raise WireProtocolError("unexpected response headers")

    def _on_control(self, message: dict[str, Any]) -> list[ev.WireEvent]:
        raise NotImplementedError


def _split_headers(raw: list[Any]) -> tuple[dict[str, str], Headers]:
    pseudo: dict[str, str] = {}
    regular: Headers = []
    for name, value in raw:
        key, text = _decode(name), _decode(value)
        if key.startswith(":"):
            pseudo[key] = text
        else:
            regular.append((key, text))
    return pseudo, regular


def _check_version(message: dict[str, Any]) -> int:
    version = message.get("protocol_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise WireProtocolError("control message lacks an integer 'protocol_version'")
    if version != PROTOCOL_VERSION:
        raise WireProtocolError(
            f"peer speaks tunnel protocol {version}, this side speaks {PROTOCOL_VERSION}"
        )
    return version


def request_pseudo_headers(request: StreamRequest) -> list[tuple[bytes, bytes]]:
    """The HTTP/2 pseudo-headers of a visitor request opened as a stream (every edge
    transport); ``ValueError`` for a method that cannot be tunnelled."""
    method = request.method.upper()
    if method == "CONNECT" or not method.isalpha():
        raise ValueError(f"method {request.method!r} cannot be tunnelled")
    path = request.path if request.path.startswith("/") else "/" + request.path
    return [
        (b":method", _encode(method)),
        (b":scheme", _encode(request.scheme or "https")),
        (b":authority", _encode(request.host or "unknown")),
        (b":path", _encode(path)),
    ]


class EdgeProtocol(TunnelProtocol):
    """Edge side (HTTP/2 client on an accepted connection).

    Sequence: ``start(nonce)`` -> event RegistrationReceived -> ``answer_registration(resp)``
    -> (if ok) ``open_stream(...)`` per visitor request.
    """

    client_side = True

    def __init__(
        self,
        *,
        heartbeat: HeartbeatConfig | None = None,
        settings: WireSettings | None = None,
        now: float,
    ) -> None:
        super().__init__(
            heartbeat=heartbeat or HeartbeatConfig(), settings=settings or WireSettings(), now=now
        )
        self.state = "new"  # new|challenged|answering|registered|draining|refused
        self.nonce: str | None = None
        self.registration: RegistrationRequest | None = None

    @property
    def accepting_streams(self) -> bool:
        """True while registered and not draining or closed."""
        return self.state == "registered" and not self.closed

    def start(self, nonce: str, now: float) -> None:
        """Send the connection preface, open the control stream and send the challenge."""
        if self._started:
            raise RuntimeError("already started")
        self._started = True
        self._heartbeat.received(now)
        self._heartbeat.ping_sent(now)
        self._initiate()
        stream_id = self._conn.get_next_available_stream_id()
        self._control_id = stream_id
        self._streams[stream_id] = _Stream(
            kind="control",
            messages=True,
            decoder=FrameDecoder(frozenset({KIND_CONTROL}), self.settings.max_control_message),
        )
        self._conn.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "https"),
                (":authority", "tunnel"),
                (":path", "/control"),
                (STREAM_KIND_HEADER, "control"),
                (PROTOCOL_HEADER, str(PROTOCOL_VERSION)),
            ],
        )
        self.nonce = nonce
        self._send_control(
            {"type": "challenge", "nonce": nonce, "protocol_version": PROTOCOL_VERSION}
        )
        self.state = "challenged"

    def answer_registration(self, response: RegistrationResponse) -> list[ev.WireEvent]:
        """Send the registration answer; a refusal also closes the connection."""
        if self.state != "answering":
            raise RuntimeError(f"no registration to answer (state {self.state})")
        self._send_control({"type": "registration_response", **response.to_json()})
        if response.ok:
            self.state = "registered"
            return []
        self.state = "refused"
        return self._close_locally(f"registration refused: {response.cause}", NO_ERROR)

    def send_disconnect(self, disconnect: Disconnect) -> list[ev.WireEvent]:
        """Tell the connector why this connection is being closed, then close it."""
        if self.closed:
            return []
        if self._control_id is not None:
            self._send_control({"type": "disconnect", **disconnect.to_json()})
        return self._close_locally(disconnect.cause, NO_ERROR)

    def open_stream(self, request: StreamRequest, *, end_stream: bool = False) -> int:
        """Open a visitor stream; returns its id. Raises TunnelClosed when not accepting
        streams and StreamFailedBeforeResponse when the concurrency limit is reached."""
        if self.closed:
            raise TunnelClosed(self.closed_reason or "closed")
        if not self.accepting_streams:
            raise TunnelClosed(f"connection not accepting streams ({self.state})")
        headers = request_pseudo_headers(request)
        headers.append(
            (_encode(STREAM_KIND_HEADER), b"websocket" if request.websocket else b"http")
        )
        headers += [(_encode(k), _encode(v)) for k, v in end_to_end_headers(request.headers)]
        try:
            stream_id = self._conn.get_next_available_stream_id()
            self._conn.send_headers(stream_id, headers, end_stream=end_stream)
        except h2.exceptions.TooManyStreamsError:
            raise StreamFailedBeforeResponse("too many concurrent streams") from None
        except h2.exceptions.NoAvailableStreamIDError:
            raise TunnelClosed("stream ids exhausted") from None
        self._streams[stream_id] = _Stream(
            kind="websocket" if request.websocket else "http",
            local_closed=end_stream,
        )
        return stream_id

    def _on_control(self, message: dict[str, Any]) -> list[ev.WireEvent]:
        kind = message["type"]
        if kind == "register":
            if self.state != "challenged":
                raise WireProtocolError(f"registration in state {self.state}")
            _check_version(message)
            body = message.get("request")
            if not isinstance(body, dict):
                raise WireProtocolError("registration lacks a 'request' object")
            self.registration = RegistrationRequest.from_json(body)
            self.state = "answering"
            return [ev.RegistrationReceived(self.registration)]
        if kind == "unregister":
            if self.state not in ("registered", "draining"):
                raise WireProtocolError(f"unregister in state {self.state}")
            first = self.state == "registered"
            self.state = "draining"
            self._send_control({"type": "unregistered"})
            return [ev.UnregisterRequested()] if first else []
        return []  # unknown control messages are ignored (forward compatibility)

    def _on_request(self, stream_id: int, raw: list[Any]) -> list[ev.WireEvent]:
        raise WireProtocolError("the connector may not open streams")

    def _response_head(
        self, stream_id: int, raw: list[Any]
    ) -> tuple[Any, int, list[tuple[str, str]]] | None:
        """The stream, status and headers of a response head (at most one per stream); None
        for a stream that is gone. Shared by every transport an edge speaks."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return None
        pseudo, headers = _split_headers(raw)
        try:
            status = int(pseudo.get(":status", ""))
        except ValueError:
            raise WireProtocolError("response without a numeric :status") from None
        if stream.response_started:
            raise WireProtocolError(f"second response on stream {stream_id}")
        stream.response_started = True
        return stream, status, headers

    def _on_response(self, stream_id: int, raw: list[Any]) -> list[ev.WireEvent]:
        head = self._response_head(stream_id, raw)
        if head is None or stream_id == self._control_id:
            return []
        stream, status, headers = head
        marker = next((v for k, v in headers if k == STREAM_KIND_HEADER), None)
        headers = [(k, v) for k, v in headers if k != STREAM_KIND_HEADER]
        if stream.kind == "websocket" and status == WS_ACCEPT_WIRE_STATUS and marker == "websocket":
            stream.messages = True
            stream.decoder = FrameDecoder(WS_KINDS, self.settings.max_ws_message)
            return [ev.ResponseStarted(stream_id, 101, headers)]
        if stream.kind == "websocket":
            stream.kind = "http"  # upgrade declined: an ordinary response with a body follows
        stream.received_digest = BodyDigest()
        return [ev.ResponseStarted(stream_id, status, headers)]

    def _eof_reason(self) -> str:
        return "unregistered" if self.state == "draining" else "eof"

    def _goaway_reason(self, error_code: int, detail: str) -> str:
        if self.state == "draining" and error_code == NO_ERROR:
            return "unregistered"
        return super()._goaway_reason(error_code, detail)


class ConnectorProtocol(TunnelProtocol):
    """Connector side (HTTP/2 server on the connection it dialled).

    Sequence: ``start()`` -> event ChallengeReceived -> ``send_registration(req)`` -> event
    RegistrationAnswered -> StreamOpened events; answer with ``send_response`` /
    ``accept_websocket``, ``send_data``, ``send_ws``. ``send_unregister()`` before draining.
    """

    client_side = False

    def __init__(
        self,
        *,
        heartbeat: HeartbeatConfig | None = None,
        settings: WireSettings | None = None,
        now: float,
    ) -> None:
        super().__init__(
            heartbeat=heartbeat or HeartbeatConfig(), settings=settings or WireSettings(), now=now
        )
        self.state = "new"  # new|awaiting_challenge|challenged|registering|registered|...
        self.response: RegistrationResponse | None = None
        self.disconnect: Disconnect | None = None

    def start(self, now: float) -> None:
        """Send this side's SETTINGS; wait for the edge's control stream and challenge."""
        if self._started:
            raise RuntimeError("already started")
        self._started = True
        self._heartbeat.received(now)
        self._heartbeat.ping_sent(now)
        self._initiate()
        self.state = "awaiting_challenge"

    def send_registration(self, request: RegistrationRequest) -> None:
        if self.state != "challenged":
            raise RuntimeError(f"cannot register in state {self.state}")
        self._send_control(
            {"type": "register", "protocol_version": PROTOCOL_VERSION, "request": request.to_json()}
        )
        self.state = "registering"

    def send_unregister(self) -> None:
        """Ask the edge to stop opening streams here (graceful drain)."""
        if self.state != "registered" or self.closed:
            return
        self._send_control({"type": "unregister"})
        self.state = "unregistering"

    def send_response(
        self, stream_id: int, status: int, headers: Headers, *, end_stream: bool = False
    ) -> None:
        """Send response headers for a visitor stream."""
        if not 200 <= status <= 999:
            raise ValueError(f"status {status} cannot be sent (use accept_websocket for 101)")
        self._send_response_headers(stream_id, status, end_to_end_headers(headers), end_stream)
        if not end_stream:  # the body that follows ends with its digest (body_digest.py)
            self._streams[stream_id].sent_digest = BodyDigest()

    def accept_websocket(self, stream_id: int, headers: Headers) -> None:
        """Accept a WebSocket stream (the edge sees status 101); messages may follow."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.kind != "websocket":
            raise ValueError(f"stream {stream_id} is not a WebSocket request")
        self._send_response_headers(
            stream_id,
            WS_ACCEPT_WIRE_STATUS,
            [*end_to_end_headers(headers), (STREAM_KIND_HEADER, "websocket")],
            False,
        )

    def _send_response_headers(
        self, stream_id: int, status: int, headers: Headers, end_stream: bool
    ) -> None:
        stream = self._writable(stream_id)
        if stream.response_started:
            raise ValueError(f"response already started on stream {stream_id}")
        stream.response_started = True
        raw = [(b":status", str(status).encode())]
        raw += [(_encode(k), _encode(v)) for k, v in headers]
        self._conn.send_headers(stream_id, raw, end_stream=end_stream)
        if end_stream:
            stream.local_closed = True
            self._maybe_forget(stream_id)

    def _on_request(self, stream_id: int, raw: list[Any]) -> list[ev.WireEvent]:
        pseudo, headers = _split_headers(raw)
        kind = next((v for k, v in headers if k == STREAM_KIND_HEADER), "http")
        if self._control_id is None:
            if kind != "control":
                raise WireProtocolError("the first stream must be the control stream")
            self._control_id = stream_id
            self._streams[stream_id] = _Stream(
                kind="control",
                messages=True,
                decoder=FrameDecoder(frozenset({KIND_CONTROL}), self.settings.max_control_message),
                response_started=True,
            )
            self._conn.send_headers(stream_id, [(b":status", b"200")])
            return []
        if kind not in ("http", "websocket"):
            raise WireProtocolError(f"unknown stream kind {kind!r}")
        if self.state not in ("registered", "unregistering"):
            self._conn.reset_stream(stream_id, REFUSED_STREAM)
            return []
        request = StreamRequest(
            method=pseudo.get(":method", "GET"),
            path=pseudo.get(":path", "/"),
            host=pseudo.get(":authority", ""),
            headers=[(k, v) for k, v in headers if k != STREAM_KIND_HEADER],
            scheme=pseudo.get(":scheme", "https"),
            websocket=kind == "websocket",
        )
        stream = _Stream(kind=kind)
        if kind == "websocket":
            stream.messages = True
            stream.decoder = FrameDecoder(WS_KINDS, self.settings.max_ws_message)
        self._streams[stream_id] = stream
        return [ev.StreamOpened(stream_id, request)]

    def _on_control(self, message: dict[str, Any]) -> list[ev.WireEvent]:
        kind = message["type"]
        if kind == "challenge":
            if self.state != "awaiting_challenge":
                raise WireProtocolError(f"challenge in state {self.state}")
            version = _check_version(message)
            nonce = message.get("nonce")
            if not isinstance(nonce, str) or not nonce:
                raise WireProtocolError("challenge lacks a 'nonce' string")
            self.state = "challenged"
            return [ev.ChallengeReceived(nonce, version)]
        if kind == "registration_response":
            if self.state != "registering":
                raise WireProtocolError(f"registration response in state {self.state}")
            self.response = RegistrationResponse.from_json(message)
            self.state = "registered" if self.response.ok else "refused"
            return [ev.RegistrationAnswered(self.response)]
        if kind == "unregistered":
            return [ev.UnregisterAcknowledged()] if self.state == "unregistering" else []
        if kind == "disconnect":
            self.disconnect = Disconnect.from_json(message)
            return [ev.DisconnectReceived(self.disconnect)]
        return []
