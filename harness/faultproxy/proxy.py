"""One named TCP proxy: a listener, its upstream address, its toxics and its live connections."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from typing import Any

from harness.faultproxy.addresses import join_address, split_address
from harness.faultproxy.errors import ApiError
from harness.faultproxy.link import Connection
from harness.faultproxy.toxic_chain import ToxicChain, ToxicWrapper
from reference.logs import log_event

DIAL_TIMEOUT = 10.0
STREAM_LIMIT = 256 * 1024

log = logging.getLogger("harness.faultproxy.proxy")


def _bind_error(host: str, port: int, exc: OSError) -> ApiError:
    reason = {
        errno.EADDRINUSE: "address already in use",
        errno.EADDRNOTAVAIL: "cannot assign requested address",
        errno.EACCES: "permission denied",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return ApiError(500, f"listen tcp {join_address(host, port)}: bind: {reason}")


class Proxy:
    """Listens on ``listen`` and forwards each accepted connection to ``upstream``."""

    def __init__(self, name: str, listen: str, upstream: str, seed: int) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.toxics = ToxicChain(seed, name)
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._generation = 0

    def to_json(self) -> dict[str, Any]:
        """Toxiproxy's proxy shape, with its toxics."""
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "Logger": {},  # Toxiproxy 2.12 serialises its (empty) zerolog.Logger field too
            "toxics": self.toxics.to_json(),
        }

    @property
    def connection_count(self) -> int:
        """Connections currently proxied."""
        return len(self._connections)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (port 0 picks a free port; ``listen`` then reports the real one)."""
        if self._server is not None:
            self.enabled = True
            return
        host, port = split_address(self.listen, field="listen", allow_port_zero=True)
        try:
            server = await asyncio.start_server(
                self._accept, host or "127.0.0.1", port, limit=STREAM_LIMIT, reuse_address=True
            )
        except OSError as exc:
            raise _bind_error(host, port, exc) from None
        bound = server.sockets[0].getsockname()
        self.listen = join_address(str(bound[0]), int(bound[1]))
        self._server = server
        self._generation += 1
        self.enabled = True
        log_event(
            log, "proxy listening", proxy=self.name, listen=self.listen, upstream=self.upstream
        )

    async def stop(self) -> None:
        """Stop listening (new connections are refused) and close every connection."""
        self.enabled = False
        self._generation += 1
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for connection in list(self._connections):
            connection.close()
        for task in list(self._handlers):
            task.cancel()
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5.0)
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5.0)
        log_event(log, "proxy stopped", proxy=self.name)

    async def update(self, listen: str, upstream: str, enabled: bool) -> None:
        """Apply a PATCH: a new listen/upstream restarts the proxy (dropping connections)."""
        if listen != self.listen or upstream != self.upstream:
            await self.stop()
            self.listen, self.upstream = listen, upstream
        if enabled and not self.enabled:
            await self.start()
        elif not enabled and (self.enabled or self._server is not None):
            await self.stop()

    # -- toxics on live connections ------------------------------------------------------------

    def add_toxic(self, body: Any) -> ToxicWrapper:
        wrapper = self.toxics.add(body)
        for connection in list(self._connections):
            connection.links[wrapper.stream].attach(wrapper)
        log_event(log, "toxic added", proxy=self.name, **wrapper.to_json())
        return wrapper

    def update_toxic(self, name: str, body: Any) -> ToxicWrapper:
        wrapper = self.toxics.update(name, body)
        for connection in list(self._connections):
            connection.links[wrapper.stream].reattach(wrapper)
        log_event(log, "toxic updated", proxy=self.name, **wrapper.to_json())
        return wrapper

    def remove_toxic(self, name: str) -> None:
        wrapper = self.toxics.remove(name)
        self._detach_everywhere(wrapper)
        log_event(log, "toxic removed", proxy=self.name, toxic=name)

    def remove_all_toxics(self) -> None:
        for wrapper in self.toxics.clear():
            self._detach_everywhere(wrapper)

    def _detach_everywhere(self, wrapper: ToxicWrapper) -> None:
        for connection in list(self._connections):
            connection.links[wrapper.stream].detach(wrapper)

    # -- connections ---------------------------------------------------------------------------

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        generation = self._generation
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            host, port = split_address(self.upstream, field="upstream", allow_port_zero=False)
            try:
                upstream_reader, dialled = await asyncio.wait_for(
                    asyncio.open_connection(host, port, limit=STREAM_LIMIT), DIAL_TIMEOUT
                )
                upstream_writer = dialled
            except (OSError, TimeoutError) as exc:
                log_event(
                    log,
                    "unable to open connection to upstream",
                    logging.WARNING,
                    proxy=self.name,
                    upstream=self.upstream,
                    error=str(exc),
                )
                return
            if generation != self._generation or not self.enabled:
                return
            connection = Connection(
                (client_reader, client_writer), (upstream_reader, dialled), self.toxics
            )
            self._connections.add(connection)
            try:
                await connection.run()
            finally:
                self._connections.discard(connection)
        except ValueError as exc:
            log_event(log, "bad upstream address", logging.WARNING, proxy=self.name, error=str(exc))
        finally:
            client_writer.close()
            if upstream_writer is not None:
                upstream_writer.close()
            self._handlers.discard(task)
