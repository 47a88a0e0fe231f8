"""The fault proxy server: proxies plus the HTTP API, embeddable with ``async with``."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from harness.faultproxy.addresses import is_loopback, join_address
from harness.faultproxy.api import build_app
from harness.faultproxy.collection import ProxyCollection
from harness.faultproxy.randomness import new_server_seed
from reference.logs import log_event

log = logging.getLogger("harness.faultproxy.server")


class FaultProxyServer:
    """A Toxiproxy-compatible fault proxy in this process.

    ``async with FaultProxyServer(api_listen=("127.0.0.1", 0), seed=7) as server:`` starts the
    API (``server.url`` has the real port) and stops every proxy and the API on exit. The API
    and every proxy listen on loopback addresses only, unless ``allow_non_loopback``. The same
    operations are available in-process on ``server.proxies`` (a :class:`ProxyCollection`).
    """

    def __init__(
        self,
        api_listen: tuple[str, int] = ("127.0.0.1", 8474),
        *,
        seed: int | None = None,
        allow_non_loopback: bool = False,
    ) -> None:
        if not allow_non_loopback and not is_loopback(api_listen[0]):
            raise ValueError(
                f"API address {api_listen[0]} is not a loopback address; "
                "pass allow_non_loopback=True (--allow-non-loopback) to listen there"
            )
        self.seed = seed if seed is not None else new_server_seed()
        self.api_listen = api_listen
        self.allow_non_loopback = allow_non_loopback
        self.proxies = ProxyCollection(self.seed, allow_non_loopback=allow_non_loopback)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def api_host(self) -> str:
        return self.api_listen[0]

    @property
    def api_port(self) -> int:
        """The API's real port (after start; port 0 picks a free one)."""
        if self._port is None:
            raise RuntimeError("the fault proxy API is not started; use `async with` or start()")
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the HTTP API, e.g. ``http://127.0.0.1:8474``."""
        return f"http://{join_address(self.api_host, self.api_port)}"

    async def start(self) -> None:
        """Start the HTTP API (proxies start as they are created)."""
        runner = web.AppRunner(build_app(self.proxies), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.api_host, self.api_listen[1], reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        log_event(log, "fault proxy API listening", url=self.url, seed=self.seed)

    async def populate_file(self, path: Path) -> list[dict[str, Any]]:
        """Create the proxies of a Toxiproxy ``-config`` file (a JSON array, as ``/populate``)."""
        body = json.loads(await asyncio.to_thread(Path(path).read_text))
        if isinstance(body, list) and any(isinstance(p, dict) and "toxics" in p for p in body):
            log_event(
                log,
                "toxics in a config file are ignored (as in Toxiproxy)",
                logging.WARNING,
                path=str(path),
            )
        return await self.proxies.populate(body)

    async def close(self) -> None:
        """Stop every proxy, then the API."""
        await self.proxies.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FaultProxyServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
