"""Legacy (classic) registrations at the edge and in the connector, without processes: how the
control plane's answers become refusals, and what the connector tells the user."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from reference.connector.credentials import CredentialsError, OriginCert
from reference.connector.legacy import legacy_permanent_message, load_legacy_identity
from reference.connector.supervisor import ConnectionSupervisor, EdgeAddress, permanent_message
from reference.edge.config_cache import ConfigCache
from reference.edge.legacy_registration import decision_for_answer
from reference.edge.registration import decide_registration
from reference.legacy_tunnel import legacy_tunnel_id
from reference.pki import create_ca, issue_certificate
from reference.tunnel_auth import compute_proof, new_nonce
from reference.wire import RefusalCause, RegistrationRequest, RegistrationResponse

ZONE = "023e105f4ecef8ad9ca31a8372d0c353"
ACCOUNT = "5ab4e9dfbd435d24068829fda0077963"
CONNECTOR = "8f0c2a4e-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    ("status", "code", "reason", "retry"),
    [
        (401, 10002, "invalid_token", False),
        (401, 10003, "invalid_token", False),
        (401, 10001, "invalid_token", False),
        (403, 10000, "forbidden", False),
        (400, 1018, "bad_request", False),
        (400, 1004, "bad_request", False),
        (409, 1003, "record_exists", False),
        (409, 1019, "already_active", True),
        (500, 10500, "control_plane_unavailable", True),
        (502, None, "control_plane_unavailable", True),
        (404, 7000, "bad_request", False),
    ],
)
def test_control_plane_answers_map_to_refusals(
    status: int, code: int | None, reason: str, retry: bool
) -> None:
    decision = decision_for_answer(status, code, "what the control plane said")
    assert not decision.accepted
    assert decision.reason == reason
    assert decision.should_retry is retry
    if reason == "control_plane_unavailable":
        assert decision.cause == RefusalCause.CONTROL_PLANE_UNAVAILABLE
    else:
        assert decision.cause is not None and "what the control plane said" in decision.cause


def test_rolled_token_refusal_carries_the_relogin_advice_to_the_user() -> None:
    decision = decision_for_answer(
        401, 10003, "this API token was rolled at X; run `outlast tunnel login --force` again"
    )
    assert decision.cause is not None and decision.cause.startswith(RefusalCause.INVALID_TOKEN)
    supervisor = ConnectionSupervisor(
        [EdgeAddress("127.0.0.1", 1)], 1, tunnel_id="t", credentials="/home/u/cert.pem"
    )
    verdict = supervisor.on_refused(
        0,
        EdgeAddress("127.0.0.1", 1),
        RegistrationResponse.refusal(decision.cause, should_retry=False),
        now=0.0,
    )
    assert verdict.permanent
    assert "refused the API token in /home/u/cert.pem" in verdict.message
    assert "tunnel login --force" in verdict.message


def test_apex_refusal_reaches_the_user_verbatim() -> None:
    decision = decision_for_answer(400, 1018, "legacy tunnels only create records for subdomains")
    assert decision.cause is not None
    message = permanent_message(decision.cause, "t", "cert.pem")
    assert message.endswith("legacy tunnels only create records for subdomains")


def test_named_causes_keep_their_messages() -> None:
    assert legacy_permanent_message(RefusalCause.INVALID_SECRET, "x.json") is None
    assert legacy_permanent_message(RefusalCause.ACCOUNT_MISMATCH, "x.json") is None
    assert "was deleted" in permanent_message(RefusalCause.TUNNEL_DELETED, "t", "x.json")


def test_a_named_registration_cannot_claim_a_legacy_tunnel() -> None:
    tunnel_id = legacy_tunnel_id(ZONE, "old.example.com")
    verifier = secrets.token_hex(32)
    cache = ConfigCache()
    assert cache.apply(
        f"outlast/v1/tunnels/{tunnel_id}",
        {
            "version": 3,
            "tunnel_id": tunnel_id,
            "account_tag": ACCOUNT,
            "name": "old.example.com",
            "verifier": verifier,
            "deleted": False,
            "kind": "legacy",
            "hostname": "old.example.com",
        },
    ).applied
    nonce = new_nonce()
    request = RegistrationRequest(
        tunnel_id=tunnel_id,
        account_tag=ACCOUNT,
        conn_index=0,
        connector_id=CONNECTOR,
        proof=compute_proof(verifier, nonce, tunnel_id, ACCOUNT, 0, CONNECTOR),
    )
    decision = decide_registration(cache, request, nonce)
    assert not decision.accepted and decision.reason == "legacy_tunnel"
    assert decision.should_retry is False


def test_legacy_ids_follow_zone_and_hostname() -> None:
    first = legacy_tunnel_id(ZONE, "old.example.com")
    assert first == legacy_tunnel_id(ZONE.upper(), "OLD.example.com.")
    assert first != legacy_tunnel_id(ZONE, "new.example.com")
    assert first != legacy_tunnel_id("0" * 32, "old.example.com")


def test_legacy_identity_comes_from_cert_pem(tmp_path: Path) -> None:
    ca = create_ca("test CA")
    leaf = issue_certificate(ca, "example.com", dns_names=("example.com",))
    path = tmp_path / "cert.pem"
    OriginCert(ZONE, ACCOUNT, "olt_secret-token", "http://cp", leaf.cert_pem, leaf.key_pem).write(
        path
    )
    identity = load_legacy_identity(path, "Old.Example.com")
    assert identity.hostname == "old.example.com"
    assert identity.tunnel_id == legacy_tunnel_id(ZONE, "old.example.com")
    assert identity.account_tag == ACCOUNT
    assert "olt_secret-token" not in repr(identity)
    registration = identity.registration()
    assert registration.zone_id == ZONE and registration.api_token == "olt_secret-token"
    assert "olt_secret-token" not in repr(registration)
    with pytest.raises(CredentialsError, match="is not a hostname"):
        load_legacy_identity(path, "localhost")
    with pytest.raises(CredentialsError, match="tunnel login"):
        load_legacy_identity(tmp_path / "missing.pem", "old.example.com")
