"""The visitor probe's user-request mode against a real aiohttp service (no tunnel in between):
each answer judged by status, body and static digest, and the integrity checks honest about
what they could verify."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from harness.checks.registry import run_check
from harness.journal import History, Journal
from harness.probes.user_requests import NOT_AVAILABLE
from harness.probes.visitors import ANYCAST, VisitorProbe, VisitorTarget
from harness.scenario.origin import UserRequest

TARGET = VisitorTarget("app.example.com", "web", "web-id")


def app(*, change_after: int | None = None, tunnel_id: str | None = None) -> web.Application:
    """``/page`` (its body changes after ``change_after`` answers), ``/items`` (POST: 201),
    ``/ws`` (answers ``pong`` to ``ping``); every answer names ``tunnel_id`` like an edge."""
    served = {"page": 0}

    async def page(_request: web.Request) -> web.Response:
        served["page"] += 1
        changed = change_after is not None and served["page"] > change_after
        return web.Response(text="hello, corrupted" if changed else "hello, visitor")

    async def items(request: web.Request) -> web.Response:
        return web.json_response({"got": await request.text()}, status=201)

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str("pong" if message.data == "ping" else "?")
        return ws

    async def name_tunnel(_request: web.Request, response: web.StreamResponse) -> None:
        if tunnel_id:
            response.headers["X-Outlast-Tunnel-Id"] = tunnel_id

    application = web.Application()
    application.on_response_prepare.append(name_tunnel)
    application.router.add_get("/page", page)
    application.router.add_post("/items", items)
    application.router.add_get("/ws", socket)
    return application


async def burst(
    tmp_path: Path, application: web.Application, requests: list[UserRequest], count: int = 30
) -> History:
    server = TestServer(application, host="127.0.0.1")
    await server.start_server()
    path = tmp_path / "journal.jsonl"
    try:
        with Journal(path) as journal:
            journal.run(
                scenario="user",
                seed=1,
                time_scale=1.0,
                meta={"integrity": {"traffic": "user", "not_available": NOT_AVAILABLE}},
            )
            probe = VisitorProbe(
                journal,
                entries={ANYCAST: str(server.make_url("")).rstrip("/")},
                targets=[TARGET],
                rate=200,
                mix={"get": 1},
                seed=1,
                requests=requests,
            )
            stop = asyncio.Event()
            task = asyncio.create_task(probe.run(stop))
            await asyncio.sleep(count / 200)  # ``count`` requests at 200/s
            stop.set()
            await task
    finally:
        await server.close()
    return History.from_path(path)


PAGE = UserRequest(path="/page", expect_status=200, expect_body_contains="hello", static=True)
POST = UserRequest(method="POST", path="/items", body='{"a": 1}', expect_status=(200, 201))
WS = UserRequest(ws="/ws", send="ping", expect="pong")


async def test_answers_are_judged_and_static_bodies_verified(tmp_path: Path) -> None:
    history = await burst(tmp_path, app(tunnel_id="web-id"), [PAGE, POST, WS])
    ops = history.ops()
    assert {op.phase for op in ops} == {"ok"}, [op.error for op in ops if op.phase != "ok"]
    assert {op.value["request"] for op in ops} == {"GET /page", "POST /items", "WS /ws"}
    corruption = run_check(history, "no_corruption")
    assert corruption.passed is True, corruption.detail
    assert "static paths, bodies unchanged" in corruption.detail
    assert "not checked" in corruption.detail
    routing = run_check(history, "no_misroute")
    assert routing.passed is True and "as the edge names it" in routing.detail


async def test_a_changed_static_body_is_corruption(tmp_path: Path) -> None:
    history = await burst(tmp_path, app(change_after=5), [PAGE])
    failed = [op for op in history.ops() if op.phase == "fail"]
    assert failed and all("static body changed" in str(op.error) for op in failed)
    result = run_check(history, "no_corruption")
    assert result.passed is False and "response_digest_ok" in result.detail


async def test_wrong_status_body_or_tunnel_fail_the_request(tmp_path: Path) -> None:
    wrong = [
        UserRequest(path="/page", expect_status=204),
        UserRequest(path="/page", expect_body_contains="goodbye"),
        UserRequest(ws="/ws", send="hi", expect="pong"),
    ]
    history = await burst(tmp_path, app(tunnel_id="other-id"), wrong)
    errors = " ".join(str(op.error) for op in history.ops())
    assert {op.phase for op in history.ops()} == {"fail"}
    for reason in ("HTTP 200 (expected 204)", "lacks 'goodbye'", "lacks 'pong'", "served by"):
        assert reason in errors
    assert run_check(history, "no_misroute").passed is False


async def test_integrity_checks_say_when_they_could_not_check(tmp_path: Path) -> None:
    history = await burst(tmp_path, app(), [UserRequest(path="/page"), POST])
    assert {op.phase for op in history.ops()} == {"ok"}
    corruption = run_check(history, "no_corruption")
    assert corruption.passed is None and corruption.detail.startswith("not applicable")
    assert "the edges verified no body by the tunnel digest" in corruption.detail
    routing = run_check(history, "no_misroute")
    assert routing.passed is None and routing.detail.startswith("not applicable")
