"""A small real service to put behind the tunnel: HTTP endpoints and a WebSocket.

* ``GET /`` — a fixed page (the same bytes every time);
* ``GET /health`` — ``{"status": "ok"}``;
* ``GET /api/items`` / ``POST /api/items`` — a list kept in memory (POST answers 201);
* ``/ws`` — a WebSocket that answers ``pong`` to ``ping`` and echoes anything else.

``python examples/chat/app.py --port 8080`` (aiohttp; listens on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import json

from aiohttp import WSMsgType, web

PAGE = "<!doctype html><title>chat</title><h1>chat example behind a named tunnel</h1>\n"
ITEMS = web.AppKey("items", list)


async def index(_request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def list_items(request: web.Request) -> web.Response:
    return web.json_response({"items": request.app[ITEMS]})


async def add_item(request: web.Request) -> web.Response:
    try:
        item = json.loads(await request.text())
    except ValueError:
        return web.json_response({"error": "body is not JSON"}, status=400)
    request.app[ITEMS].append(item)
    return web.json_response({"added": item, "count": len(request.app[ITEMS])}, status=201)


async def socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=5.0)
    await ws.prepare(request)
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str("pong" if message.data == "ping" else message.data)
    return ws


def create_app() -> web.Application:
    app = web.Application()
    app[ITEMS] = []
    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_get("/api/items", list_items)
    app.router.add_post("/api/items", add_item)
    app.router.add_get("/ws", socket)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(create_app(), host="127.0.0.1", port=args.port, print=print)


if __name__ == "__main__":
    main()
