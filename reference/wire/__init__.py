"""The tunnel wire protocol between connector and edge (decision record: docs/wire-protocol.md).

One TCP (+TLS) connection per HA connection, always dialled by the connector. On it runs
HTTP/2 with roles reversed: the connector is the HTTP/2 *server*, the edge the *client*, so the
edge opens the streams. Stream 1 is the control stream (registration, unregister, disconnect);
every other stream is one visitor request (or WebSocket). Both sides send HTTP/2 PINGs every
``HeartbeatConfig.interval`` and close the connection after ``timeout`` seconds of silence.

Layers:

* sans-I/O core — :class:`EdgeProtocol`, :class:`ConnectorProtocol` (bytes + clock in,
  events + bytes out; see :mod:`reference.wire.core`);
* asyncio — edge side :func:`accept_tunnel` -> :class:`EdgeTunnel` / :class:`EdgeStream`;
  connector side :func:`connect_tunnel` -> :class:`ConnectorTunnel` / :class:`ConnectorStream`.

Edge usage::

    tunnel = await accept_tunnel(reader, writer, authenticate=auth, heartbeat=HeartbeatConfig())
    if tunnel is None:            # refused (answer already sent) or no registration
        return
    # tunnel.registration (RegistrationRequest), tunnel.connection_id, tunnel.location
    stream = await tunnel.open_stream(StreamRequest("GET", "/", "app.example.com", headers),
                                      end_body=True)
    try:
        status, headers = await stream.response(timeout=30)
    except StreamFailedBeforeResponse:
        ...                       # idempotent request: retry on another connection
    while chunk := await stream.read_body_chunk():
        ...
    reason = await tunnel.wait_closed()   # "unregistered", "heartbeat timeout", "eof", ...

Connector usage::

    tunnel = await connect_tunnel(host, port, ssl_ctx, build_registration=lambda nonce: ...,
                                  handle_stream=serve, heartbeat=HeartbeatConfig())
    # raises DialError / HandshakeFailed / RegistrationRefused(response)
    await tunnel.unregister(); await tunnel.drain(grace); await tunnel.close()
"""

from reference.wire.body_digest import DIGEST_TRAILER, BodyDigest
from reference.wire.channel import SEND_HIGH_WATER, StreamChannel
from reference.wire.connector import (
    BuildRegistration,
    ConnectorStream,
    ConnectorTunnel,
    StreamHandler,
    connect_tunnel,
)
from reference.wire.core import ConnectorProtocol, EdgeProtocol, TunnelProtocol
from reference.wire.edge import Authenticate, EdgeStream, EdgeTunnel, accept_tunnel
from reference.wire.errors import (
    BodyDigestMismatch,
    DialError,
    HandshakeFailed,
    RegistrationRefused,
    StreamError,
    StreamFailedBeforeResponse,
    StreamReset,
    TunnelClosed,
    WireError,
    WireProtocolError,
)
from reference.wire.messages import (
    PROTOCOL_VERSION,
    Disconnect,
    Headers,
    HeartbeatConfig,
    LegacyRegistration,
    RefusalCause,
    RegistrationRequest,
    RegistrationResponse,
    StreamRequest,
    WireSettings,
    WsMessage,
    WsMessageType,
)

__all__ = [
    "DIGEST_TRAILER",
    "PROTOCOL_VERSION",
    "SEND_HIGH_WATER",
    "Authenticate",
    "BodyDigest",
    "BodyDigestMismatch",
    "BuildRegistration",
    "ConnectorProtocol",
    "ConnectorStream",
    "ConnectorTunnel",
    "DialError",
    "Disconnect",
    "EdgeProtocol",
    "EdgeStream",
    "EdgeTunnel",
    "HandshakeFailed",
    "Headers",
    "HeartbeatConfig",
    "LegacyRegistration",
    "RefusalCause",
    "RegistrationRefused",
    "RegistrationRequest",
    "RegistrationResponse",
    "StreamChannel",
    "StreamError",
    "StreamFailedBeforeResponse",
    "StreamHandler",
    "StreamRequest",
    "StreamReset",
    "TunnelClosed",
    "TunnelProtocol",
    "WireError",
    "WireProtocolError",
    "WireSettings",
    "WsMessage",
    "WsMessageType",
    "accept_tunnel",
    "connect_tunnel",
]
