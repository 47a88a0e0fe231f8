"""Registration decisions of the edge: a pure function of cache + request + nonce."""

from __future__ import annotations

import base64
import secrets
import uuid

import pytest

from reference.edge.config_cache import ConfigCache
from reference.edge.registration import decide_registration
from reference.tunnel_auth import compute_proof, derive_verifier, new_nonce
from reference.wire import LegacyRegistration, RefusalCause, RegistrationRequest

ACCOUNT = "5ab4e9dfbd435d24068829fda0077963"
TUNNEL_ID = "c1744f8b-faa1-48a4-9e5c-02ac921467fa"
SECRET = bytes(range(32))
VERIFIER = derive_verifier(SECRET, TUNNEL_ID)
CONNECTOR = str(uuid.UUID(int=7))


def cache_with(*, deleted: bool = False, account: str = ACCOUNT) -> ConfigCache:
    cache = ConfigCache()
    result = cache.apply(
        f"outlast/v1/tunnels/{TUNNEL_ID}",
        {
            "version": 5,
            "tunnel_id": TUNNEL_ID,
            "account_tag": account,
            "name": "web",
            "verifier": VERIFIER,
            "deleted": False,
        },
    )
    assert result.applied
    if deleted:
        assert cache.apply(
            f"outlast/v1/tunnels/{TUNNEL_ID}",
            {"version": 6, "tunnel_id": TUNNEL_ID, "deleted": True},
        ).applied
    return cache


def request_for(
    nonce: str,
    *,
    secret: bytes = SECRET,
    account: str = ACCOUNT,
    conn_index: int = 0,
    tunnel_id: str = TUNNEL_ID,
    legacy: LegacyRegistration | None = None,
) -> RegistrationRequest:
    verifier = derive_verifier(secret, tunnel_id)
    proof = compute_proof(verifier, nonce, tunnel_id, account, conn_index, CONNECTOR)
    return RegistrationRequest(
        tunnel_id=tunnel_id,
        account_tag=account,
        conn_index=conn_index,
        connector_id=CONNECTOR,
        proof=proof,
        legacy=legacy,
        tunnel_secret=base64.b64encode(secret).decode(),
    )


def test_valid_proof_is_accepted() -> None:
    nonce = new_nonce()
    decision = decide_registration(cache_with(), request_for(nonce), nonce)
    assert decision.accepted
    assert decision.reason == "ok"


def test_unknown_tunnel_is_retryable_with_a_hint() -> None:
    nonce = new_nonce()
    decision = decide_registration(
        ConfigCache(), request_for(nonce), nonce, unknown_tunnel_retry_after=2.0
    )
    assert not decision.accepted
    assert decision.should_retry is True
    assert decision.retry_after == 2.0
    assert decision.reason == "unknown_tunnel"
    assert decision.cause == RefusalCause.UNKNOWN_TUNNEL


def test_deleted_tunnel_is_permanent_even_with_the_right_secret() -> None:
    nonce = new_nonce()
    decision = decide_registration(cache_with(deleted=True), request_for(nonce), nonce)
    assert not decision.accepted
    assert decision.should_retry is False
    assert decision.cause is not None and "deleted" in decision.cause
    assert decision.reason == "tunnel_deleted"


def test_wrong_secret_is_permanent_unauthorized() -> None:
    nonce = new_nonce()
    decision = decide_registration(cache_with(), request_for(nonce, secret=b"x" * 32), nonce)
    assert (decision.accepted, decision.should_retry, decision.reason) == (
        False,
        False,
        "invalid_secret",
    )
    assert decision.cause is not None and decision.cause.startswith("unauthorized")


def test_another_accounts_credentials_are_refused_permanently() -> None:
    other_account = secrets.token_hex(16)
    nonce = new_nonce()
    decision = decide_registration(cache_with(), request_for(nonce, account=other_account), nonce)
    assert (decision.accepted, decision.should_retry, decision.reason) == (
        False,
        False,
        "account_mismatch",
    )
    assert decision.cause is not None and decision.cause.startswith("unauthorized")


def test_replayed_proof_fails_on_a_new_nonce() -> None:
    recorded_nonce = new_nonce()
    recorded = request_for(recorded_nonce)
    assert decide_registration(cache_with(), recorded, recorded_nonce).accepted
    fresh_nonce = new_nonce()
    decision = decide_registration(cache_with(), recorded, fresh_nonce)
    assert not decision.accepted
    assert decision.reason == "invalid_secret"


def test_proof_is_bound_to_the_connection_index() -> None:
    nonce = new_nonce()
    good = request_for(nonce, conn_index=0)
    moved = RegistrationRequest(
        tunnel_id=good.tunnel_id,
        account_tag=good.account_tag,
        conn_index=1,
        connector_id=good.connector_id,
        proof=good.proof,
    )
    assert decide_registration(cache_with(), moved, nonce).reason == "invalid_secret"


@pytest.mark.parametrize("proof", ["", "zz", "é" * 64, "0" * 64])
def test_garbage_proofs_are_refused_not_crashing(proof: str) -> None:
    nonce = new_nonce()
    request = RegistrationRequest(
        tunnel_id=TUNNEL_ID,
        account_tag=ACCOUNT,
        conn_index=0,
        connector_id=CONNECTOR,
        proof=proof,
    )
    decision = decide_registration(cache_with(), request, nonce)
    assert (decision.accepted, decision.reason) == (False, "invalid_secret")


def test_malformed_tunnel_id_is_a_permanent_bad_request() -> None:
    nonce = new_nonce()
    decision = decide_registration(cache_with(), request_for(nonce, tunnel_id="not-a-uuid"), nonce)
    assert (decision.accepted, decision.should_retry, decision.reason) == (
        False,
        False,
        "bad_request",
    )


def test_legacy_registration_is_refused_permanently_with_advice() -> None:
    nonce = new_nonce()
    legacy = LegacyRegistration(api_token="t" * 40, hostname="app.example.com")
    decision = decide_registration(cache_with(), request_for(nonce, legacy=legacy), nonce)
    assert (decision.accepted, decision.should_retry) == (False, False)
    assert decision.cause is not None and "named tunnel" in decision.cause


def test_decision_reads_only_the_cache() -> None:
    """The function is given nothing but the cache lookup: a cache that raises on anything other
    than ``tunnel()`` proves no other source is consulted."""

    class OnlyTunnelLookup:
        def __init__(self, inner: ConfigCache) -> None:
            self.inner = inner
            self.calls: list[str] = []

        def tunnel(self, tunnel_id: str):  # type: ignore[no-untyped-def]
            self.calls.append(tunnel_id)
            return self.inner.tunnel(tunnel_id)

    lookup = OnlyTunnelLookup(cache_with())
    nonce = new_nonce()
    assert decide_registration(lookup, request_for(nonce), nonce).accepted
    assert lookup.calls == [TUNNEL_ID]


def test_a_verifier_read_off_the_broker_does_not_register() -> None:
    """Issue 21, item 1: the proof made with the cached verifier is right, but the sent secret
    (wrong, or none) does not hash to it: refused permanently, like a wrong secret."""
    nonce = new_nonce()
    proof = compute_proof(VERIFIER, nonce, TUNNEL_ID, ACCOUNT, 0, CONNECTOR)
    for sent in (base64.b64encode(b"x" * 32).decode(), "", "not base64!", VERIFIER):
        request = RegistrationRequest(
            tunnel_id=TUNNEL_ID,
            account_tag=ACCOUNT,
            conn_index=0,
            connector_id=CONNECTOR,
            proof=proof,
            tunnel_secret=sent,
        )
        decision = decide_registration(cache_with(), request, nonce)
        assert (decision.accepted, decision.reason, decision.should_retry) == (
            False,
            "invalid_secret",
            False,
        ), sent
        assert decision.cause == RefusalCause.INVALID_SECRET


def test_the_secret_is_never_in_a_requests_repr() -> None:
    request = request_for(new_nonce())
    assert base64.b64encode(SECRET).decode() not in repr(request)
    assert request.proof not in repr(request)
