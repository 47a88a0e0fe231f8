"""The HTTP API, route for route Toxiproxy's (same paths, JSON shapes and status codes)."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from harness.faultproxy.collection import ProxyCollection
from harness.faultproxy.errors import ApiError, bad_request_body

# Toxiproxy API version this server follows, with our own build tag (still valid semver).
API_VERSION = "2.12.0+outlast"

log = logging.getLogger("harness.faultproxy.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COLLECTION: web.AppKey[ProxyCollection] = web.AppKey("collection", ProxyCollection)


def _json(data: Any, status: int = 200, *, newline: bool = False) -> web.Response:
    """Compact JSON as Go's encoder writes it (errors and /version end with a newline)."""
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode() + (b"\n" if newline else b""),
        status=status,
        content_type="application/json",
    )


def _error(error: ApiError) -> web.Response:
    return _json(error.to_json(), error.status, newline=True)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        raise bad_request_body("EOF")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request_body(str(exc)) from None


_request_ids = itertools.count(1)


@web.middleware
async def _toxiproxy_conventions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id header, no browsers (as Toxiproxy: 403), errors as ``{"error","status"}``."""
    request_id = f"outlast-{next(_request_ids)}"
    if request.headers.get("User-Agent", "").startswith("Mozilla/"):
        response: web.StreamResponse = _error(ApiError(403, "User agent not allowed"))
    else:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = _error(exc)
        except web.HTTPNotFound:  # no such route: Go's mux answers in plain text
            response = web.Response(
                text="404 page not found\n", status=404, content_type="text/plain", charset="utf-8"
            )
        except web.HTTPMethodNotAllowed:  # likewise, with an empty body
            response = web.Response(status=405)
        except web.HTTPException:
            raise
        except Exception as exc:  # an unexpected failure is a 500, as in Toxiproxy
            log.exception("API handler failed")
            response = _error(ApiError(500, str(exc) or type(exc).__name__))
    response.headers["X-Toxiproxy-Request-Id"] = request_id
    return response


def _collection(request: web.Request) -> ProxyCollection:
    return request.app[COLLECTION]


async def proxy_index(request: web.Request) -> web.Response:
    return _json(await _collection(request).list_proxies())


async def proxy_create(request: web.Request) -> web.Response:
    return _json(await _collection(request).create(await _body(request)), 201)


async def populate(request: web.Request) -> web.Response:
    proxies = await _collection(request).populate(await _body(request))
    return _json({"proxies": proxies}, 201)


async def proxy_show(request: web.Request) -> web.Response:
    return _json(await _collection(request).get(request.match_info["proxy"]))


async def proxy_update(request: web.Request) -> web.Response:
    collection = _collection(request)
    name = request.match_info["proxy"]
    collection.proxy(name)  # 404 before looking at the body, as Toxiproxy
    return _json(await collection.update(name, await _body(request)))


async def proxy_delete(request: web.Request) -> web.Response:
    await _collection(request).delete(request.match_info["proxy"])
    return web.Response(status=204)


async def toxic_index(request: web.Request) -> web.Response:
    return _json(await _collection(request).toxics(request.match_info["proxy"]))


async def toxic_create(request: web.Request) -> web.Response:
    collection = _collection(request)
    name = request.match_info["proxy"]
    collection.proxy(name)
    return _json(await collection.add_toxic(name, await _body(request)))


async def toxic_show(request: web.Request) -> web.Response:
    match = request.match_info
    return _json(await _collection(request).get_toxic(match["proxy"], match["toxic"]))


async def toxic_update(request: web.Request) -> web.Response:
    collection = _collection(request)
    match = request.match_info
    collection.proxy(match["proxy"]).toxics.get(match["toxic"])
    body = await _body(request)
    return _json(await collection.update_toxic(match["proxy"], match["toxic"], body))


async def toxic_delete(request: web.Request) -> web.Response:
    match = request.match_info
    await _collection(request).remove_toxic(match["proxy"], match["toxic"])
    return web.Response(status=204)


async def reset(request: web.Request) -> web.Response:
    await _collection(request).reset()
    return web.Response(status=204)


async def version(request: web.Request) -> web.Response:
    response = _json({"version": API_VERSION}, newline=True)
    response.headers["Content-Type"] = "application/json;charset=utf-8"
    return response


def build_app(collection: ProxyCollection) -> web.Application:
    """The aiohttp application serving ``collection``."""
    app = web.Application(middlewares=[_toxiproxy_conventions], client_max_size=4 * 1024**2)
    app[COLLECTION] = collection
    app.router.add_post("/reset", reset)
    app.router.add_get("/proxies", proxy_index)
    app.router.add_post("/proxies", proxy_create)
    app.router.add_post("/populate", populate)
    app.router.add_get("/proxies/{proxy}", proxy_show)
    app.router.add_post("/proxies/{proxy}", proxy_update)
    app.router.add_patch("/proxies/{proxy}", proxy_update)
    app.router.add_delete("/proxies/{proxy}", proxy_delete)
    app.router.add_get("/proxies/{proxy}/toxics", toxic_index)
    app.router.add_post("/proxies/{proxy}/toxics", toxic_create)
    app.router.add_get("/proxies/{proxy}/toxics/{toxic}", toxic_show)
    app.router.add_post("/proxies/{proxy}/toxics/{toxic}", toxic_update)
    app.router.add_patch("/proxies/{proxy}/toxics/{toxic}", toxic_update)
    app.router.add_delete("/proxies/{proxy}/toxics/{toxic}", toxic_delete)
    app.router.add_get("/version", version)
    return app
