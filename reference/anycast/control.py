"""The admin and metrics API of the anycast front (aiohttp).

``GET /pops`` (route table), ``POST /pops/{pop}/withdraw`` and ``/announce`` (operator
withdrawal and its undo, both subject to the propagation delays), ``GET /metrics``.
Errors are ``{"error": {"code": ..., "message": ...}}`` with a 4xx status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from reference.anycast.metrics import CONTENT_TYPE
from reference.anycast.router import Router

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str) -> web.Response:
    """The API's JSON error body."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        return error_response(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.path} "
            f"(allowed: {', '.join(sorted(exc.allowed_methods))})",
        )
    except web.HTTPNotFound:
        return error_response(
            404, "not_found", f"no such endpoint {request.path} (have: /pops, /metrics)"
        )


def control_application(router: Router) -> web.Application:
    """The admin API over ``router``."""

    async def pops(request: web.Request) -> web.Response:
        return web.json_response(router.snapshot())

    def pop_action(action: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            name = request.match_info["pop"]
            if name not in router.table:
                have = ", ".join(router.table.pops)
                return error_response(404, "unknown_pop", f"no PoP {name!r} (have: {have})")
            if action == "withdraw":
                router.withdraw(name)
                effective_in = router.table.convergence
            else:
                router.announce(name)
                effective_in = router.table.announce_delay
            snapshot = router.snapshot()
            entry = next(p for p in snapshot["pops"] if p["name"] == name)
            return web.json_response(
                {"pop": entry, "action": action, "propagation_seconds": effective_in},
                status=202,
            )

        return handler

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=router.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application(middlewares=[_json_errors])
    app.router.add_get("/pops", pops)
    app.router.add_post("/pops/{pop}/withdraw", pop_action("withdraw"))
    app.router.add_post("/pops/{pop}/announce", pop_action("announce"))
    app.router.add_get("/metrics", metrics)
    return app
