"""The control plane's SQLite store: versions, transactions, tokens, routing, reopening."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.config_topics import tunnel_target
from reference.controlplane.errors import ApiProblem, ErrorCode
from reference.controlplane.models import ADMIN, Actor
from reference.controlplane.store import BootstrapResult, Store
from reference.tunnel_auth import derive_verifier

USER = Actor("user", "u", "alice@example.com")
SECRET = b"k" * 32


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "cp.db")


@pytest.fixture
def boot(store: Store) -> BootstrapResult:
    return store.bootstrap("acme", "example.com", "alice@example.com")


def problem(code: ErrorCode) -> pytest.RaisesExc[ApiProblem]:
    return pytest.raises(ApiProblem, check=lambda exc: exc.code == code)


def test_database_file_is_private_and_wal(store: Store, tmp_path: Path) -> None:
    assert (tmp_path / "cp.db").stat().st_mode & 0o077 == 0
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_every_change_takes_the_next_version(store: Store, boot: BootstrapResult) -> None:
    zone = store.get_zone(boot.zone_id)
    assert zone is not None and store.config_version() == 1
    tunnel = store.create_tunnel(boot.account_id, "web", SECRET, 10, USER)
    assert tunnel.version == 2
    result, record = store.route_dns(zone, tunnel, "app.example.com", False, USER)
    assert (result, record.version) == ("new", 3)
    assert [o.kind for o in store.config_since(0)] == ["zone", "tunnel", "dns"]
    assert [o.kind for o in store.config_since(2)] == ["dns"]
    payload = store.config_since(1)[0].payload
    assert payload["verifier"] == derive_verifier(SECRET, tunnel.id)
    assert SECRET.decode() not in str(store.config_since(0))

    store.delete_tunnel(tunnel, USER, cascade=False)
    changed = store.config_since(3)
    assert [(o.kind, o.payload["deleted"], o.version) for o in changed] == [("tunnel", True, 4)]


def test_refusals_change_nothing(store: Store, boot: BootstrapResult) -> None:
    store.create_tunnel(boot.account_id, "one", SECRET, 2, USER)
    store.create_tunnel(boot.account_id, "two", SECRET, 2, USER)
    version = store.config_version()
    audit = store.list_audit(boot.account_id).total_count
    with problem(ErrorCode.TUNNEL_LIMIT_REACHED) as info:
        store.create_tunnel(boot.account_id, "three", SECRET, 2, USER)
    assert "limit of 2 tunnels" in info.value.message
    with problem(ErrorCode.TUNNEL_NAME_CONFLICT):
        store.create_tunnel(boot.account_id, "one", SECRET, 5, USER)
    assert store.config_version() == version
    assert store.list_audit(boot.account_id).total_count == audit
    assert store.list_tunnels(boot.account_id).total_count == 2


def test_route_dns_new_unchanged_conflict_and_overwrite(
    store: Store, boot: BootstrapResult
) -> None:
    zone = store.get_zone(boot.zone_id)
    assert zone is not None
    web = store.create_tunnel(boot.account_id, "web", SECRET, 10, USER)
    api = store.create_tunnel(boot.account_id, "api", SECRET, 10, USER)
    assert store.route_dns(zone, web, "example.com", False, USER)[0] == "new"
    assert store.route_dns(zone, web, "example.com", False, USER)[0] == "unchanged"
    version = store.config_version()
    with problem(ErrorCode.RECORD_EXISTS) as info:
        store.route_dns(zone, api, "example.com", False, USER)
    assert "--overwrite-dns" in info.value.message
    assert store.config_version() == version
    result, record = store.route_dns(zone, api, "example.com", True, USER)
    assert result == "updated" and record.content == tunnel_target(api.id)
    live = store.list_records(zone.id, name="example.com").items
    assert [r.content for r in live] == [tunnel_target(api.id)]
    tombstones = [o for o in store.config_since(version) if o.payload.get("deleted")]
    assert len(tombstones) == 1 and tombstones[0].kind == "dns"


def test_address_records_conflict_with_cnames(store: Store, boot: BootstrapResult) -> None:
    zone = store.get_zone(boot.zone_id)
    assert zone is not None
    store.create_record(zone, "A", "a.example.com", "192.0.2.1", False, 1, USER)
    store.create_record(zone, "A", "a.example.com", "192.0.2.2", False, 1, USER)
    store.create_record(zone, "TXT", "a.example.com", "hello", False, 1, USER)
    with problem(ErrorCode.RECORD_EXISTS):
        store.create_record(zone, "CNAME", "a.example.com", "x.example.org", False, 1, USER)
    with problem(ErrorCode.RECORD_EXISTS):
        store.create_record(zone, "A", "a.example.com", "192.0.2.1", False, 1, USER)


def test_tokens_roll_and_old_tokens_are_told_to_log_in(store: Store, boot: BootstrapResult) -> None:
    assert store.authenticate(boot.api_token).id == boot.user_id
    rolled = store.roll_token("alice@example.com", "testing")
    assert store.authenticate(rolled.api_token).id == boot.user_id
    with problem(ErrorCode.TOKEN_ROLLED) as info:
        store.authenticate(boot.api_token)
    assert "outlast tunnel login" in info.value.message and "testing" in info.value.message
    with problem(ErrorCode.UNKNOWN_TOKEN):
        store.authenticate("olt_never-issued")
    actions = [e.action for e in store.list_audit(boot.account_id).items]
    assert actions[0] == "Token roll"
    assert boot.api_token not in str(store._db.execute("SELECT * FROM users").fetchall())


def test_bootstrap_reuses_objects_and_refuses_foreign_zones(
    store: Store, boot: BootstrapResult
) -> None:
    again = store.bootstrap("acme", "example.com", "alice@example.com")
    assert (again.account_id, again.zone_id, again.user_id) == (
        boot.account_id,
        boot.zone_id,
        boot.user_id,
    )
    assert again.api_token != boot.api_token
    with problem(ErrorCode.ZONE_CONFLICT):
        store.bootstrap("globex", "example.com", "bob@globex.test")
    assert store.accounts({boot.account_id})[0].name == "acme"
    assert len(store.accounts(store.user_account_ids(boot.user_id))) == 1


def test_remove_member_rolls_the_token(store: Store, boot: BootstrapResult) -> None:
    other = store.bootstrap("beta", "beta.test", "alice@example.com")
    rolled = store.remove_member("acme", "alice@example.com")
    assert store.user_account_ids(boot.user_id) == {other.account_id}
    assert rolled.accounts == [other.account_id]
    with problem(ErrorCode.TOKEN_ROLLED):
        store.authenticate(other.api_token)
    with problem(ErrorCode.USER_NOT_FOUND):
        store.remove_member("acme", "alice@example.com")
    with problem(ErrorCode.ACCOUNT_NOT_FOUND):
        store.remove_member("nope", "alice@example.com")
    assert [e.action for e in store.list_audit(boot.account_id).items][:2] == [
        "Token roll",
        "Remove member",
    ]


def test_events_are_deduplicated(store: Store, boot: BootstrapResult) -> None:
    tunnel = store.create_tunnel(boot.account_id, "web", SECRET, 10, USER)
    edge = Actor("edge", "ams")
    assert store.record_event(
        boot.account_id, "Registered", edge, "tunnel", tunnel.id, {}, dedupe_key="registered:c1"
    )
    assert not store.record_event(
        boot.account_id, "Registered", edge, "tunnel", tunnel.id, {}, dedupe_key="registered:c1"
    )
    assert store.list_audit(boot.account_id, action="Registered").total_count == 1


def test_state_survives_reopening(tmp_path: Path) -> None:
    first = Store(tmp_path / "cp.db")
    boot = first.bootstrap("acme", "example.com", "alice@example.com")
    tunnel = first.create_tunnel(boot.account_id, "web", SECRET, 10, ADMIN)
    first.close()
    second = Store(tmp_path / "cp.db")
    assert second.get_tunnel(boot.account_id, tunnel.id) == tunnel
    assert second.authenticate(boot.api_token).id == boot.user_id
    assert second.config_version() == 2
    second.close()
