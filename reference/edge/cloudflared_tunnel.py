"""Edge-side asyncio layer of cloudflared's HTTP/2 transport.

:class:`CloudflaredTunnel` is an :class:`reference.wire.EdgeTunnel` (same ``open_stream``,
streams, ``close``, ``wait_unavailable``), so the connection registry, the visitor proxy and
inter-PoP forwarding serve a real cloudflared's connections like the reference connector's.
What differs lives in :class:`reference.cloudflared.core.CloudflaredEdgeProtocol`; here only
the response source is mapped: a response cloudflared made itself (``src: cloudflared``: it
could not reach the origin) becomes the edge's own JSON error.
"""

from __future__ import annotations

import asyncio
import json
import time

from reference.cloudflared.core import CloudflaredEdgeProtocol, CloudflaredResponse
from reference.edge.visitor_errors import ORIGIN_FLOW_LIMITED, ORIGIN_UNREACHABLE
from reference.tunnel_auth import new_nonce
from reference.wire import events as ev
from reference.wire.connection import Clock
from reference.wire.edge import Authenticate, EdgeStream, EdgeTunnel, answer_registration
from reference.wire.messages import HeartbeatConfig, WireSettings

#: How long the edge waits for cloudflared to hang up after a refusal before closing itself.
REFUSAL_LINGER = 5.0


class CloudflaredTunnel(EdgeTunnel):
    """A registered cloudflared connection, seen from the edge."""

    _core: CloudflaredEdgeProtocol
    pop: str = ""

    @property
    def local_configuration(self) -> bytes | None:
        """The ingress configuration cloudflared pushed (connection index 0 only)."""
        return self._core.local_configuration

    def _dispatch_role(self, event: ev.WireEvent) -> None:
        if isinstance(event, CloudflaredResponse) and event.source != "origin":
            channel = self._channels.get(event.stream_id)
            if isinstance(channel, EdgeStream):
                kind = ORIGIN_FLOW_LIMITED if event.flow_limited else ORIGIN_UNREACHABLE
                message = (
                    "cloudflared refused the request: too many active flows"
                    if event.flow_limited
                    else "cloudflared could not reach the origin service (is it running?)"
                )
                body = json.dumps(
                    {"error_code": kind.error_code, "error": message, "pop": self.pop}
                ).encode()
                channel._set_response(kind.status, [("content-type", "application/json")])
                channel.feed_body(body, 0)
            return
        super()._dispatch_role(event)


async def accept_cloudflared(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    authenticate: Authenticate,
    pop: str,
    heartbeat: HeartbeatConfig | None = None,
    settings: WireSettings | None = None,
    registration_timeout: float = 10.0,
    clock: Clock = time.monotonic,
) -> CloudflaredTunnel | None:
    """Run the edge side of a cloudflared connection (TLS already done): open the control
    stream, wait for ``registerConnection``, answer it with ``authenticate(request, nonce)``.
    Returns the registered tunnel, or None (refused, timed out, not cloudflared: closed)."""
    core = CloudflaredEdgeProtocol(heartbeat=heartbeat, settings=settings, now=clock())
    core.start(new_nonce(), clock())
    tunnel = CloudflaredTunnel(core, reader, writer, clock=clock)
    tunnel.pop = pop
    tunnel._start()
    response = await answer_registration(tunnel, authenticate, registration_timeout)
    if response is None:
        return None
    if not response.ok:
        # cloudflared reads the error and hangs up; close if it does not.
        try:
            await asyncio.wait_for(tunnel.wait_closed(), REFUSAL_LINGER)
        except TimeoutError:
            await tunnel._close(f"registration refused: {response.cause}")
        return None
    return tunnel
