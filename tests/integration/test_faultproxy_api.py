"""The HTTP API against Toxiproxy's contract: routes, JSON shapes, defaults, status codes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from harness.faultproxy import FaultProxyServer
from harness.faultproxy.testing import echo_server


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    async with (
        FaultProxyServer(("127.0.0.1", 0), seed=1) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10, trust_env=False) as http,
    ):
        yield http


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    async with echo_server() as port:
        yield f"127.0.0.1:{port}"


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"error": message, "status": status}


async def make_proxy(api: httpx.AsyncClient, upstream: str, name: str = "p") -> dict[str, Any]:
    response = await api.post("/proxies", json={"name": name, "upstream": upstream})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_create_proxy_shape_defaults_and_real_port(
    api: httpx.AsyncClient, upstream: str
) -> None:
    body = await make_proxy(api, upstream)
    assert list(body) == ["name", "listen", "upstream", "enabled", "Logger", "toxics"]
    assert body["Logger"] == {}  # as Toxiproxy 2.12, which serialises its logger field
    assert body["enabled"] is True and body["toxics"] == [] and body["upstream"] == upstream
    host, _, port = body["listen"].rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0  # port 0 became a real port
    _, writer = await asyncio.open_connection(host, int(port))
    writer.close()
    listing = (await api.get("/proxies")).json()
    assert listing == {"p": body}
    assert (await api.get("/proxies/p")).json() == body


async def test_create_disabled_proxy_does_not_listen(api: httpx.AsyncClient, upstream: str) -> None:
    response = await api.post(
        "/proxies", json={"name": "off", "upstream": upstream, "enabled": False}
    )
    assert response.status_code == 201
    assert response.json()["enabled"] is False


async def test_toxic_defaults_shape_and_order(api: httpx.AsyncClient, upstream: str) -> None:
    await make_proxy(api, upstream)
    response = await api.post("/proxies/p/toxics", json={"type": "latency"})
    assert response.status_code == 200  # Toxiproxy answers 200, not 201, for a new toxic
    assert response.json() == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 0, "jitter": 0},
    }
    up = await api.post(
        "/proxies/p/toxics",
        json={"type": "bandwidth", "stream": "UPSTREAM", "attributes": {"rate": 5}},
    )
    assert up.json()["name"] == "bandwidth_upstream" and up.json()["stream"] == "upstream"
    names = [t["name"] for t in (await api.get("/proxies/p/toxics")).json()]
    assert names == ["bandwidth_upstream", "latency_downstream"]  # upstream chain first
    proxy = (await api.get("/proxies/p")).json()
    assert [t["name"] for t in proxy["toxics"]] == names
    shown = (await api.get("/proxies/p/toxics/bandwidth_upstream")).json()
    assert shown["attributes"] == {"rate": 5}


@pytest.mark.parametrize(
    ("toxic_type", "attributes"),
    [
        ("latency", {"latency": 0, "jitter": 0}),
        ("bandwidth", {"rate": 0}),
        ("slow_close", {"delay": 0}),
        ("timeout", {"timeout": 0}),
        ("reset_peer", {"timeout": 0}),
        ("slicer", {"average_size": 1, "size_variation": 0, "delay": 0}),
        ("limit_data", {"bytes": 0}),
    ],
)
async def test_every_toxic_type_is_accepted(
    api: httpx.AsyncClient, upstream: str, toxic_type: str, attributes: dict[str, int]
) -> None:
    await make_proxy(api, upstream)
    response = await api.post(
        "/proxies/p/toxics",
        json={"type": toxic_type, "name": "t", "toxicity": 0.5, "attributes": attributes},
    )
    assert response.status_code == 200, response.text
    assert response.json()["attributes"] == attributes
    assert response.json()["toxicity"] == 0.5


async def test_update_toxic_keeps_omitted_fields(api: httpx.AsyncClient, upstream: str) -> None:
    await make_proxy(api, upstream)
    await api.post(
        "/proxies/p/toxics",
        json={"type": "latency", "toxicity": 0.5, "attributes": {"latency": 100, "jitter": 10}},
    )
    patched = await api.patch(
        "/proxies/p/toxics/latency_downstream", json={"attributes": {"latency": 200}}
    )
    assert patched.status_code == 200
    assert patched.json()["attributes"] == {"latency": 200, "jitter": 10}
    assert patched.json()["toxicity"] == 0.5
    posted = await api.post(
        "/proxies/p/toxics/latency_downstream",
        json={"toxicity": 1, "type": "bandwidth", "stream": "upstream"},  # type/stream ignored
    )
    assert posted.status_code == 200
    assert posted.json()["toxicity"] == 1.0
    assert posted.json()["type"] == "latency" and posted.json()["stream"] == "downstream"


async def test_update_proxy_patch_and_deprecated_post(
    api: httpx.AsyncClient, upstream: str
) -> None:
    created = await make_proxy(api, upstream)
    disabled = await api.patch("/proxies/p", json={"enabled": False})
    assert disabled.status_code == 200
    assert disabled.json() == {**created, "enabled": False}
    enabled = await api.post("/proxies/p", json={"enabled": True})
    assert enabled.status_code == 200
    assert enabled.json() == created  # same listen address again
    moved = await api.patch("/proxies/p", json={"listen": "127.0.0.1:0"})
    assert moved.json()["listen"] != created["listen"]
    assert moved.json()["enabled"] is True


async def test_delete_proxy_and_toxic_answer_204(api: httpx.AsyncClient, upstream: str) -> None:
    await make_proxy(api, upstream)
    await api.post("/proxies/p/toxics", json={"type": "latency"})
    removed = await api.delete("/proxies/p/toxics/latency_downstream")
    assert removed.status_code == 204 and removed.content == b""
    deleted = await api.delete("/proxies/p")
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await api.get("/proxies")).json() == {}


async def test_not_found_errors(api: httpx.AsyncClient, upstream: str) -> None:
    for method, path in [
        ("GET", "/proxies/nope"),
        ("PATCH", "/proxies/nope"),
        ("DELETE", "/proxies/nope"),
        ("GET", "/proxies/nope/toxics"),
        ("POST", "/proxies/nope/toxics"),
        ("GET", "/proxies/nope/toxics/t"),
        ("DELETE", "/proxies/nope/toxics/t"),
    ]:
        response = await api.request(method, path, json={"type": "latency"})
        assert_error(response, 404, "proxy not found")
    await make_proxy(api, upstream)
    for method in ("GET", "PATCH", "POST", "DELETE"):
        response = await api.request(method, "/proxies/p/toxics/nope", json={})
        assert_error(response, 404, "toxic not found")


async def test_conflict_errors(api: httpx.AsyncClient, upstream: str) -> None:
    await make_proxy(api, upstream)
    again = await api.post("/proxies", json={"name": "p", "upstream": upstream})
    assert_error(again, 409, "proxy already exists")
    await api.post("/proxies/p/toxics", json={"type": "latency"})
    dup = await api.post("/proxies/p/toxics", json={"type": "latency", "stream": "downstream"})
    assert_error(dup, 409, "toxic already exists")
    # names are unique across both streams
    await api.post("/proxies/p/toxics", json={"type": "timeout", "name": "x"})
    dup2 = await api.post(
        "/proxies/p/toxics", json={"type": "latency", "name": "x", "stream": "upstream"}
    )
    assert_error(dup2, 409, "toxic already exists")


async def test_bad_request_errors(api: httpx.AsyncClient, upstream: str) -> None:
    bad_json = await api.post("/proxies", content=b"{not json")
    assert bad_json.status_code == 400
    assert bad_json.json()["error"].startswith("bad request body: ")
    assert_error(
        await api.post("/proxies", json={"upstream": upstream}),
        400,
        "missing required field: name",
    )
    assert_error(
        await api.post("/proxies", json={"name": "q"}), 400, "missing required field: upstream"
    )
    await make_proxy(api, upstream)
    assert_error(
        await api.post("/proxies/p/toxics", json={"type": "latency", "stream": "sideways"}),
        400,
        "stream was invalid, can be either upstream or downstream",
    )
    assert_error(
        await api.post("/proxies/p/toxics", json={"type": "packet_storm"}),
        400,
        "invalid toxic type",
    )
    for body in (
        {"type": "latency", "attributes": {"latency": "500ms"}},
        {"type": "latency", "attributes": {"latency": 1.5}},
        {"type": "latency", "attributes": {"latency": -1}},
        {"type": "latency", "attributes": [1]},
        {"type": "latency", "toxicity": "most"},
        {"type": "slicer", "attributes": {"average_size": 0}},
        {"type": "slicer", "attributes": {"average_size": 10, "size_variation": 10}},
    ):
        response = await api.post("/proxies/p/toxics", json=body)
        assert response.status_code == 400, body
        assert response.json()["error"].startswith("bad request body: "), response.text
    bad_toxic_json = await api.post("/proxies/p/toxics", content=b"[")
    assert bad_toxic_json.status_code == 400
    assert (await api.get("/proxies/p/toxics")).json() == []
    bad_update = await api.patch("/proxies/p", content=b"nope")
    assert bad_update.status_code == 400
    bad_upstream = await api.post("/proxies", json={"name": "r", "upstream": "no-port"})
    assert bad_upstream.status_code == 400


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("127.0.0.1:99999", "listen tcp: address 99999: invalid port"),
        ("127.0.0.1:-1", "listen tcp: address -1: invalid port"),
        ("bad", "listen tcp: address bad: missing port in address"),
    ],
)
async def test_unusable_listen_is_a_500_with_gos_message(
    api: httpx.AsyncClient, upstream: str, listen: str, message: str
) -> None:
    body = {"name": "r", "listen": listen, "upstream": upstream}
    assert_error(await api.post("/proxies", json=body), 500, message)
    await make_proxy(api, upstream)
    assert_error(await api.patch("/proxies/p", json={"listen": listen}), 500, message)


async def test_wire_format_matches_toxiproxy(api: httpx.AsyncClient, upstream: str) -> None:
    """Compact JSON without a trailing newline; toxicity 1 (a Go float32), attributes first;
    Go's plain-text 404 for unknown paths and an empty 405."""
    await make_proxy(api, upstream)
    response = await api.post("/proxies/p/toxics", json={"type": "latency"})
    assert response.text == (
        '{"attributes":{"latency":0,"jitter":0},"name":"latency_downstream",'
        '"type":"latency","stream":"downstream","toxicity":1}'
    )
    half = await api.post(
        "/proxies/p/toxics", json={"type": "latency", "name": "h", "toxicity": 0.5}
    )
    assert half.json()["toxicity"] == 0.5
    missing = await api.get("/no/such/path")
    assert missing.status_code == 404
    assert missing.text == "404 page not found\n"
    assert missing.headers["content-type"] == "text/plain; charset=utf-8"
    wrong_method = await api.put("/proxies")
    assert wrong_method.status_code == 405 and wrong_method.content == b""


async def test_listen_port_in_use_is_a_500(api: httpx.AsyncClient, upstream: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        response = await api.post(
            "/proxies", json={"name": "p", "upstream": upstream, "listen": f"127.0.0.1:{port}"}
        )
    assert_error(response, 500, f"listen tcp 127.0.0.1:{port}: bind: address already in use")
    assert (await api.get("/proxies")).json() == {}


async def test_populate_is_idempotent(api: httpx.AsyncClient, upstream: str) -> None:
    config = [
        {"name": "a", "upstream": upstream, "listen": "127.0.0.1:0"},
        {"name": "b", "upstream": upstream},
    ]
    first = await api.post("/populate", json=config)
    assert first.status_code == 201
    proxies = first.json()["proxies"]
    assert [p["name"] for p in proxies] == ["a", "b"]
    await api.post("/proxies/a/toxics", json={"type": "latency"})
    second = await api.post("/populate", json=config)
    assert second.status_code == 201  # Toxiproxy answers 201 every time
    again = second.json()["proxies"]
    assert [p["listen"] for p in again] == [p["listen"] for p in proxies]  # not restarted
    assert [t["name"] for t in again[0]["toxics"]] == ["latency_downstream"]  # left alone
    # same listen given explicitly (as the server reported it) is also a no-op
    explicit = [{**c, "listen": p["listen"]} for c, p in zip(config, proxies, strict=True)]
    third = await api.post("/populate", json=explicit)
    assert third.json()["proxies"] == again


async def test_populate_replaces_a_changed_proxy(api: httpx.AsyncClient, upstream: str) -> None:
    await api.post("/populate", json=[{"name": "a", "upstream": upstream}])
    await api.post("/proxies/a/toxics", json={"type": "latency"})
    async with echo_server() as other_port:
        other = f"127.0.0.1:{other_port}"
        replaced = await api.post("/populate", json=[{"name": "a", "upstream": other}])
        assert replaced.status_code == 201
        body = replaced.json()["proxies"][0]
        assert body["upstream"] == other and body["toxics"] == []


async def test_populate_validates_everything_first(api: httpx.AsyncClient, upstream: str) -> None:
    response = await api.post(
        "/populate", json=[{"name": "ok", "upstream": upstream}, {"upstream": upstream}]
    )
    assert_error(response, 400, "missing required field: name at proxy 2")
    assert (await api.get("/proxies")).json() == {}
    not_a_list = await api.post("/populate", json={"name": "x"})
    assert not_a_list.status_code == 400


async def test_reset_enables_proxies_and_removes_toxics(
    api: httpx.AsyncClient, upstream: str
) -> None:
    await make_proxy(api, upstream)
    await api.post("/proxies/p/toxics", json={"type": "latency"})
    await api.patch("/proxies/p", json={"enabled": False})
    response = await api.post("/reset")
    assert response.status_code == 204 and response.content == b""
    proxy = (await api.get("/proxies/p")).json()
    assert proxy["enabled"] is True and proxy["toxics"] == []


async def test_version_and_conventions(api: httpx.AsyncClient) -> None:
    response = await api.get("/version")
    assert response.status_code == 200
    assert response.json()["version"].startswith("2.")
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["X-Toxiproxy-Request-Id"]
    browser = await api.get("/proxies", headers={"User-Agent": "Mozilla/5.0 (X11)"})
    assert_error(browser, 403, "User agent not allowed")
