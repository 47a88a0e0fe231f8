"""Forwarding a visitor request to a peer PoP that holds a connection of its tunnel.

A PoP with no connection of the requested tunnel sends the request (or the WebSocket upgrade)
over the ``pop-<self>-<peer>`` inter-PoP link to the peer's peer listener, marked with
``X-Outlast-Forwarded-From`` so the peer serves it from its own connections and never forwards
it again. The response is relayed as it streams; ``X-Outlast-Pop`` names the PoP the visitor
reached and ``X-Outlast-Tunnel-Pop`` (set by the peer) the PoP whose connection carried it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import aiohttp
from aiohttp import WSMsgType, web

from reference.edge.peers import FORWARDED_FROM_HEADER
from reference.edge.request_body import ReplayableBody
from reference.edge.visitor_errors import POP_HEADER

Address = tuple[str, int]
#: Request headers not passed on to the peer (hop-by-hop, or re-added by the forwarder).
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
        FORWARDED_FROM_HEADER.lower(),
    }
)
_NOT_RELAYED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te"}
)


class PeerUnreachable(Exception):
    """The request could not be handed to the peer (nothing of it was answered)."""


@dataclass(frozen=True)
class ForwardSettings:
    """Timeouts of the inter-PoP hop (the peer applies the origin response timeout itself)."""

    connect_timeout: float = 1.0
    response_timeout: float = 100.0


class PeerForwarder:
    """One keep-alive HTTP client per edge for all its peers. Use as an async context manager."""

    def __init__(
        self, pop: str, peers: dict[str, Address], settings: ForwardSettings | None = None
    ) -> None:
        self.pop = pop
        self.peers = dict(peers)
        self.settings = settings or ForwardSettings()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=256),
            trust_env=False,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    def _url(self, peer: str, path_qs: str, scheme: str = "http") -> str:
        host, port = self.peers[peer]
        return f"{scheme}://{host}:{port}{path_qs}"

    def _headers(self, request: web.Request) -> dict[str, str]:
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in _NOT_FORWARDED
        }
        headers[FORWARDED_FROM_HEADER] = self.pop
        return headers

    async def forward_http(
        self, request: web.Request, peer: str, body: ReplayableBody | None
    ) -> web.StreamResponse:
        """Send ``request`` to ``peer`` and relay its response to the visitor.

        Raises :class:`PeerUnreachable` when the peer could not be reached or failed before its
        response head; by then the body may have been partly read (check ``body.replayable``).
        """
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.settings.connect_timeout,
            sock_read=self.settings.response_timeout,
        )
        data: AsyncIterator[bytes] | None = body.chunks() if body is not None else None
        try:
            upstream = await self._session.request(
                request.method,
                self._url(peer, request.path_qs),
                headers=self._headers(request),
                data=data,
                timeout=timeout,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise PeerUnreachable(f"peer {peer}: {type(exc).__name__}: {exc}") from exc
        try:
            response = web.StreamResponse(status=upstream.status)
            for name, value in upstream.headers.items():
                if name.lower() not in _NOT_RELAYED:
                    response.headers.add(name, value)
            response.headers[POP_HEADER] = self.pop
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except (aiohttp.ClientError, TimeoutError):
                # The peer's stream broke mid-response: the visitor must see a broken response,
                # never a complete-looking truncated one.
                if request.transport is not None:
                    request.transport.abort()
                return response
            await response.write_eof()
            return response
        finally:
            upstream.release()

    async def forward_websocket(self, request: web.Request, peer: str) -> web.StreamResponse:
        """Open the WebSocket at ``peer`` first, then accept the visitor's and relay both ways."""
        assert self._session is not None
        protocols = tuple(
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        )
        try:
            upstream = await self._session.ws_connect(
                self._url(peer, request.path_qs, "ws"),
                headers=self._headers(request),
                protocols=protocols,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
                autoping=True,
                max_msg_size=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise PeerUnreachable(f"peer {peer} refused the WebSocket: {exc.status}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise PeerUnreachable(f"peer {peer}: {type(exc).__name__}: {exc}") from exc
        ws = web.WebSocketResponse(
            protocols=(upstream.protocol,) if upstream.protocol else (), autoping=True
        )
        ws.headers[POP_HEADER] = self.pop
        for name in ("X-Outlast-Tunnel-Pop", "X-Outlast-Connection", "X-Outlast-Tunnel-Id"):
            if name in upstream._response.headers:  # aiohttp has no public getter for them
                ws.headers[name] = upstream._response.headers[name]
        await ws.prepare(request)

        async def pump(
            source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
            sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        ) -> None:
            async for message in source:
                if message.type == WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
                else:
                    break
            await sink.close(code=source.close_code or 1000)

        tasks = {
            asyncio.create_task(pump(ws, upstream), name="ws-visitor-to-peer"),
            asyncio.create_task(pump(upstream, ws), name="ws-peer-to-visitor"),
        }
        try:
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await upstream.close()
            if not ws.closed:
                await ws.close(code=1011, message=b"peer stream ended")
        return ws
