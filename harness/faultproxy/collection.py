"""All proxies of one server, and every API operation on them (JSON in, JSON out).

This is the fault proxy's API in-process; :mod:`harness.faultproxy.api` only maps HTTP onto it.
Errors are :class:`~harness.faultproxy.errors.ApiError` with Toxiproxy's statuses and messages.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from harness.faultproxy.addresses import (
    DEFAULT_LISTEN,
    is_loopback,
    listen_error,
    same_listen,
    split_address,
)
from harness.faultproxy.errors import (
    ApiError,
    bad_request_body,
    missing_field,
    proxy_already_exists,
    proxy_not_found,
)
from harness.faultproxy.proxy import Proxy


class PopulateError(ApiError):
    """A populate that failed part-way: Toxiproxy also reports the proxies it did set up."""

    def __init__(self, error: ApiError, proxies: list[dict[str, Any]]) -> None:
        super().__init__(error.status, error.message)
        self.proxies = proxies

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "proxies": self.proxies}


@dataclass(frozen=True)
class ProxySpec:
    """A validated proxy definition from a create or populate body."""

    name: str
    listen: str
    upstream: str
    enabled: bool


def _string_field(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_request_body(f"{key} must be a string, got {value!r}")
    return value


def _bool_field(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request_body(f"{key} must be true or false, got {value!r}")
    return value


def _check_addresses(listen: str, upstream: str, *, allow_non_loopback: bool) -> None:
    """A bad ``listen`` is a 500 with Go's message (as Toxiproxy, where ``net.Listen`` fails); a
    non-loopback one is refused (400) unless the server allows it; a bad upstream is a 400."""
    try:
        host, _ = split_address(listen, field="listen", allow_port_zero=True)
    except ValueError:
        raise ApiError(500, listen_error(listen)) from None
    if not allow_non_loopback and not is_loopback(host):
        raise non_loopback_listen(listen)
    try:
        split_address(upstream, field="upstream", allow_port_zero=False)
    except ValueError as exc:
        raise bad_request_body(str(exc)) from None


def non_loopback_listen(listen: str) -> ApiError:
    """400: this server only listens on loopback addresses unless started to allow others."""
    return ApiError(
        400,
        f"listen address {listen} is not a loopback address: this fault proxy only listens on "
        "127.0.0.0/8 and ::1 (start it with --allow-non-loopback to allow other addresses)",
    )


def parse_proxy_spec(
    body: Any, *, position: int | None = None, allow_non_loopback: bool = False
) -> ProxySpec:
    """Validate a proxy body (``name`` and ``upstream`` required; ``listen`` defaults to
    127.0.0.1:0, ``enabled`` to true)."""
    if not isinstance(body, dict):
        raise bad_request_body(f"expected a JSON object, got {type(body).__name__}")
    where = f" at proxy {position}" if position is not None else ""
    name = _string_field(body, "name")
    if not name:
        raise missing_field(f"name{where}")
    upstream = _string_field(body, "upstream")
    if not upstream:
        raise missing_field(f"upstream{where}")
    listen = _string_field(body, "listen") or DEFAULT_LISTEN
    enabled = _bool_field(body, "enabled", True)
    _check_addresses(listen, upstream, allow_non_loopback=allow_non_loopback)
    return ProxySpec(name, listen, upstream, enabled)


class ProxyCollection:
    """Named proxies; every method is one API operation and is serialised with the others."""

    def __init__(self, seed: int, *, allow_non_loopback: bool = False) -> None:
        self.seed = seed
        self.allow_non_loopback = allow_non_loopback
        self._proxies: dict[str, Proxy] = {}
        self._lock = asyncio.Lock()

    def proxy(self, name: str) -> Proxy:
        """The live :class:`Proxy` called ``name`` (404 if there is none)."""
        try:
            return self._proxies[name]
        except KeyError:
            raise proxy_not_found() from None

    # -- proxies -------------------------------------------------------------------------------

    async def list_proxies(self) -> dict[str, dict[str, Any]]:
        """``GET /proxies``: an object keyed by proxy name."""
        return {name: proxy.to_json() for name, proxy in self._proxies.items()}

    async def create(self, body: Any) -> dict[str, Any]:
        """``POST /proxies`` (409 if the name is taken, 500 if the port cannot be bound)."""
        spec = parse_proxy_spec(body, allow_non_loopback=self.allow_non_loopback)
        async with self._lock:
            if spec.name in self._proxies:
                raise proxy_already_exists()
            proxy = Proxy(spec.name, spec.listen, spec.upstream, self.seed)
            if spec.enabled:
                await proxy.start()
            self._proxies[spec.name] = proxy
            return proxy.to_json()

    async def get(self, name: str) -> dict[str, Any]:
        """``GET /proxies/{name}``."""
        return self.proxy(name).to_json()

    async def update(self, name: str, body: Any) -> dict[str, Any]:
        """``PATCH``/``POST /proxies/{name}``: omitted fields keep their values."""
        async with self._lock:
            proxy = self.proxy(name)
            if not isinstance(body, dict):
                raise bad_request_body(f"expected a JSON object, got {type(body).__name__}")
            listen = _string_field(body, "listen") or proxy.listen
            upstream = _string_field(body, "upstream") or proxy.upstream
            enabled = _bool_field(body, "enabled", proxy.enabled)
            _check_addresses(listen, upstream, allow_non_loopback=self.allow_non_loopback)
            await proxy.update(listen, upstream, enabled)
            return proxy.to_json()

    async def delete(self, name: str) -> None:
        """``DELETE /proxies/{name}``: stops it and closes its connections."""
        async with self._lock:
            proxy = self.proxy(name)
            await proxy.stop()
            del self._proxies[name]

    async def populate(self, body: Any) -> list[dict[str, Any]]:
        """``POST /populate``: create or replace proxies; one whose listen and upstream already
        match is left alone (toxics, connections and all), so the call is idempotent."""
        if not isinstance(body, list):
            raise bad_request_body(f"expected a JSON array of proxies, got {type(body).__name__}")
        specs = [
            parse_proxy_spec(item, position=i, allow_non_loopback=self.allow_non_loopback)
            for i, item in enumerate(body, start=1)
        ]
        names = [spec.name for spec in specs]
        for name in names:
            if names.count(name) > 1:
                raise bad_request_body(f"duplicate proxy name {name!r}")
        done: list[Proxy] = []
        async with self._lock:
            for spec in specs:
                existing = self._proxies.get(spec.name)
                if (
                    existing is not None
                    and existing.upstream == spec.upstream
                    and same_listen(existing.listen, spec.listen)
                ):
                    done.append(existing)
                    continue
                if existing is not None:
                    await existing.stop()
                    del self._proxies[spec.name]
                proxy = Proxy(spec.name, spec.listen, spec.upstream, self.seed)
                if spec.enabled:
                    try:
                        await proxy.start()
                    except ApiError as exc:
                        raise PopulateError(exc, [p.to_json() for p in done]) from None
                self._proxies[spec.name] = proxy
                done.append(proxy)
        return [proxy.to_json() for proxy in done]

    async def reset(self) -> None:
        """``POST /reset``: enable every proxy and remove every toxic."""
        async with self._lock:
            for proxy in self._proxies.values():
                if not proxy.enabled:
                    await proxy.start()
                proxy.remove_all_toxics()

    async def close(self) -> None:
        """Stop every proxy (server shutdown)."""
        async with self._lock:
            for proxy in self._proxies.values():
                await proxy.stop()

    # -- toxics --------------------------------------------------------------------------------

    async def toxics(self, name: str) -> list[dict[str, Any]]:
        """``GET /proxies/{name}/toxics``: upstream chain, then downstream chain."""
        return self.proxy(name).toxics.to_json()

    async def add_toxic(self, name: str, body: Any) -> dict[str, Any]:
        """``POST /proxies/{name}/toxics``: applies to live connections too."""
        async with self._lock:
            return self.proxy(name).add_toxic(body).to_json()

    async def get_toxic(self, name: str, toxic: str) -> dict[str, Any]:
        """``GET /proxies/{name}/toxics/{toxic}``."""
        return self.proxy(name).toxics.get(toxic).to_json()

    async def update_toxic(self, name: str, toxic: str, body: Any) -> dict[str, Any]:
        """``PATCH``/``POST /proxies/{name}/toxics/{toxic}``: attributes and toxicity only."""
        async with self._lock:
            return self.proxy(name).update_toxic(toxic, body).to_json()

    async def remove_toxic(self, name: str, toxic: str) -> None:
        """``DELETE /proxies/{name}/toxics/{toxic}``."""
        async with self._lock:
            self.proxy(name).remove_toxic(toxic)
