"""cert.pem and <TunnelID>.json: formats, modes, and the messages for broken files."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from reference.connector.credentials import (
    CredentialsError,
    OriginCert,
    TunnelCredentials,
    default_credentials_path,
    default_origincert_path,
    outlast_home,
)
from reference.pki import create_ca

TUNNEL_ID = "c1744f8b-faa1-48a4-9e5c-02ac921467fa"
ACCOUNT = "5ab4e9dfbd435d24068829fda0077963"


def credentials() -> TunnelCredentials:
    return TunnelCredentials(ACCOUNT, os.urandom(32), TUNNEL_ID, "http://127.0.0.1:1")


def origin_cert() -> OriginCert:
    ca = create_ca("test CA")
    return OriginCert(
        "023e105f4ecef8ad9ca31a8372d0c353",
        ACCOUNT,
        "olt_secret-token",
        "http://127.0.0.1:1",
        ca.cert_pem,
        ca.key_pem,
    )


def test_home_and_default_paths_follow_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OUTLAST_HOME", str(tmp_path / "h"))
    assert outlast_home() == tmp_path / "h"
    assert default_origincert_path() == tmp_path / "h" / "cert.pem"
    assert default_credentials_path(TUNNEL_ID) == tmp_path / "h" / f"{TUNNEL_ID}.json"
    monkeypatch.delenv("OUTLAST_HOME")
    assert outlast_home() == Path.home() / ".outlast"


def test_credentials_round_trip_with_mode_0400_and_no_overwrite(tmp_path: Path) -> None:
    creds = credentials()
    path = tmp_path / "sub" / "c.json"
    creds.write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    raw = json.loads(path.read_text())
    assert raw == {
        "AccountTag": ACCOUNT,
        "TunnelSecret": base64.b64encode(creds.tunnel_secret).decode(),
        "TunnelID": TUNNEL_ID,
        "Endpoint": "http://127.0.0.1:1",
    }
    assert TunnelCredentials.load(path) == creds
    with pytest.raises(CredentialsError, match="already exists"):
        creds.write(path)
    assert "tunnel_secret=[redacted]" in repr(creds)
    assert base64.b64encode(creds.tunnel_secret).decode() not in repr(creds)


def test_credentials_without_tunnel_id_take_it_from_the_caller(tmp_path: Path) -> None:
    creds = credentials()
    raw = json.loads(creds.to_json())
    del raw["TunnelID"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(raw))
    assert TunnelCredentials.load(path, tunnel_id=TUNNEL_ID).tunnel_id == TUNNEL_ID
    with pytest.raises(CredentialsError, match="lacks TunnelID"):
        TunnelCredentials.load(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "not a JSON object"),
        (json.dumps({"AccountTag": ACCOUNT, "TunnelID": TUNNEL_ID}), "lacks TunnelSecret"),
        (
            json.dumps({"AccountTag": ACCOUNT, "TunnelID": TUNNEL_ID, "TunnelSecret": "%%"}),
            "not base64",
        ),
        (
            json.dumps(
                {
                    "AccountTag": ACCOUNT,
                    "TunnelID": TUNNEL_ID,
                    "TunnelSecret": base64.b64encode(b"short").decode(),
                }
            ),
            "5 bytes",
        ),
        (
            json.dumps(
                {
                    "AccountTag": ACCOUNT,
                    "TunnelID": "nope",
                    "TunnelSecret": base64.b64encode(b"x" * 32).decode(),
                }
            ),
            "not a UUID",
        ),
        (
            json.dumps(
                {
                    "AccountTag": "zz",
                    "TunnelID": TUNNEL_ID,
                    "TunnelSecret": base64.b64encode(b"x" * 32).decode(),
                }
            ),
            "AccountTag",
        ),
        (
            json.dumps(
                {
                    "AccountTag": 5,
                    "TunnelID": TUNNEL_ID,
                    "TunnelSecret": base64.b64encode(b"x" * 32).decode(),
                }
            ),
            "must be a string",
        ),
    ],
)
def test_corrupt_credentials_name_the_problem_and_the_fix(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(CredentialsError, match=message) as info:
        TunnelCredentials.load(path)
    assert str(path) in str(info.value)
    assert "outlast tunnel" in str(info.value)


def test_missing_or_unreadable_credentials(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match=r"does not exist.*--credentials-file"):
        TunnelCredentials.load(tmp_path / "missing.json")
    with pytest.raises(CredentialsError, match="is a directory"):
        TunnelCredentials.load(tmp_path)
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(CredentialsError, match="not valid JSON"):
        TunnelCredentials.load(tmp_path / "bin.json")


def test_origin_cert_round_trip_mode_and_force(tmp_path: Path) -> None:
    cert = origin_cert()
    path = tmp_path / "home" / "cert.pem"
    cert.write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert text.startswith("-----BEGIN OUTLAST TUNNEL TOKEN-----\n")
    assert "-----BEGIN CERTIFICATE-----" in text and "-----BEGIN PRIVATE KEY-----" in text
    assert OriginCert.load(path) == cert
    with pytest.raises(CredentialsError, match=r"existing origin certificate.*--force"):
        cert.write(path)
    replacement = OriginCert(
        cert.zone_id, cert.account_id, "olt_new", cert.endpoint, cert.cert_pem, cert.key_pem
    )
    replacement.write(path, force=True)
    assert OriginCert.load(path).api_token == "olt_new"
    assert "olt_new" not in repr(replacement)


def _token_block(payload: bytes) -> str:
    body = base64.b64encode(payload).decode()
    return f"-----BEGIN OUTLAST TUNNEL TOKEN-----\n{body}\n-----END OUTLAST TUNNEL TOKEN-----\n"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda c: "hello", "no OUTLAST TUNNEL TOKEN block"),
        (
            lambda c: (
                "-----BEGIN OUTLAST TUNNEL TOKEN-----\n%%%\n-----END OUTLAST TUNNEL TOKEN-----\n"
            ),
            "corrupt",
        ),
        (lambda c: _token_block(b'{"zoneID": "z", "accountID": "a"}'), "lacks apiToken"),
        (lambda c: _token_block(b"[1]"), "corrupt"),
        (lambda c: _token_block(json.dumps(c.token_json()).encode()) * 2, "several tokens"),
        (lambda c: _token_block(json.dumps(c.token_json()).encode()), "exactly one CERTIFICATE"),
        (
            lambda c: c.encode().decode() + "-----BEGIN FOO-----\nAA==\n-----END FOO-----\n",
            "unknown block 'FOO'",
        ),
    ],
)
def test_corrupt_origin_cert_names_the_problem_and_the_fix(
    tmp_path: Path, build: object, message: str
) -> None:
    cert = origin_cert()
    path = tmp_path / "cert.pem"
    path.write_text(build(cert))  # type: ignore[operator]
    with pytest.raises(CredentialsError, match=message) as info:
        OriginCert.load(path)
    assert "outlast tunnel login" in str(info.value) and "--force" in str(info.value)


def test_missing_origin_cert_says_to_log_in(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match=r"does not exist.*outlast tunnel login"):
        OriginCert.load(tmp_path / "cert.pem")
