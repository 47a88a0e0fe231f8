"""A small typed async client for the Toxiproxy HTTP API (ours or a real Toxiproxy server).

    async with FaultProxyClient("http://127.0.0.1:8474") as fp:
        proxy = await fp.create_proxy("db", "127.0.0.1:0", "127.0.0.1:5432")
        async with proxy.toxic("latency", latency=500, jitter=50):
            ...                      # every new and open connection is slowed down
        async with proxy.down():
            ...                      # connections closed, new ones refused

Every call has a timeout; every error response becomes a :class:`FaultProxyError` carrying the
HTTP status and the server's message (bodies are parsed as JSON whatever the content type says,
because Toxiproxy sends its JSON errors as ``text/plain``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8474"
DEFAULT_TIMEOUT = 10.0


class FaultProxyError(Exception):
    """The fault proxy refused or failed a request (``status`` 0: it could not be reached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"fault proxy: HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message


class BadRequest(FaultProxyError):
    """400: a malformed body, a missing field, a bad stream, toxic type or attribute."""


class NotFound(FaultProxyError):
    """404: no such proxy or toxic."""


class Conflict(FaultProxyError):
    """409: a proxy or toxic with that name already exists."""


class FaultProxyUnavailable(FaultProxyError):
    """The API could not be reached or did not answer in time (status 0)."""


_ERRORS_BY_STATUS: dict[int, type[FaultProxyError]] = {
    400: BadRequest,
    404: NotFound,
    409: Conflict,
}


def _error_from(response: httpx.Response) -> FaultProxyError:
    status = response.status_code
    message = response.text.strip()
    with contextlib.suppress(ValueError):
        body = json.loads(response.content)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            message = body["error"]
    if not message:
        message = {
            503: "the server timed out handling the request (Toxiproxy answers 503 "
            "after 25 s); retry, and check the fault proxy's load"
        }.get(status, response.reason_phrase or "no message")
    return _ERRORS_BY_STATUS.get(status, FaultProxyError)(status, message)


@dataclass(frozen=True)
class Toxic:
    """A toxic as the API reports it."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Toxic:
        return cls(
            name=str(data["name"]),
            type=str(data["type"]),
            stream=str(data.get("stream", "downstream")),
            toxicity=float(data.get("toxicity", 1.0)),
            attributes=dict(data.get("attributes") or {}),
        )


@dataclass
class Proxy:
    """A proxy as the API reports it, with methods that act on it through the client."""

    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: list[Toxic] = field(default_factory=list)
    client: FaultProxyClient | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], client: FaultProxyClient | None = None) -> Proxy:
        return cls(
            name=str(data["name"]),
            listen=str(data.get("listen", "")),
            upstream=str(data.get("upstream", "")),
            enabled=bool(data.get("enabled", False)),
            toxics=[Toxic.from_json(t) for t in data.get("toxics") or []],
            client=client,
        )

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        """The port clients connect to (the real one, even if created with port 0)."""
        return int(self.listen.rpartition(":")[2])

    def _client(self) -> FaultProxyClient:
        if self.client is None:
            raise RuntimeError(f"proxy {self.name!r} is not bound to a FaultProxyClient")
        return self.client

    def _path(self, *parts: str) -> str:
        return "/".join(["/proxies", _quote(self.name), *(_quote(p) for p in parts)])

    def _absorb(self, data: Mapping[str, Any]) -> Proxy:
        fresh = Proxy.from_json(data, self.client)
        self.listen, self.upstream, self.enabled = fresh.listen, fresh.upstream, fresh.enabled
        self.toxics = fresh.toxics
        return self

    async def refresh(self) -> Proxy:
        """Reload this proxy's state from the server."""
        return self._absorb(await self._client().request("GET", self._path()))

    async def update(
        self,
        *,
        listen: str | None = None,
        upstream: str | None = None,
        enabled: bool | None = None,
    ) -> Proxy:
        """PATCH the given fields (a new listen/upstream restarts the proxy)."""
        body: dict[str, Any] = {}
        if listen is not None:
            body["listen"] = listen
        if upstream is not None:
            body["upstream"] = upstream
        if enabled is not None:
            body["enabled"] = enabled
        return self._absorb(await self._client().request("PATCH", self._path(), body))

    async def disable(self) -> Proxy:
        """Close every connection and refuse new ones."""
        return await self.update(enabled=False)

    async def enable(self) -> Proxy:
        """Listen again (same address)."""
        return await self.update(enabled=True)

    async def delete(self) -> None:
        await self._client().request("DELETE", self._path())

    async def list_toxics(self) -> list[Toxic]:
        data = await self._client().request("GET", self._path("toxics"))
        return [Toxic.from_json(t) for t in data]

    async def add_toxic(
        self,
        type: str,
        attributes: Mapping[str, int] | None = None,
        *,
        stream: str = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
    ) -> Toxic:
        """Add a toxic (name defaults to ``<type>_<stream>``); it applies to open connections."""
        body: dict[str, Any] = {
            "type": type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": dict(attributes or {}),
        }
        if name:
            body["name"] = name
        return Toxic.from_json(await self._client().request("POST", self._path("toxics"), body))

    async def update_toxic(
        self,
        name: str,
        attributes: Mapping[str, int] | None = None,
        *,
        toxicity: float | None = None,
    ) -> Toxic:
        """Change a toxic's attributes and/or toxicity (omitted ones are kept)."""
        body: dict[str, Any] = {}
        if attributes is not None:
            body["attributes"] = dict(attributes)
        if toxicity is not None:
            body["toxicity"] = toxicity
        return Toxic.from_json(
            await self._client().request("PATCH", self._path("toxics", name), body)
        )

    async def remove_toxic(self, name: str) -> None:
        await self._client().request("DELETE", self._path("toxics", name))

    @contextlib.asynccontextmanager
    async def toxic(
        self,
        type: str,
        attributes: Mapping[str, int] | None = None,
        *,
        stream: str = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
        **attrs: int,
    ) -> AsyncIterator[Toxic]:
        """``async with proxy.toxic("latency", latency=500):`` adds the toxic, removes it after
        (a toxic already removed, e.g. by a reset, is not an error)."""
        added = await self.add_toxic(
            type, {**(attributes or {}), **attrs}, stream=stream, toxicity=toxicity, name=name
        )
        try:
            yield added
        finally:
            with contextlib.suppress(NotFound):
                await self.remove_toxic(added.name)

    @contextlib.asynccontextmanager
    async def down(self) -> AsyncIterator[Proxy]:
        """``async with proxy.down():`` the link is down inside the block, up again after."""
        await self.disable()
        try:
            yield self
        finally:
            await self.enable()


def _quote(part: str) -> str:
    return quote(part, safe="")


class FaultProxyClient:
    """Async client for the Toxiproxy API; use as ``async with FaultProxyClient(url) as fp:``."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout),
            trust_env=False,  # never send fault-proxy calls through an HTTP proxy
            headers={"User-Agent": "outlast-faultproxy-client"},
        )

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """One API call; returns the decoded JSON (None for 204). Raises FaultProxyError."""
        try:
            if body is None:
                response = await self._http.request(method, path)
            else:
                response = await self._http.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise FaultProxyUnavailable(
                0,
                f"fault proxy at {self.url} did not answer {method} {path} within "
                f"{self.timeout:g} s ({type(exc).__name__})",
            ) from exc
        except httpx.TransportError as exc:
            raise FaultProxyUnavailable(
                0, f"cannot reach the fault proxy at {self.url} ({exc}); is it running?"
            ) from exc
        if response.status_code >= 400:
            raise _error_from(response)
        if response.status_code == 204 or not response.content.strip():
            return None
        try:
            return json.loads(response.content)
        except ValueError:
            return response.text

    async def version(self) -> str:
        """The server's version string (``{"version": ...}``; older servers send plain text)."""
        data = await self.request("GET", "/version")
        if isinstance(data, dict):
            return str(data.get("version", ""))
        return str(data).strip()

    async def proxies(self) -> dict[str, Proxy]:
        """Every proxy, by name."""
        data = await self.request("GET", "/proxies")
        return {name: Proxy.from_json(p, self) for name, p in (data or {}).items()}

    async def get_proxy(self, name: str) -> Proxy:
        """One proxy (NotFound if there is none)."""
        return Proxy.from_json(await self.request("GET", f"/proxies/{_quote(name)}"), self)

    async def create_proxy(
        self, name: str, listen: str, upstream: str, enabled: bool = True
    ) -> Proxy:
        """Create a proxy (Conflict if the name is taken); port 0 in ``listen`` picks a port."""
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        return Proxy.from_json(await self.request("POST", "/proxies", body), self)

    async def populate(self, proxies: Sequence[Mapping[str, Any]]) -> list[Proxy]:
        """Create or replace proxies in one call; unchanged ones are left alone (idempotent)."""
        data = await self.request("POST", "/populate", [dict(p) for p in proxies])
        items = data.get("proxies", []) if isinstance(data, dict) else data
        return [Proxy.from_json(p, self) for p in items or []]

    async def delete_proxy(self, name: str) -> None:
        await self.request("DELETE", f"/proxies/{_quote(name)}")

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        await self.request("POST", "/reset")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> FaultProxyClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
