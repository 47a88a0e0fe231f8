"""Proof of a tunnel secret that the edge can check without ever holding the secret.

* The control plane derives a *verifier* from the secret once, at ``tunnel create``, and
  distributes only the verifier to the edges.
* At each registration the edge sends a fresh random nonce; the connector answers with
  ``proof = HMAC(verifier, nonce | tunnel | account | conn_index | connector)``.
  A recorded proof is useless on another connection (new nonce) and for another
  connection index or connector id.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

VERIFIER_LABEL = b"outlast-tunnel-verifier:v1:"
NONCE_BYTES = 32


def derive_verifier(tunnel_secret: bytes, tunnel_id: str) -> str:
    """Hex verifier of ``tunnel_secret`` for ``tunnel_id`` (what edges hold)."""
    return hmac.new(tunnel_secret, VERIFIER_LABEL + tunnel_id.encode(), hashlib.sha256).hexdigest()


def new_nonce() -> str:
    """A fresh registration challenge (hex)."""
    return secrets.token_hex(NONCE_BYTES)


def _proof_message(
    nonce: str, tunnel_id: str, account_tag: str, conn_index: int, connector_id: str
) -> bytes:
    return "|".join(["v1", nonce, tunnel_id, account_tag, str(conn_index), connector_id]).encode()


def compute_proof(
    verifier: str, nonce: str, tunnel_id: str, account_tag: str, conn_index: int, connector_id: str
) -> str:
    """The connector's answer to the edge's ``nonce`` (hex)."""
    message = _proof_message(nonce, tunnel_id, account_tag, conn_index, connector_id)
    return hmac.new(bytes.fromhex(verifier), message, hashlib.sha256).hexdigest()


def verify_proof(
    verifier: str,
    proof: str,
    nonce: str,
    tunnel_id: str,
    account_tag: str,
    conn_index: int,
    connector_id: str,
) -> bool:
    """True when ``proof`` answers ``nonce`` for exactly these registration fields."""
    expected = compute_proof(verifier, nonce, tunnel_id, account_tag, conn_index, connector_id)
    return hmac.compare_digest(expected, proof)
