"""Proxying visitor streams to the origin named by the ingress rules (HTTP and WebSocket)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from reference.connector.ingress import Ingress, IngressRule
from reference.connector.metrics import ConnectorMetrics
from reference.logs import log_event
from reference.wire import ConnectorStream, WireError, WsMessage, WsMessageType

logger = logging.getLogger(__name__)

# Headers never forwarded between hops (either direction).
HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
# WebSocket handshake headers belong to one hop (the connector makes its own handshake).
WS_HOP_HEADERS = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
        "sec-websocket-protocol",
    }
)
READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ConnectionIdentity:
    """Who is proxying (added to origin requests as ``X-Outlast-*`` headers)."""

    tunnel_id: str
    conn_index: int
    location: str


class OriginProxy:
    """``handle(stream, identity)`` answers one visitor stream."""

    def __init__(
        self,
        ingress: Ingress,
        metrics: ConnectorMetrics,
        *,
        connect_timeout: float = 10.0,
    ) -> None:
        self.ingress = ingress
        self.metrics = metrics
        self.connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> OriginProxy:
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use OriginProxy as an async context manager"
        return self._session

    async def handle(self, stream: ConnectorStream, identity: ConnectionIdentity) -> None:
        request = stream.request
        self.metrics.total_requests.inc()
        self.metrics.concurrent_requests.inc()
        try:
            number, rule = self.ingress.match(request.host, request.path)
            if rule.service.status is not None:
                await stream.send_response(
                    rule.service.status, [("content-type", "text/plain; charset=utf-8")]
                )
                await stream.send_body(f"ingress rule #{number}: {rule.service}\n".encode())
                await stream.end_body()
                self.metrics.response_by_code.labels(str(rule.service.status)).inc()
            elif request.websocket:
                await self._websocket(stream, rule, identity)
            else:
                await self._http(stream, rule, identity)
        finally:
            self.metrics.concurrent_requests.dec()

    def _origin_headers(
        self, stream: ConnectorStream, identity: ConnectionIdentity, *, websocket: bool
    ) -> list[tuple[str, str]]:
        dropped = HOP_HEADERS | (WS_HOP_HEADERS if websocket else frozenset())
        headers = [(k, v) for k, v in stream.request.headers if k.lower() not in dropped]
        headers += [
            ("Host", stream.request.host),
            ("X-Outlast-Tunnel-Id", identity.tunnel_id),
            ("X-Outlast-Conn-Index", str(identity.conn_index)),
            ("X-Outlast-Edge-Location", identity.location),
        ]
        return headers

    async def _fail(self, stream: ConnectorStream, status: int, what: str, error: str) -> None:
        self.metrics.request_errors.inc()
        self.metrics.response_by_code.labels(str(status)).inc()
        log_event(
            logger,
            "origin request failed",
            logging.WARNING,
            event="origin_error",
            host=stream.request.host,
            path=stream.request.path.split("?", 1)[0],
            error=error,
        )
        if stream.response_started:
            stream.reset()
            return
        await stream.send_response(status, [("content-type", "text/plain; charset=utf-8")])
        await stream.send_body(f"{what}: {error}\n".encode())
        await stream.end_body()

    async def _http(
        self, stream: ConnectorStream, rule: IngressRule, identity: ConnectionIdentity
    ) -> None:
        request = stream.request
        url = rule.service.http_base + request.path
        first = await stream.read_body_chunk()
        body: AsyncIterator[bytes] | None = None
        if first:

            async def upload() -> AsyncIterator[bytes]:
                yield first
                while chunk := await stream.read_body_chunk():
                    yield chunk

            body = upload()
        try:
            async with self.session.request(
                request.method,
                url,
                headers=self._origin_headers(stream, identity, websocket=False),
                data=body,
                allow_redirects=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            ) as response:
                headers = [
                    (k, v) for k, v in response.headers.items() if k.lower() not in HOP_HEADERS
                ]
                await stream.send_response(response.status, headers)
                self.metrics.response_by_code.labels(str(response.status)).inc()
                async for chunk in response.content.iter_chunked(READ_CHUNK):
                    await stream.send_body(chunk)
                await stream.end_body()
        except WireError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            await self._fail(stream, 502, "origin unreachable", f"{type(exc).__name__}: {exc}")

    async def _websocket(
        self, stream: ConnectorStream, rule: IngressRule, identity: ConnectionIdentity
    ) -> None:
        request = stream.request
        protocols = [
            p.strip()
            for p in (request.header("sec-websocket-protocol") or "").split(",")
            if p.strip()
        ]
        try:
            origin = await self.session.ws_connect(
                rule.service.ws_base + request.path,
                headers=self._origin_headers(stream, identity, websocket=True),
                protocols=protocols,
                autoping=True,
                max_msg_size=16 * 1024 * 1024,
            )
        except aiohttp.WSServerHandshakeError as exc:
            await self._fail(stream, exc.status or 502, "origin refused the WebSocket", exc.message)
            return
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            await self._fail(stream, 502, "origin unreachable", f"{type(exc).__name__}: {exc}")
            return
        async with origin:
            accept = [("sec-websocket-protocol", origin.protocol)] if origin.protocol else []
            await stream.accept_websocket(accept)
            self.metrics.response_by_code.labels("101").inc()
            to_origin = asyncio.ensure_future(self._edge_to_origin(stream, origin))
            to_edge = asyncio.ensure_future(self._origin_to_edge(stream, origin))
            try:
                await asyncio.wait({to_origin, to_edge}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (to_origin, to_edge):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        with contextlib.suppress(WireError):
            await stream.end_body()

    async def _edge_to_origin(
        self, stream: ConnectorStream, origin: aiohttp.ClientWebSocketResponse
    ) -> None:
        while (message := await stream.receive_ws()) is not None:
            if message.type is WsMessageType.TEXT:
                assert isinstance(message.data, str)
                await origin.send_str(message.data)
            elif message.type is WsMessageType.BINARY:
                assert isinstance(message.data, bytes)
                await origin.send_bytes(message.data)
            else:
                await origin.close(code=message.code, message=message.reason.encode())
                return
        await origin.close()

    async def _origin_to_edge(
        self, stream: ConnectorStream, origin: aiohttp.ClientWebSocketResponse
    ) -> None:
        async for message in origin:
            if message.type == aiohttp.WSMsgType.TEXT:
                await stream.send_ws(WsMessage.text(message.data))
            elif message.type == aiohttp.WSMsgType.BINARY:
                await stream.send_ws(WsMessage.binary(message.data))
            else:
                break
        await stream.send_ws(WsMessage.close(origin.close_code or 1000, ""))
