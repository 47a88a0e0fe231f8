"""The v4 API in-process (aiohttp test server, real SQLite): envelope, auth, validation, metrics."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest

from reference.config_topics import tunnel_target
from reference.controlplane.api import ControlPlaneApi
from reference.controlplane.app import create_app
from reference.controlplane.broker_link import BrokerLink
from reference.controlplane.connections import ConnectionView
from reference.controlplane.metrics import ControlPlaneMetrics
from reference.controlplane.routes import ROUTES
from reference.controlplane.store import BootstrapResult, Store
from reference.pki import create_ca

ADMIN_TOKEN = "admin-token-for-tests"
SECRET = base64.b64encode(b"z" * 32).decode()


@dataclass
class Env:
    client: TestClient[Any, Any]
    store: Store
    view: ConnectionView
    metrics: ControlPlaneMetrics
    boot: BootstrapResult

    async def call(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token or self.boot.api_token}"}
        response = await self.client.request(method, f"/client/v4{path}", headers=headers, **kwargs)
        return response.status, await response.json()

    @property
    def tunnels(self) -> str:
        return f"/accounts/{self.boot.account_id}/cfd_tunnel"

    async def create(self, name: str) -> dict[str, Any]:
        status, body = await self.call(
            "POST", self.tunnels, json={"name": name, "tunnel_secret": SECRET}
        )
        assert status == 200, body  # as Cloudflare answers (cloudflared needs it)
        result: dict[str, Any] = body["result"]
        return result


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    store = Store(tmp_path / "cp.db")
    view = ConnectionView()
    metrics = ControlPlaneMetrics()
    api = ControlPlaneApi(store, view, create_ca("test CA"), ADMIN_TOKEN, tunnel_limit=3)
    boot = store.bootstrap("acme", "example.com", "alice@example.com")
    async with TestClient(TestServer(create_app(api, metrics), host="127.0.0.1")) as client:
        yield Env(client, store, view, metrics, boot)
    store.close()


def error_of(body: dict[str, Any]) -> tuple[int, str]:
    assert body["success"] is False and body["result"] is None and body["messages"] == []
    return body["errors"][0]["code"], body["errors"][0]["message"]


async def test_envelope_and_result_info(env: Env) -> None:
    await env.create("web")
    status, body = await env.call("GET", env.tunnels)
    assert status == 200
    assert set(body) == {"success", "errors", "messages", "result", "result_info"}
    assert body["success"] is True and body["errors"] == []
    assert body["result_info"] == {"page": 1, "per_page": 100, "count": 1, "total_count": 1}
    assert body["result"][0]["name"] == "web" and body["result"][0]["status"] == "inactive"
    assert "secret" not in json.dumps(body).lower().replace("tunnel_secret", "")


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 10001),
        ({"Authorization": "Basic abc"}, 10001),
        ({"Authorization": "Bearer olt_unknown"}, 10002),
    ],
)
async def test_authentication_errors(env: Env, headers: dict[str, str], code: int) -> None:
    response = await env.client.get(f"/client/v4{env.tunnels}", headers=headers)
    assert response.status == 401
    assert error_of(await response.json())[0] == code


async def test_admin_endpoints_need_the_admin_token(env: Env) -> None:
    status, body = await env.call(
        "POST", "/admin/users/roll_token", json={"email": "alice@example.com"}
    )
    assert status == 401 and error_of(body)[0] == 10004
    status, body = await env.call(
        "POST", "/admin/users/roll_token", ADMIN_TOKEN, json={"email": "alice@example.com"}
    )
    assert status == 200 and body["result"]["api_token"].startswith("olt_")
    status, body = await env.call("GET", env.tunnels)
    assert status == 401 and error_of(body)[0] == 10003


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        (b"{bad", 1000, "not valid JSON"),
        (b"", 1000, "empty"),
        (b"[1, 2]", 1001, "must be a JSON object"),
        (b'{"name": "x"}', 1001, "missing required field 'tunnel_secret'"),
        (
            json.dumps({"name": "x", "tunnel_secret": SECRET, "color": 1}).encode(),
            1001,
            "unknown field 'color'",
        ),
        (json.dumps({"name": 5, "tunnel_secret": SECRET}).encode(), 1001, "field 'name'"),
        (json.dumps({"name": "x" * 65, "tunnel_secret": SECRET}).encode(), 1002, "at most 64"),
        (json.dumps({"name": "bad name", "tunnel_secret": SECRET}).encode(), 1002, "letters"),
        (
            json.dumps(
                {"name": "c1744f8b-faa1-48a4-9e5c-02ac921467fa", "tunnel_secret": SECRET}
            ).encode(),
            1002,
            "UUID",
        ),
        (json.dumps({"name": "x", "tunnel_secret": "short"}).encode(), 1001, "tunnel_secret"),
    ],
)
async def test_bad_create_bodies_are_refused_and_nothing_is_created(
    env: Env, payload: bytes, code: int, fragment: str
) -> None:
    version = env.store.config_version()
    status, body = await env.call("POST", env.tunnels, data=payload)
    assert status == 400
    got_code, message = error_of(body)
    assert got_code == code and fragment in message
    assert env.store.config_version() == version
    assert env.store.list_tunnels(env.boot.account_id).total_count == 0


async def test_duplicate_name_limit_and_reuse_after_delete(env: Env) -> None:
    first = await env.create("one")
    status, body = await env.call(
        "POST", env.tunnels, json={"name": "one", "tunnel_secret": SECRET}
    )
    assert status == 409 and error_of(body)[0] == 1006
    await env.create("two")
    await env.create("three")
    status, body = await env.call(
        "POST", env.tunnels, json={"name": "four", "tunnel_secret": SECRET}
    )
    assert status == 403
    code, message = error_of(body)
    assert code == 1008 and "limit of 3 tunnels" in message
    status, body = await env.call("DELETE", f"{env.tunnels}/{first['id']}")
    assert status == 200 and body["result"]["deleted_at"] is not None
    status, body = await env.call("DELETE", f"{env.tunnels}/{first['id']}")
    assert status == 409 and error_of(body)[0] == 1011
    await env.create("one")
    status, body = await env.call("GET", env.tunnels, params={"is_deleted": "true"})
    assert [t["id"] for t in body["result"]] == [first["id"]]
    status, body = await env.call("GET", env.tunnels, params={"name": "one"})
    assert len(body["result"]) == 2


async def test_routes_in_zone_apex_conflicts_and_overwrite(env: Env) -> None:
    web = await env.create("web")
    zone = f"/zones/{env.boot.zone_id}"
    route = f"{zone}/tunnels/{web['id']}/routes"
    status, body = await env.call(
        "PUT", route, json={"type": "dns", "user_hostname": "App.Example.com."}
    )
    assert status == 200 and body["result"]["cname"] == "new"
    assert body["result"]["name"] == "app.example.com"
    status, body = await env.call(
        "PUT", route, json={"type": "dns", "user_hostname": "example.com"}
    )
    assert body["result"]["cname"] == "new"
    status, body = await env.call(
        "PUT", route, json={"type": "dns", "user_hostname": "app.other.org"}
    )
    assert status == 400 and error_of(body)[0] == 1004
    status, body = await env.call("PUT", route, json={"type": "dns", "user_hostname": "a..b"})
    assert status == 400 and error_of(body)[0] == 1002
    status, body = await env.call(
        "PUT",
        route,
        json={"type": "dns", "user_hostname": "x.example.com", "overwrite_existing": "yes"},
    )
    assert status == 400 and "overwrite_existing" in error_of(body)[1]

    status, body = await env.call(
        "POST",
        f"{zone}/dns_records",
        json={"type": "A", "name": "www.example.com", "content": "192.0.2.7"},
    )
    assert status == 201
    status, body = await env.call(
        "PUT", route, json={"type": "dns", "user_hostname": "www.example.com"}
    )
    assert status == 409 and error_of(body)[0] == 1003
    status, body = await env.call(
        "PUT",
        route,
        json={"type": "dns", "overwrite_existing": True, "user_hostname": "www.example.com"},
    )
    assert body["result"]["cname"] == "updated"
    status, body = await env.call("GET", f"{zone}/dns_records", params={"name": "www.example.com"})
    assert [(r["type"], r["content"]) for r in body["result"]] == [
        ("CNAME", tunnel_target(web["id"]))
    ]
    record_id = body["result"][0]["id"]
    status, body = await env.call("GET", f"{zone}/dns_records/{record_id}")
    assert body["result"]["tunnel_id"] == web["id"]
    status, body = await env.call("DELETE", f"{zone}/dns_records/{record_id}")
    assert status == 200
    status, body = await env.call("GET", f"{zone}/dns_records/{record_id}")
    assert status == 404 and error_of(body)[0] == 1009

    status, body = await env.call(
        "GET", f"/accounts/{env.boot.account_id}/audit_logs", params={"action": "CNAME add"}
    )
    assert [e["metadata"]["cname"] for e in body["result"]] == ["updated", "new", "new"]


async def test_connections_block_delete_without_cascade(env: Env) -> None:
    web = await env.create("web")
    env.view.apply_snapshot(
        "ams",
        {
            "pop": "ams",
            "online": True,
            "connections": [
                {
                    "tunnel_id": web["id"],
                    "connection_id": f"c{i}",
                    "conn_index": i,
                    "connector_id": "k1",
                    "opened_at": f"2026-01-01T00:00:0{i}Z",
                }
                for i in range(2)
            ],
        },
    )
    status, body = await env.call("GET", f"{env.tunnels}/{web['id']}/connections")
    assert [c["id"] for c in body["result"]] == ["k1"]
    assert [c["colo_name"] for c in body["result"][0]["conns"]] == ["ams", "ams"]
    status, body = await env.call("DELETE", f"{env.tunnels}/{web['id']}")
    assert status == 409
    code, message = error_of(body)
    assert code == 1007 and "2 active connections" in message
    status, body = await env.call(
        "DELETE", f"{env.tunnels}/{web['id']}", params={"cascade": "maybe"}
    )
    assert status == 400 and error_of(body)[0] == 1017
    status, body = await env.call(
        "DELETE", f"{env.tunnels}/{web['id']}", params={"cascade": "true"}
    )
    assert status == 200 and body["result"]["status"] == "deleted"
    assert env.view.count() == 0


async def test_token_endpoint_holds_the_run_token(env: Env) -> None:
    web = await env.create("web")
    _, body = await env.call("GET", f"{env.tunnels}/{web['id']}/token")
    token = json.loads(base64.b64decode(body["result"]))
    assert token == {"a": env.boot.account_id, "s": SECRET, "t": web["id"]}


async def test_unknown_routes_methods_queries_and_big_bodies(env: Env) -> None:
    status, body = await env.call("GET", "/nothing/here")
    assert status == 404 and error_of(body)[0] == 7000
    status, body = await env.call("PATCH", env.tunnels)
    assert status == 405 and error_of(body)[0] == 7001
    status, body = await env.call("GET", env.tunnels, params={"colour": "red"})
    assert status == 400 and "unknown query parameter 'colour'" in error_of(body)[1]
    status, body = await env.call("GET", env.tunnels, params={"per_page": "0"})
    assert status == 400 and error_of(body)[0] == 1017
    status, body = await env.call("POST", env.tunnels, data=b"x" * (2 * 1024 * 1024))
    assert status == 413 and error_of(body)[0] == 1013
    status, body = await env.call("GET", "/accounts/not-hex/cfd_tunnel")
    assert status == 400 and error_of(body)[0] == 1012
    status, body = await env.call("GET", f"/accounts/{'0' * 32}/cfd_tunnel")
    assert status == 403 and error_of(body)[0] == 10000


async def test_every_api_request_is_counted_by_route(env: Env) -> None:
    await env.create("web")
    await env.call("GET", env.tunnels, "olt_wrong")
    await env.call("GET", "/nothing")
    await env.client.get("/health")
    await env.client.get("/metrics")
    text = generate_latest(env.metrics.registry).decode()
    template = "/client/v4/accounts/{account_id}/cfd_tunnel"
    assert (
        f'outlast_controlplane_http_requests_total{{method="POST",route="{template}",'
        'status="200"} 1.0'
    ) in text
    assert (
        f'outlast_controlplane_http_requests_total{{method="GET",route="{template}",'
        'status="401"} 1.0'
    ) in text
    assert 'route="unmatched",status="404"} 1.0' in text
    assert "/health" not in text and 'route="/metrics"' not in text


async def test_openapi_document_describes_exactly_what_is_served(env: Env) -> None:
    response = await env.client.get("/client/v4/openapi.json")
    doc = await response.json()
    assert doc["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = {
        (r.method, r.resource.canonical)
        for r in env.client.app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith("/client/v4")
        and r.method != "HEAD"
    }
    assert documented == served == {(s.method, s.path) for s in ROUTES}
    schemas = doc["components"]["schemas"]
    create = doc["paths"]["/client/v4/accounts/{account_id}/cfd_tunnel"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert set(schemas[ref.rsplit("/", 1)[1]]["properties"]) == {"name", "tunnel_secret"}
    assert re.search(r"10003 \(401\): token_rolled", doc["info"]["description"])


async def test_broker_link_turns_events_and_snapshots_into_state(env: Env) -> None:
    link = BrokerLink("127.0.0.1", 1, env.store, env.view, env.metrics)
    web = await env.create("web")
    base = {
        "pop": "fra",
        "tunnel_id": web["id"],
        "account_tag": env.boot.account_id,
        "connection_id": "conn-1",
        "conn_index": 1,
        "at": "2026-11-22T10:00:00.000Z",
    }
    link.handle_event({"event": "registered", **base})
    link.handle_event({"event": "registered", **base})
    link.handle_event({"event": "registered", **base, "account_tag": "f" * 32})
    link.handle_event({"event": "exploded", **base})
    link.handle_event({"event": "unregistered", **base, "reason": "gone"})
    entries = env.store.list_audit(env.boot.account_id, descending=False).items
    events = [(e.action, e.when) for e in entries if e.actor.type == "edge"]
    assert events == [("Registered", base["at"]), ("Unregistered", base["at"])]
    link.handle_snapshot("fra", {"connections": [{"no": "tunnel id"}]})
    assert env.view.count() == 0
    link.handle_snapshot(
        "fra",
        {
            "online": True,
            "connections": [{"tunnel_id": web["id"], "connection_id": "c", "conn_index": 0}],
        },
    )
    _, body = await env.call("GET", f"{env.tunnels}/{web['id']}")
    assert [c["colo_name"] for c in body["result"]["connections"]] == ["fra"]
    link.handle_snapshot("fra", {"pop": "fra", "online": False, "connections": []})
    assert env.view.count() == 0


# ---------------------------------------------------------------- hostile inputs (issue 21, item 8)


async def test_json_nested_100000_deep_is_a_400_not_a_500(env: Env) -> None:
    for depth in (100_000, 33):
        status, body = await env.call("POST", env.tunnels, data=b"[" * depth + b"]" * depth)
        assert status == 400, (depth, body)
        assert error_of(body) == (
            1000,
            "request body nests deeper than 32 levels of lists and objects",
        )
    status, body = await env.call("POST", env.tunnels, data=b'{"name": [[[1]]]}')
    assert status == 400 and error_of(body)[0] == 1001  # shallow: the usual field error
    text = generate_latest(env.metrics.registry).decode()
    assert 'status="500"' not in text


async def test_unmatched_paths_are_logged_and_counted_with_their_real_status(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="outlast.controlplane")
    for path in ("/", "/admin", "/client/v5/x", "/.env"):
        response = await env.client.get(path)
        assert response.status == 404, path
    text = generate_latest(env.metrics.registry).decode()
    assert 'route="unmatched",status="404"} 4.0' in text
    assert 'status="500"' not in text
    statuses = [
        getattr(r, "fields", {}).get("status") for r in caplog.records if r.msg == "request"
    ]
    assert statuses == [404, 404, 404, 404]


async def test_audit_log_since_must_be_a_time(env: Env) -> None:
    await env.create("web")
    audit = f"/accounts/{env.boot.account_id}/audit_logs"
    for bad in ("notadate", "2026-13-01", "yesterday", "' OR 1=1 --"):
        status, body = await env.call("GET", audit, params={"since": bad})
        assert status == 400, (bad, body)
        code, message = error_of(body)
        assert code == 1017 and "is not an ISO 8601 time" in message
    status, body = await env.call("GET", audit, params={"since": "2000-01-01"})
    assert status == 200 and len(body["result"]) >= 1
    status, body = await env.call("GET", audit, params={"since": "2999-01-01T00:00:00+02:00"})
    assert status == 200 and body["result"] == []


async def test_a_cname_to_another_accounts_tunnel_is_refused(env: Env) -> None:
    """Issue 21, item 3: account A cannot point its zone at B's tunnel (nor at a made-up one),
    by a DNS record or by a route; the answer is the same either way."""
    other = env.store.bootstrap("globex", "globex.test", "bob@globex.test")
    status, body = await env.call(
        "POST",
        f"/accounts/{other.account_id}/cfd_tunnel",
        other.api_token,
        json={"name": "b-web", "tunnel_secret": SECRET},
    )
    assert status == 200
    b_tunnel = body["result"]["id"]
    zone = f"/zones/{env.boot.zone_id}"
    for target in (b_tunnel, "00000000-0000-4000-8000-000000000000"):
        status, body = await env.call(
            "POST",
            f"{zone}/dns_records",
            json={"type": "CNAME", "name": "hijack.example.com", "content": tunnel_target(target)},
        )
        assert status == 403, body
        code, message = error_of(body)
        assert code == 1020
        assert message == (
            f"CNAME target {tunnel_target(target)} is not a tunnel of the account that owns zone "
            "example.com; a hostname can only be routed to your own account's tunnels (see "
            "`outlast tunnel list`, then `outlast tunnel route dns`)"
        )
    status, body = await env.call(
        "PUT",
        f"{zone}/tunnels/{b_tunnel}/routes",
        json={"type": "dns", "user_hostname": "h.example.com"},
    )
    assert status == 404 and error_of(body)[0] == 1005
    status, body = await env.call("GET", f"{zone}/dns_records")
    assert body["result"] == []
    own = await env.create("a-web")
    status, body = await env.call(
        "POST",
        f"{zone}/dns_records",
        json={"type": "CNAME", "name": "ok.example.com", "content": tunnel_target(own["id"])},
    )
    assert status == 201 and body["result"]["tunnel_id"] == own["id"]
