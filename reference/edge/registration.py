"""Registration decisions: may this connection serve this tunnel?

A pure function of the edge's configuration cache, the connector's request and the nonce this
edge sent on this connection. There is no call to the control plane, ever: an edge that has the
tunnel in its cache can authenticate it during a control-plane and broker outage.

Outcomes (``reason`` is the metrics label):

========================  ==============  ================================================
reason                    should_retry    when
========================  ==============  ================================================
``ok``                    -               the secret hashes to the cached verifier and the
                                          proof answers this connection's nonce
``unknown_tunnel``        yes (hint 2 s)  tunnel not in the cache (may still be propagating)
``tunnel_deleted``        no              the cache holds the tunnel's tombstone
``account_mismatch``      no              the tunnel belongs to another account
``invalid_secret``        no              no secret, a secret that does not hash to the
                                          verifier (a stolen verifier is not enough), or a
                                          proof that does not answer this nonce
``bad_request``           no              malformed tunnel id
``legacy_unsupported``    no              legacy registration at an edge without ``--api``
``legacy_tunnel``         no              named registration for a legacy tunnel's id
========================  ==============  ================================================

Legacy registrations at an edge started with ``--api`` never reach this function: they are
decided by the control plane (``reference.edge.legacy_registration``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Protocol

from reference.edge.config_models import TunnelConfig, is_tunnel_id
from reference.tunnel_auth import secret_matches, verify_proof
from reference.wire.messages import RefusalCause, RegistrationRequest

#: Retry hint for a tunnel the edge does not know yet (its configuration may be propagating).
DEFAULT_UNKNOWN_TUNNEL_RETRY_AFTER = 2.0

LEGACY_UNSUPPORTED_CAUSE = (
    "legacy registration is not supported by this edge: run the tunnel as a named tunnel "
    "(outlast tunnel create, then outlast tunnel run)"
)
LEGACY_TUNNEL_CAUSE = (
    "unauthorized: this is a legacy tunnel; it registers with the origin certificate "
    "(outlast tunnel run --legacy --hostname HOST), never with a tunnel secret"
)


class TunnelLookup(Protocol):
    """What a registration decision needs from the cache."""

    def tunnel(self, tunnel_id: str) -> TunnelConfig | None: ...


@dataclass(frozen=True)
class RegistrationDecision:
    """Accept, or refuse with a cause, a retry hint and permanence."""

    accepted: bool
    reason: str
    cause: str | None = None
    should_retry: bool = True
    retry_after: float | None = None

    @classmethod
    def accept(cls) -> RegistrationDecision:
        return cls(accepted=True, reason="ok")

    @classmethod
    def refuse(
        cls, reason: str, cause: str, *, should_retry: bool, retry_after: float | None = None
    ) -> RegistrationDecision:
        return cls(False, reason, cause, should_retry, retry_after)


def decide_registration(
    cache: TunnelLookup,
    request: RegistrationRequest,
    nonce: str | None,
    *,
    unknown_tunnel_retry_after: float = DEFAULT_UNKNOWN_TUNNEL_RETRY_AFTER,
) -> RegistrationDecision:
    """Decide a named-tunnel registration from the cache alone. ``nonce`` is None for a
    transport without a challenge (cloudflared's): the secret must then match, no proof."""
    if request.legacy is not None:
        return RegistrationDecision.refuse(
            "legacy_unsupported", LEGACY_UNSUPPORTED_CAUSE, should_retry=False
        )
    if not is_tunnel_id(request.tunnel_id):
        return RegistrationDecision.refuse(
            "bad_request", RefusalCause.BAD_REQUEST, should_retry=False
        )
    tunnel = cache.tunnel(request.tunnel_id)
    if tunnel is None:
        return RegistrationDecision.refuse(
            "unknown_tunnel",
            RefusalCause.UNKNOWN_TUNNEL,
            should_retry=True,
            retry_after=unknown_tunnel_retry_after,
        )
    if tunnel.deleted:
        return RegistrationDecision.refuse(
            "tunnel_deleted", RefusalCause.TUNNEL_DELETED, should_retry=False
        )
    if tunnel.kind == "legacy":
        return RegistrationDecision.refuse("legacy_tunnel", LEGACY_TUNNEL_CAUSE, should_retry=False)
    if request.account_tag != tunnel.account_tag:
        return RegistrationDecision.refuse(
            "account_mismatch", RefusalCause.ACCOUNT_MISMATCH, should_retry=False
        )
    if not _proof_ok(tunnel, request, nonce):
        return RegistrationDecision.refuse(
            "invalid_secret", RefusalCause.INVALID_SECRET, should_retry=False
        )
    return RegistrationDecision.accept()


def _proof_ok(tunnel: TunnelConfig, request: RegistrationRequest, nonce: str | None) -> bool:
    try:
        secret = base64.b64decode(request.tunnel_secret, validate=True)
    except (binascii.Error, ValueError):
        return False
    if not secret_matches(secret, request.tunnel_id, tunnel.verifier):
        return False
    if nonce is None:
        return True
    try:
        return verify_proof(
            tunnel.verifier,
            request.proof,
            nonce,
            request.tunnel_id,
            request.account_tag,
            request.conn_index,
            request.connector_id,
        )
    except (ValueError, TypeError):  # non-hex verifier, non-ASCII proof
        return False
