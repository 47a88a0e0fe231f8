"""`outlast tunnel` against a real control plane process: lifecycle, files, rollover, limits."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from reference.config_topics import tunnel_target
from reference.connector.credentials import OriginCert, TunnelCredentials
from tests.integration.controlplane_fixtures import (
    Bootstrap,
    ControlPlaneProcess,
    admin,
    bootstrap,
    controlplane,
    make_bootstrap,
)

__all__ = ["bootstrap", "controlplane"]  # fixtures used by the tests below


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def audit_actions(b: Bootstrap, token: str | None = None) -> list[str]:
    response = await b.cp.api(
        "GET",
        f"/accounts/{b.account_id}/audit_logs",
        token or b.api_token,
        params={"direction": "asc"},
    )
    assert response.status_code == 200, response.text
    return [entry["action"]["type"] for entry in response.json()["result"]]


async def test_login_create_route_list_info_delete(bootstrap: Bootstrap) -> None:
    b = bootstrap
    cert_path = b.home / "cert.pem"

    login = (await b.login()).check()
    assert "successfully logged in" in login.out
    assert mode_of(cert_path) == 0o600
    text = cert_path.read_text()
    assert text.startswith("-----BEGIN OUTLAST TUNNEL TOKEN-----")
    token_b64 = text.split("-----")[2]
    token = json.loads(base64.b64decode("".join(token_b64.split())))
    assert token == {
        "zoneID": b.zone_id,
        "accountID": b.account_id,
        "apiToken": b.api_token,
        "endpoint": b.cp.url,
    }
    cert = OriginCert.load(cert_path)
    ca = x509.load_pem_x509_certificate((b.cp.data_dir / "ca.pem").read_bytes())
    leaf = x509.load_pem_x509_certificate(cert.cert_pem)
    assert leaf.issuer == ca.subject
    public_key = ca.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    hash_algorithm = leaf.signature_hash_algorithm
    assert hash_algorithm is not None
    public_key.verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(hash_algorithm))

    again = await b.login()
    assert again.code != 0
    assert "existing origin certificate" in again.err and "--force" in again.err
    assert cert_path.read_text() == text

    created = (await b.tunnel("create", "web", "-o", "json")).check().json
    tunnel_id = created["id"]
    creds_path = b.home / f"{tunnel_id}.json"
    assert created["credentials_file"] == str(creds_path)
    assert mode_of(creds_path) == 0o400
    raw = json.loads(creds_path.read_text())
    assert set(raw) == {"AccountTag", "TunnelSecret", "TunnelID", "Endpoint"}
    assert raw["AccountTag"] == b.account_id and raw["TunnelID"] == tunnel_id
    assert raw["Endpoint"] == b.cp.url
    assert len(base64.b64decode(raw["TunnelSecret"])) == 32
    secret_b64 = raw["TunnelSecret"]

    duplicate = await b.tunnel("create", "web")
    assert duplicate.code != 0
    assert "already exists" in duplicate.err

    routed = (await b.tunnel("route", "dns", "web", "app.example.com")).check()
    assert "Added CNAME app.example.com" in routed.out
    unchanged = (await b.tunnel("route", "dns", tunnel_id, "app.example.com")).check()
    assert "already configured to route to your tunnel" in unchanged.out
    (await b.tunnel("route", "dns", "web", "example.com")).check()  # the zone apex

    records = (await b.cp.api("GET", f"/zones/{b.zone_id}/dns_records", b.api_token)).json()
    by_name = {r["name"]: r for r in records["result"]}
    for name in ("app.example.com", "example.com"):
        assert by_name[name]["type"] == "CNAME"
        assert by_name[name]["content"] == tunnel_target(tunnel_id)
        assert by_name[name]["tunnel_id"] == tunnel_id

    listed = (await b.tunnel("list")).check().out
    assert "ID" in listed and "NAME" in listed and "CREATED" in listed and "CONNECTIONS" in listed
    row = next(line for line in listed.splitlines() if line.startswith(tunnel_id))
    assert row.split()[1] == "web"
    listed_json = (await b.tunnel("list", "-o", "json")).check().json
    assert [t["id"] for t in listed_json] == [tunnel_id]

    info = (await b.tunnel("info", "web")).check().out
    assert f"ID:       {tunnel_id}" in info and "NAME:     web" in info
    assert "no active connectors" in info
    info_json = (await b.tunnel("info", tunnel_id, "-o", "json")).check().json
    assert info_json["id"] == tunnel_id and info_json["conns"] == []

    actions = await audit_actions(b)
    assert actions.count("Create tunnel") == 1
    assert actions.count("CNAME add") == 2

    deleted = (await b.tunnel("delete", "web")).check()
    assert f"Deleted tunnel web with id {tunnel_id}" in deleted.out
    assert not creds_path.exists()
    assert "No tunnels were found" in (await b.tunnel("list")).check().out
    assert tunnel_id in (await b.tunnel("list", "-d")).check().out
    assert (await audit_actions(b))[-1] == "Delete tunnel"
    again_deleted = await b.tunnel("delete", tunnel_id)
    assert again_deleted.code != 0 and "already been deleted" in again_deleted.err

    # Secrets never reach the control plane's log.
    log = b.cp.log_text()
    assert "request" in log
    for secret in (b.api_token, secret_b64, b.cp.admin_token):
        assert secret not in log


async def test_roll_token_refuses_old_cert_with_relogin_message(bootstrap: Bootstrap) -> None:
    b = bootstrap
    (await b.login()).check()
    tunnel_id = (await b.tunnel("create", "keep", "-o", "json")).check().json["id"]

    rolled = (await admin(b.cp, "roll-token", "--email", b.email, home=b.home)).check().json
    new_token = rolled["api_token"]
    assert new_token != b.api_token

    refused = await b.tunnel("list")
    assert refused.code != 0
    assert "token rolled" in refused.err
    assert "outlast tunnel login" in refused.err

    old = await b.cp.api("GET", f"/accounts/{b.account_id}/cfd_tunnel", b.api_token)
    unknown = await b.cp.api("GET", f"/accounts/{b.account_id}/cfd_tunnel", "olt_not-a-token")
    assert old.status_code == unknown.status_code == 401
    old_code = old.json()["errors"][0]["code"]
    unknown_code = unknown.json()["errors"][0]["code"]
    assert old_code != unknown_code
    assert "outlast tunnel login" in old.json()["errors"][0]["message"]
    assert old.json()["result"] is None

    (await b.login("--force", token=new_token)).check()
    listed = (await b.tunnel("list", "-o", "json")).check().json
    assert [t["id"] for t in listed] == [tunnel_id]
    assert "Token roll" in await audit_actions(b, new_token)


async def test_remove_user_rolls_token_and_revokes_that_account(
    controlplane: ControlPlaneProcess, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    acme = await make_bootstrap(controlplane, home, "acme", "example.com", "carol@example.com")
    beta = await make_bootstrap(controlplane, home, "beta", "beta.test", "carol@example.com")
    token = beta.api_token  # the second bootstrap rolled carol's token
    assert (await controlplane.api("GET", "/zones", acme.api_token)).status_code == 401

    removed = (
        (
            await admin(
                controlplane,
                "remove-user",
                "--account",
                "acme",
                "--email",
                "carol@example.com",
                home=home,
            )
        )
        .check()
        .json
    )
    new_token = removed["api_token"]
    assert removed["accounts"] == [beta.account_id]

    old = await controlplane.api("GET", f"/accounts/{beta.account_id}/cfd_tunnel", token)
    assert old.status_code == 401 and old.json()["errors"][0]["code"] == 10003
    to_acme = await controlplane.api("GET", f"/accounts/{acme.account_id}/cfd_tunnel", new_token)
    assert to_acme.status_code == 403
    to_beta = await controlplane.api("GET", f"/accounts/{beta.account_id}/cfd_tunnel", new_token)
    assert to_beta.status_code == 200

    unknown = await admin(
        controlplane, "remove-user", "--account", "acme", "--email", "carol@example.com", home=home
    )
    assert unknown.code != 0 and "not a member" in unknown.err


async def test_cross_account_access_is_refused(
    controlplane: ControlPlaneProcess, tmp_path: Path
) -> None:
    a = await make_bootstrap(controlplane, tmp_path / "a", "acme", "example.com", "a@example.com")
    b = await make_bootstrap(controlplane, tmp_path / "b", "globex", "globex.test", "b@globex.test")
    secret = base64.b64encode(b"s" * 32).decode()
    created = await controlplane.api(
        "POST",
        f"/accounts/{a.account_id}/cfd_tunnel",
        a.api_token,
        json={"name": "private", "tunnel_secret": secret},
    )
    tunnel_id = created.json()["result"]["id"]
    routed = await controlplane.api(
        "PUT",
        f"/zones/{a.zone_id}/tunnels/{tunnel_id}/routes",
        a.api_token,
        json={"type": "dns", "user_hostname": "app.example.com"},
    )
    record_id = routed.json()["result"]["record"]["id"]

    attempts = [
        ("GET", f"/accounts/{a.account_id}/cfd_tunnel", None),
        ("GET", f"/accounts/{a.account_id}/cfd_tunnel/{tunnel_id}", None),
        ("DELETE", f"/accounts/{a.account_id}/cfd_tunnel/{tunnel_id}?cascade=true", None),
        ("GET", f"/accounts/{a.account_id}/cfd_tunnel/{tunnel_id}/token", None),
        ("GET", f"/accounts/{a.account_id}/audit_logs", None),
        ("GET", f"/accounts/{b.account_id}/cfd_tunnel/{tunnel_id}", None),
        ("GET", f"/accounts/{b.account_id}/cfd_tunnel/{tunnel_id}/token", None),
        ("GET", f"/zones/{a.zone_id}/dns_records", None),
        ("DELETE", f"/zones/{a.zone_id}/dns_records/{record_id}", None),
        ("DELETE", f"/zones/{b.zone_id}/dns_records/{record_id}", None),
        (
            "PUT",
            f"/zones/{b.zone_id}/tunnels/{tunnel_id}/routes",
            {"type": "dns", "user_hostname": "x.globex.test"},
        ),
        (
            "PUT",
            f"/zones/{a.zone_id}/tunnels/{tunnel_id}/routes",
            {"type": "dns", "user_hostname": "x.example.com"},
        ),
        ("POST", f"/zones/{a.zone_id}/origin_certificate", None),
    ]
    for method, path, body in attempts:
        response = await controlplane.api(method, path, b.api_token, json=body)
        assert response.status_code in (403, 404), (method, path, response.text)
        assert response.json()["success"] is False
        assert response.json()["result"] is None
        assert "private" not in response.text and "s" * 10 not in response.text

    zones = (await controlplane.api("GET", "/zones", b.api_token)).json()["result"]
    assert [z["name"] for z in zones] == ["globex.test"]
    still = await controlplane.api(
        "GET", f"/accounts/{a.account_id}/cfd_tunnel/{tunnel_id}", a.api_token
    )
    assert still.json()["result"]["deleted_at"] is None
    records = await controlplane.api("GET", f"/zones/{a.zone_id}/dns_records", a.api_token)
    assert [r["id"] for r in records.json()["result"]] == [record_id]

    # The CLI with B's cert.pem cannot find A's tunnel either.
    (await b.login()).check()
    info = await b.tunnel("info", tunnel_id)
    assert info.code != 0 and "no tunnel with id" in info.err


async def test_tunnel_limit_and_restart_keep_state(tmp_path: Path) -> None:
    cp = ControlPlaneProcess(tmp_path / "cp", tmp_path / "cp.log", tunnel_limit=2)
    try:
        await cp.start()
        b = await make_bootstrap(cp, tmp_path / "home")
        (await b.login()).check()
        first = (await b.tunnel("create", "one", "-o", "json")).check().json["id"]
        (await b.tunnel("create", "two")).check()
        refused = await b.tunnel("create", "three")
        assert refused.code != 0
        assert "limit of 2 tunnels" in refused.err
        assert not any(p.name.endswith(".json") and p.stat().st_size == 0 for p in b.home.iterdir())
        (await b.tunnel("route", "dns", "one", "one.example.com")).check()

        ca_before = (cp.data_dir / "ca.pem").read_bytes()
        admin_before = cp.admin_token
        await cp.restart()
        assert (cp.data_dir / "ca.pem").read_bytes() == ca_before
        assert cp.admin_token == admin_before

        listed = (await b.tunnel("list", "-o", "json")).check().json
        assert sorted(t["name"] for t in listed) == ["one", "two"]
        records = (await cp.api("GET", f"/zones/{b.zone_id}/dns_records", b.api_token)).json()
        assert [r["content"] for r in records["result"]] == [tunnel_target(first)]
        assert "Create tunnel" in await audit_actions(b)
        assert (await b.tunnel("create", "three")).code != 0  # limit survives too
        (await b.tunnel("delete", "two")).check()
        (await b.tunnel("create", "three")).check()
        creds = TunnelCredentials.load(b.home / f"{first}.json")
        assert creds.tunnel_id == first and creds.account_tag == b.account_id
    finally:
        await cp.stop()


async def test_bad_local_files_give_clear_messages(bootstrap: Bootstrap, tmp_path: Path) -> None:
    b = bootstrap
    missing = await b.tunnel("list")
    assert missing.code != 0
    assert "does not exist" in missing.err and "outlast tunnel login" in missing.err

    (await b.login()).check()
    cert_path = b.home / "cert.pem"
    good = cert_path.read_bytes()
    cert_path.write_text(
        "-----BEGIN OUTLAST TUNNEL TOKEN-----\n%%%%\n-----END OUTLAST TUNNEL TOKEN-----\n"
    )
    corrupt = await b.tunnel("list")
    assert corrupt.code != 0
    assert "corrupt" in corrupt.err and "login" in corrupt.err and "Traceback" not in corrupt.err
    cert_path.write_bytes(good)

    # Writing the credentials fails (the parent is a file): the tunnel is deleted again.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    failed = await b.tunnel("create", "orphan", "--credentials-file", str(blocker / "c.json"))
    assert failed.code != 0
    assert "deleted again" in failed.err
    assert "No tunnels were found" in (await b.tunnel("list")).check().out

    existing = tmp_path / "exists.json"
    existing.write_text("{}")
    refused = await b.tunnel("create", "other", "--credentials-file", str(existing))
    assert refused.code != 0 and "already exists" in refused.err
    assert "No tunnels were found" in (await b.tunnel("list")).check().out

    long_name = await b.tunnel("create", "x" * 65)
    assert long_name.code != 0 and "at most 64" in long_name.err
    outside = (await b.tunnel("create", "ok")).check()
    assert outside.code == 0
    routed = await b.tunnel("route", "dns", "ok", "app.other.org")
    assert routed.code != 0 and "not in zone example.com" in routed.err
    unknown = await b.tunnel("route", "dns", "nope", "app.example.com")
    assert unknown.code != 0 and "no tunnel named 'nope'" in unknown.err
