"""Legacy (classic) tunnels on the control plane: the registration endpoint an edge calls, the
DNS record it creates, its refusals, and the record's removal after the grace period."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from reference.config_topics import tunnel_target
from reference.controlplane.api import ControlPlaneApi
from reference.controlplane.app import create_app
from reference.controlplane.connections import ConnectionView
from reference.controlplane.legacy import LegacyDnsExpiry
from reference.controlplane.metrics import ControlPlaneMetrics
from reference.controlplane.models import ADMIN
from reference.controlplane.store import BootstrapResult, Store
from reference.legacy_tunnel import legacy_tunnel_id
from reference.pki import create_ca

ADMIN_TOKEN = "admin-token-for-tests"
CONNECTOR = "8f0c2a4e-0000-4000-8000-000000000001"
OTHER_CONNECTOR = "8f0c2a4e-0000-4000-8000-000000000002"


class Notifier:
    def __init__(self) -> None:
        self.count = 0

    def notify(self) -> None:
        self.count += 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    client: TestClient[Any, Any]
    store: Store
    view: ConnectionView
    boot: BootstrapResult
    notifier: Notifier
    expiry: LegacyDnsExpiry
    clock: Clock
    broker_up: list[bool]

    async def register(
        self,
        hostname: str,
        *,
        token: str | None = None,
        zone_id: str | None = None,
        connector: str = CONNECTOR,
        tunnel_id: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        zone = zone_id or self.boot.zone_id
        body = {
            "hostname": hostname,
            "tunnel_id": tunnel_id or legacy_tunnel_id(zone, hostname),
            "connector_id": connector,
            "conn_index": 0,
            "pop": "ams",
        }
        response = await self.client.post(
            f"/client/v4/zones/{zone}/legacy_tunnels",
            json=body,
            headers={"Authorization": f"Bearer {token or self.boot.api_token}"},
        )
        return response.status, await response.json()

    def connect(self, tunnel_id: str, connector: str = CONNECTOR) -> None:
        """An edge snapshot showing one connection of ``tunnel_id``."""
        self.view.apply_snapshot(
            "ams",
            {
                "online": True,
                "connections": [
                    {"tunnel_id": tunnel_id, "connection_id": "c1", "connector_id": connector}
                ],
            },
        )

    def disconnect(self) -> None:
        self.view.apply_snapshot("ams", {"online": True, "connections": []})

    def live_names(self) -> list[str]:
        return [r.name for r in self.store.list_records(self.boot.zone_id).items]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    store = Store(tmp_path / "cp.db")
    view = ConnectionView()
    notifier = Notifier()
    clock = Clock()
    broker_up = [True]
    expiry = LegacyDnsExpiry(
        store, view, notifier, grace=30.0, broker_connected=lambda: broker_up[0], clock=clock
    )
    api = ControlPlaneApi(
        store, view, create_ca("test CA"), ADMIN_TOKEN, notifier=notifier, legacy_expiry=expiry
    )
    boot = store.bootstrap("acme", "example.com", "alice@example.com")
    app = create_app(api, ControlPlaneMetrics())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Env(client, store, view, boot, notifier, expiry, clock, broker_up)
    store.close()


def error_of(body: dict[str, Any]) -> tuple[int, str]:
    assert body["success"] is False and body["result"] is None
    return body["errors"][0]["code"], body["errors"][0]["message"]


async def test_registration_creates_the_tunnel_and_its_cname_once(env: Env) -> None:
    status, body = await env.register("old.example.com")
    assert status == 200, body
    result = body["result"]
    tunnel_id = legacy_tunnel_id(env.boot.zone_id, "old.example.com")
    assert result["tunnel_id"] == tunnel_id
    assert result["created"] == {"tunnel": True, "record": True}
    assert result["record"]["content"] == tunnel_target(tunnel_id)
    assert result["record"]["tunnel_id"] == tunnel_id
    # The edge gets the payloads it routes by, on the same topics the broker carries.
    topics = {item["topic"]: item["payload"] for item in result["config"]}
    tunnel_payload = topics[f"outlast/v1/tunnels/{tunnel_id}"]
    assert tunnel_payload["kind"] == "legacy" and tunnel_payload["hostname"] == "old.example.com"
    assert len(tunnel_payload["verifier"]) == 64
    record_topic = f"outlast/v1/dns/{env.boot.zone_id}/{result['record']['id']}"
    assert topics[record_topic]["name"] == "old.example.com"
    assert env.notifier.count == 1

    # Every HA connection registers again: nothing new is created or published.
    status, again = await env.register("OLD.example.com.")
    assert status == 200
    assert again["result"]["created"] == {"tunnel": False, "record": False}
    assert again["result"]["record"]["id"] == result["record"]["id"]
    assert env.notifier.count == 1
    # The broker stream carries the legacy tunnel like any other tunnel.
    published = {
        o.payload.get("tunnel_id") for o in env.store.config_since(0) if o.kind == "tunnel"
    }
    assert tunnel_id in published


async def test_the_zone_apex_is_refused(env: Env) -> None:
    status, body = await env.register("example.com")
    assert status == 400
    code, message = error_of(body)
    assert code == 1018
    assert "legacy tunnels only create records for subdomains" in message
    assert env.live_names() == []


async def test_hostname_outside_the_zone_and_wildcards_are_refused(env: Env) -> None:
    status, body = await env.register("app.other.org")
    assert status == 400 and error_of(body)[0] == 1004
    status, body = await env.register("*.example.com")
    assert status == 400 and error_of(body)[0] == 1002


async def test_a_tunnel_id_that_does_not_match_the_hostname_is_refused(env: Env) -> None:
    other = legacy_tunnel_id(env.boot.zone_id, "else.example.com")
    status, body = await env.register("old.example.com", tunnel_id=other)
    assert status == 400
    assert "is not the legacy tunnel of old.example.com" in error_of(body)[1]


async def test_an_existing_record_is_never_replaced(env: Env) -> None:
    zone = env.store.get_zone(env.boot.zone_id)
    assert zone is not None
    env.store.create_record(zone, "A", "old.example.com", "192.0.2.1", False, 1, ADMIN)
    status, body = await env.register("old.example.com")
    assert status == 409
    code, message = error_of(body)
    assert code == 1003 and "never replaces DNS records" in message


async def test_another_connector_is_told_there_is_already_an_active_tunnel(env: Env) -> None:
    status, _ = await env.register("old.example.com")
    assert status == 200
    env.connect(legacy_tunnel_id(env.boot.zone_id, "old.example.com"), CONNECTOR)
    status, body = await env.register("old.example.com", connector=OTHER_CONNECTOR)
    assert status == 409
    code, message = error_of(body)
    assert code == 1019 and 'There is already an active tunnel for "old.example.com"' in message
    # The same connector's other HA connections are welcome.
    status, _ = await env.register("old.example.com", connector=CONNECTOR)
    assert status == 200


async def test_tokens_are_checked_at_every_registration(env: Env) -> None:
    status, body = await env.register("old.example.com", token="olt_never-issued")
    assert status == 401 and error_of(body)[0] == 10002
    old_token = env.boot.api_token
    env.store.roll_token("alice@example.com", "rolled by an administrator")
    status, body = await env.register("old.example.com", token=old_token)
    assert status == 401
    code, message = error_of(body)
    assert code == 10003 and "tunnel login" in message
    # Another account's user cannot register in this zone.
    other = env.store.bootstrap("globex", "globex.test", "bob@globex.test")
    status, body = await env.register("old.example.com", token=other.api_token)
    assert status == 403 and error_of(body)[0] == 10000


async def test_record_removed_only_after_the_grace_period_without_connections(env: Env) -> None:
    await env.register("old.example.com")
    tunnel_id = legacy_tunnel_id(env.boot.zone_id, "old.example.com")
    env.connect(tunnel_id)
    assert env.expiry.sweep() == []
    env.clock.now += 3600
    assert env.expiry.sweep() == [], "a connected legacy tunnel keeps its record"

    env.disconnect()
    assert env.expiry.sweep() == []
    assert env.expiry.disconnected_since(tunnel_id) == env.clock.now
    env.clock.now += 29.9
    assert env.expiry.sweep() == []
    assert env.live_names() == ["old.example.com"]
    env.clock.now += 0.2
    notified = env.notifier.count
    expired = env.expiry.sweep()
    assert [r.name for r in expired] == ["old.example.com"]
    assert env.live_names() == []
    assert env.notifier.count == notified + 1, "the tombstone must be published"
    tombstones = [
        o.payload for o in env.store.config_since(0) if o.kind == "dns" and o.payload["deleted"]
    ]
    assert [t["name"] for t in tombstones] == ["old.example.com"]
    audit = env.store.list_audit(env.boot.account_id, action="DNS record delete").items
    assert audit and audit[0].actor.type == "system" and audit[0].metadata["legacy"] is True

    # The next registration recreates it (a new record: the legacy model recreates everything).
    status, body = await env.register("old.example.com")
    assert status == 200 and body["result"]["created"] == {"tunnel": False, "record": True}


async def test_no_removal_while_the_connections_cannot_be_seen(env: Env) -> None:
    await env.register("old.example.com")
    tunnel_id = legacy_tunnel_id(env.boot.zone_id, "old.example.com")
    env.disconnect()
    env.expiry.sweep()
    env.clock.now += 20
    env.broker_up[0] = False  # snapshots stop: the view may be stale
    env.clock.now += 3600
    assert env.expiry.sweep() == []
    assert env.expiry.disconnected_since(tunnel_id) is None
    env.broker_up[0] = True
    assert env.expiry.sweep() == [], "the clock starts again once the view is fresh"
    env.clock.now += 29
    assert env.expiry.sweep() == []
    assert env.live_names() == ["old.example.com"]


async def test_a_registration_restarts_the_clock(env: Env) -> None:
    await env.register("old.example.com")
    env.disconnect()
    env.expiry.sweep()
    env.clock.now += 25
    status, _ = await env.register("old.example.com")  # the snapshot has not arrived yet
    assert status == 200
    env.clock.now += 10
    assert env.expiry.sweep() == []
    assert env.live_names() == ["old.example.com"]


def test_named_tunnel_payloads_are_unchanged(tmp_path: Path) -> None:
    """Named tunnels keep exactly the payload they had (no ``kind`` field)."""
    store = Store(tmp_path / "cp.db")
    boot = store.bootstrap("acme", "example.com", "alice@example.com")
    store.create_tunnel(boot.account_id, "web", b"s" * 32, 10, ADMIN)
    payloads = [o.payload for o in store.config_since(0) if o.kind == "tunnel"]
    assert len(payloads) == 1 and "kind" not in payloads[0]
    json.dumps(payloads)
    store.close()
