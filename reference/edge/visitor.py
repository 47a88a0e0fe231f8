"""Visitor HTTP/WebSocket server: Host -> DNS record -> tunnel -> one of its connections.

Routing and errors (table in docs/edge.md):

1. Host not in a live zone, or no live record for it          -> 404, error_code 1001
2. record does not point at a tunnel                           -> 404, error_code 1002
3. tunnel unknown to this edge or deleted                      -> 530, error_code 1016
4. no registered connection at this PoP, and no reachable peer
   PoP holds one                                               -> 530, error_code 1033
5. every connection tried failed before the response started   -> 502, error_code 1035

A PoP without a connection of the tunnel forwards the request (and WebSocket upgrades) to a
reachable peer PoP that holds one (``reference.edge.forwarding``; who holds what is learnt from
the peers themselves, ``reference.edge.peers``); a request forwarded to it is served from its own
connections only. When every local connection failed before the response and the request is
safe to resend, the peers are tried too.

A request is retried on another connection of the same tunnel when the stream could not even be
opened (nothing was sent), or when it is idempotent (GET, HEAD, OPTIONS, PUT, DELETE, TRACE)
and its connection failed before the response started (its body is replayed when it was at most
``replay_limit`` bytes). At most ``max_attempts`` connections are tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from reference.edge.config_cache import ConfigCache
from reference.edge.config_models import normalize_name
from reference.edge.connections import ConnectionRegistry, LiveConnection
from reference.edge.forwarding import PeerForwarder, PeerUnreachable
from reference.edge.metrics import EdgeMetrics
from reference.edge.peers import FORWARDED_FROM_HEADER, PeerDirectory
from reference.edge.request_body import DEFAULT_REPLAY_LIMIT, ReplayableBody
from reference.edge.visitor_errors import (
    CONNECTION_HEADER,
    MISSING_HOST,
    NO_ACTIVE_CONNECTION,
    NO_SUCH_HOSTNAME,
    NOT_A_TUNNEL_ROUTE,
    POP_HEADER,
    RESPONSE_TIMEOUT,
    TUNNEL_CONNECTION_FAILED,
    TUNNEL_ID_HEADER,
    TUNNEL_NOT_FOUND,
    TUNNEL_POP_HEADER,
    VisitorError,
    error_response,
)
from reference.http_limits import SlowClientLimits
from reference.logs import log_event
from reference.wire import (
    BodyDigestMismatch,
    EdgeStream,
    EdgeTunnel,
    Headers,
    StreamFailedBeforeResponse,
    StreamRequest,
    TunnelClosed,
    WireError,
    WsMessage,
    WsMessageType,
)

logger = logging.getLogger("reference.edge.visitor")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
        "host",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
    }
)
LocalHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class VisitorSettings:
    """Tunables of the visitor proxy."""

    max_attempts: int = 3
    replay_limit: int = DEFAULT_REPLAY_LIMIT
    response_timeout: float = 100.0
    max_ws_message: int = 1024 * 1024
    #: Header, idle and body timeouts and the connection cap of the visitor listener.
    limits: SlowClientLimits = field(default_factory=SlowClientLimits)


class _Route:
    def __init__(self, tunnel_id: str) -> None:
        self.tunnel_id = tunnel_id


@dataclass(frozen=True)
class _LocalFailure:
    """Every connection tried at this PoP failed before the response started."""

    error: str
    retry_safe: bool  # nothing that cannot be replayed was sent: another PoP may try
    tried: int


def is_local_host(host: str) -> bool:
    """True for an IP literal or ``localhost``: requests to the edge itself, not to a tunnel."""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def split_host(header: str) -> str:
    """The host name of a Host header (port removed, normalized)."""
    header = header.strip()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return normalize_name(header.rsplit(":", 1)[0] if header.count(":") == 1 else header)


class VisitorProxy:
    """The aiohttp application that forwards visitor requests into tunnels."""

    def __init__(
        self,
        pop: str,
        cache: ConfigCache,
        connections: ConnectionRegistry[EdgeTunnel],
        metrics: EdgeMetrics,
        *,
        settings: VisitorSettings | None = None,
        local_routes: dict[str, LocalHandler] | None = None,
        peers: PeerDirectory | None = None,
        forwarder: PeerForwarder | None = None,
    ) -> None:
        self.pop = pop
        self.cache = cache
        self.connections = connections
        self.metrics = metrics
        self.settings = settings or VisitorSettings()
        self.local_routes = local_routes or {}
        self.peers = peers
        self.forwarder = forwarder

    def application(self) -> web.Application:
        """The visitor listener's application."""
        app = web.Application(client_max_size=2**40)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def peer_application(self, extra: dict[str, LocalHandler]) -> web.Application:
        """The peer listener's application: ``extra`` routes (the registration summary), and
        every other path a request forwarded by a peer PoP."""
        app = web.Application(client_max_size=2**40)
        for path, handler in extra.items():
            app.router.add_get(path, handler)
        app.router.add_route("*", "/{tail:.*}", self.handle_forwarded)
        return app

    # ---- routing -----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Entry point for every request on the visitor listener. Requests for the edge itself
        (Host is an IP address or localhost, path /metrics or /ready) are not counted as
        visitor requests."""
        host = split_host(request.headers.get("Host", ""))
        local = self.local_routes.get(request.path) if is_local_host(host) else None
        if local is not None:
            return await local(request)
        response = await self._handle(request, host, forwarded_from=None)
        self.metrics.visitor_requests.labels(status=str(response.status)).inc()
        return response

    async def handle_forwarded(self, request: web.Request) -> web.StreamResponse:
        """Entry point of the peer listener: a request another PoP forwarded here. It is served
        from this PoP's own connections only (never forwarded again)."""
        peer = request.headers.get(FORWARDED_FROM_HEADER, "")
        if not peer:
            return self._error(
                MISSING_HOST, f"the peer listener takes only requests with {FORWARDED_FROM_HEADER}"
            )
        self.metrics.served_for_peers.labels(peer=peer).inc()
        host = split_host(request.headers.get("Host", ""))
        return await self._handle(request, host, forwarded_from=peer)

    async def _handle(
        self, request: web.Request, host: str, forwarded_from: str | None
    ) -> web.StreamResponse:
        if not host:
            return self._error(MISSING_HOST, "the request has no Host header")
        route = self._route(host)
        if isinstance(route, web.Response):
            return route
        tunnel_id = route.tunnel_id
        websocket = (
            request.method == "GET"
            and request.headers.get("Upgrade", "").lower() == "websocket"
            and "upgrade" in request.headers.get("Connection", "").lower()
        )
        has_body = request.body_exists and not websocket
        body = (
            ReplayableBody(
                request.content,
                self.settings.replay_limit,
                idle_timeout=self.settings.limits.body_idle_timeout,
                on_stall=lambda: self._body_stalled(request),
            )
            if has_body
            else None
        )
        failure: _LocalFailure | None = None
        if self.connections.for_tunnel(tunnel_id):
            served = await self._serve_local(request, host, tunnel_id, websocket, body)
            if not isinstance(served, _LocalFailure):
                return served
            failure = served
            if not failure.retry_safe:
                return self._connection_failed(tunnel_id, failure)
        if forwarded_from is None and self.forwarder is not None and self.peers is not None:
            for peer in self.peers.holders(tunnel_id):
                if body is not None and not body.replayable:
                    break
                try:
                    if websocket:
                        response = await self.forwarder.forward_websocket(request, peer)
                    else:
                        response = await self.forwarder.forward_http(request, peer, body)
                except PeerUnreachable as exc:
                    # Stop choosing it until its registration poll answers again.
                    self.peers.mark_unreachable(peer, asyncio.get_running_loop().time())
                    self.metrics.forwarded.labels(peer=peer, outcome="unreachable").inc()
                    log_event(
                        logger,
                        "could not forward to peer PoP",
                        logging.WARNING,
                        tunnel_id=tunnel_id,
                        peer=peer,
                        error=str(exc),
                    )
                    failure = _LocalFailure(str(exc), retry_safe=True, tried=0)
                    continue
                self.metrics.forwarded.labels(peer=peer, outcome="ok").inc()
                return response
        if failure is None or not failure.tried:
            return self._no_connection(tunnel_id)
        return self._connection_failed(tunnel_id, failure)

    def _route(self, host: str) -> _Route | web.Response:
        record = self.cache.route_record(host) if self.cache.zone_for(host) else None
        if record is None:
            return self._error(
                NO_SUCH_HOSTNAME, f"no such hostname: {host} has no DNS record at this edge"
            )
        tunnel_id = self.cache.routed_tunnel_id(host, record)
        if tunnel_id is None:
            return self._error(
                NOT_A_TUNNEL_ROUTE,
                f"{host} is not routed to a tunnel of its zone's account ({record.content})",
            )
        tunnel = self.cache.tunnel(tunnel_id)
        if tunnel is None:
            return self._error(
                TUNNEL_NOT_FOUND,
                f"tunnel {tunnel_id} for {host} is unknown to this edge (its configuration may "
                "still be propagating)",
            )
        if tunnel.deleted:
            return self._error(
                TUNNEL_NOT_FOUND,
                f"tunnel {tunnel_id} for {host} was deleted; route the hostname to another tunnel",
            )
        return _Route(tunnel_id)

    def _no_connection(self, tunnel_id: str) -> web.Response:
        where = f"at this edge ({self.pop})"
        if self.peers is not None and self.peers.peers:
            where += " nor at any PoP it can reach"
        return self._error(
            NO_ACTIVE_CONNECTION,
            f"tunnel {tunnel_id} has no active connection {where}; is its connector running?",
        )

    def _connection_failed(self, tunnel_id: str, failure: _LocalFailure) -> web.Response:
        return self._error(
            TUNNEL_CONNECTION_FAILED,
            f"tunnel {tunnel_id}: the connection failed before the origin answered "
            f"({failure.tried} tried; last error: {failure.error})",
        )

    def _error(self, kind: VisitorError, message: str) -> web.Response:
        return error_response(kind, message, self.pop)

    # ---- serving from this PoP's connections ---------------------------------------------------

    def _stream_request(self, request: web.Request, host: str, websocket: bool) -> StreamRequest:
        headers: Headers = [
            (name.lower(), value)
            for name, value in request.headers.items()
            if name.lower() not in HOP_BY_HOP and name.lower() != FORWARDED_FROM_HEADER.lower()
        ]
        peer = request.remote or ""
        forwarded = request.headers.get("X-Forwarded-For")
        headers = [(n, v) for n, v in headers if n != "x-forwarded-for"]
        headers.append(("x-forwarded-for", f"{forwarded}, {peer}" if forwarded else peer))
        headers.append(("x-forwarded-proto", request.scheme))
        headers.append(("x-outlast-pop", self.pop))
        return StreamRequest(
            method=request.method,
            path=request.path_qs,
            host=host,
            headers=headers,
            scheme=request.scheme,
            websocket=websocket,
        )

    async def _serve_local(
        self,
        request: web.Request,
        host: str,
        tunnel_id: str,
        websocket: bool,
        body: ReplayableBody | None,
    ) -> web.StreamResponse | _LocalFailure:
        """Serve through this PoP's connections, retrying on another one when that is safe.
        Returns the response, or why every connection tried failed before the response."""
        stream_request = self._stream_request(request, host, websocket)
        has_body = body is not None
        idempotent = request.method in IDEMPOTENT_METHODS
        tried: set[str] = set()
        last_error = "no usable connection"
        retry_safe = True
        for attempt in range(self.settings.max_attempts):
            connection = self.connections.pick(tunnel_id, tried)
            if connection is None:
                break
            tried.add(connection.connection_id)
            if attempt:
                self.metrics.visitor_retries.inc()
            with connection.request_slot():
                try:
                    stream = await connection.handle.open_stream(
                        stream_request, end_body=not (has_body or websocket)
                    )
                except (TunnelClosed, StreamFailedBeforeResponse) as exc:
                    last_error = str(exc)  # nothing was sent: safe to try elsewhere
                    continue
                try:
                    status, headers, pump = await self._response_head(stream, body)
                except TimeoutError:
                    stream.reset()
                    return self._error(
                        RESPONSE_TIMEOUT,
                        f"the origin behind tunnel {tunnel_id} did not answer within "
                        f"{self.settings.response_timeout:.0f} s",
                    )
                except StreamFailedBeforeResponse as exc:
                    last_error = str(exc)
                    log_event(
                        logger,
                        "tunnel stream failed before the response",
                        logging.WARNING,
                        tunnel_id=tunnel_id,
                        connection_id=connection.connection_id,
                        method=request.method,
                        error=last_error,
                        attempt=attempt,
                    )
                    if idempotent and (body is None or body.replayable):
                        continue
                    retry_safe = False
                    break
                if websocket and status == 101:
                    return await self._relay_websocket(request, stream, headers, connection)
                return await self._relay_response(
                    request, stream, status, headers, connection, pump
                )
        return _LocalFailure(last_error, retry_safe=retry_safe, tried=len(tried))

    async def _response_head(
        self, stream: EdgeStream, body: ReplayableBody | None
    ) -> tuple[int, Headers, asyncio.Task[None] | None]:
        """Start sending the body and wait for the response head. The body pump keeps running
        (it is returned) while the response streams; it is cancelled on failure."""
        pump = asyncio.create_task(self._pump_body(stream, body)) if body is not None else None
        try:
            async with asyncio.timeout(self.settings.response_timeout):
                status, headers = await stream.response()
        except BaseException:
            stream.reset()  # no-op when the stream already failed; else stop the connector
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            raise
        return status, headers, pump

    def _body_stalled(self, request: web.Request) -> None:
        """A visitor's body sent nothing for ``body_idle_timeout`` s: count it, cut it."""
        self.metrics.visitor_slow_clients.labels(reason="body_timeout").inc()
        if request.transport is not None:
            request.transport.close()

    async def _pump_body(self, stream: EdgeStream, body: ReplayableBody | None) -> None:
        if body is None:
            return
        try:
            async for chunk in body.chunks():
                await stream.send_body(chunk)
            await stream.end_body()
        except WireError:
            return  # the response side reports what happened to the stream
        except Exception as exc:  # the visitor went away or sent a broken body mid-upload
            log_event(
                logger,
                "visitor request body failed; resetting the stream",
                logging.INFO,
                error=f"{type(exc).__name__}: {exc}",
            )
            stream.reset()

    async def _relay_response(
        self,
        request: web.Request,
        stream: EdgeStream,
        status: int,
        headers: Headers,
        connection: LiveConnection[EdgeTunnel],
        pump: asyncio.Task[None] | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                response.headers.add(name, value)
        response.headers[POP_HEADER] = self.pop
        response.headers[TUNNEL_POP_HEADER] = self.pop
        response.headers[CONNECTION_HEADER] = connection.connection_id
        response.headers[TUNNEL_ID_HEADER] = connection.tunnel_id
        # With a Content-Length the visitor takes the body as complete at its last byte: hold
        # one byte back until the tunnel digest is verified (an aborted response then stays
        # short). Without one (chunked), an abort leaves out the terminating chunk.
        length = next((v for n, v in headers if n.lower() == "content-length"), None)
        hold_back = length is not None and request.method != "HEAD"
        try:
            if hold_back and length is not None and length.strip() == "0":
                await stream.read_body_chunk()  # the verdict before the head says "complete"
            await response.prepare(request)
            if request.method != "HEAD":
                held = b""
                while chunk := await stream.read_body_chunk():
                    if hold_back:
                        chunk, held = held + chunk[:-1], chunk[-1:]
                    if chunk:
                        await response.write(chunk)
                if held:
                    await response.write(held)
                self._count_digest(stream)
            await response.write_eof()
        except BodyDigestMismatch as exc:
            self.metrics.tunnel_digest_mismatches.inc()
            log_event(
                logger,
                "response body does not match the tunnel digest; aborting the visitor connection",
                logging.ERROR,
                connection_id=connection.connection_id,
                tunnel_id=connection.tunnel_id,
                method=request.method,
                path=request.path,
                error=str(exc),
            )
            if not response.prepared:  # nothing sent yet: an error instead of a body
                return self._error(
                    TUNNEL_CONNECTION_FAILED,
                    f"tunnel {connection.tunnel_id}: the response was corrupted in the tunnel",
                )
            if request.transport is not None:
                request.transport.abort()
        except WireError as exc:
            log_event(
                logger,
                "tunnel stream failed mid-response; aborting the visitor connection",
                logging.WARNING,
                connection_id=connection.connection_id,
                error=str(exc),
            )
            if request.transport is not None:
                request.transport.abort()
        except (ConnectionError, asyncio.CancelledError):
            stream.reset()  # the visitor went away: stop the origin
            raise
        finally:
            if pump is not None and not pump.done():
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            if not stream.finished:
                stream.reset()
        return response

    def _count_digest(self, stream: EdgeStream) -> None:
        """The verdict on a body relayed in full (a mismatch raised before this)."""
        if stream.body_digest in ("verified", "absent"):
            self.metrics.tunnel_digests.labels(result=stream.body_digest).inc()

    async def _relay_websocket(
        self,
        request: web.Request,
        stream: EdgeStream,
        headers: Headers,
        connection: LiveConnection[EdgeTunnel],
    ) -> web.StreamResponse:
        protocol = next((v for n, v in headers if n.lower() == "sec-websocket-protocol"), None)
        ws = web.WebSocketResponse(
            protocols=(protocol,) if protocol else (),
            max_msg_size=self.settings.max_ws_message,
            autoping=True,
        )
        ws.headers[POP_HEADER] = self.pop
        ws.headers[TUNNEL_POP_HEADER] = self.pop
        ws.headers[CONNECTION_HEADER] = connection.connection_id
        ws.headers[TUNNEL_ID_HEADER] = connection.tunnel_id
        await ws.prepare(request)

        async def visitor_to_tunnel() -> None:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await stream.send_ws(WsMessage.text(message.data))
                elif message.type == WSMsgType.BINARY:
                    await stream.send_ws(WsMessage.binary(message.data))
                elif message.type == WSMsgType.ERROR:
                    break
            code = ws.close_code or 1000
            with contextlib.suppress(WireError):
                await stream.send_ws(WsMessage.close(code if code < 5000 else 1000))
                await stream.end_body()

        async def tunnel_to_visitor() -> None:
            while True:
                message = await stream.receive_ws()
                if message is None:
                    break
                if message.type == WsMessageType.TEXT:
                    data = message.data
                    await ws.send_str(data if isinstance(data, str) else data.decode())
                elif message.type == WsMessageType.BINARY:
                    data = message.data
                    await ws.send_bytes(data if isinstance(data, bytes) else data.encode())
                elif message.type == WsMessageType.CLOSE:
                    await ws.close(code=message.code, message=message.reason.encode())
                    return
            await ws.close()

        tasks = {
            asyncio.create_task(visitor_to_tunnel(), name="ws-visitor-to-tunnel"),
            asyncio.create_task(tunnel_to_visitor(), name="ws-tunnel-to-visitor"),
        }
        try:
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if pending:
                # Let the other direction finish its close handshake briefly.
                _, pending = await asyncio.wait(pending, timeout=2.0)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, WireError, ConnectionError):
                    await task
            if not stream.finished:
                stream.reset()
            if not ws.closed:
                await ws.close(code=1011, message=b"tunnel stream ended")
        return ws
