"""Proof of a tunnel secret that the edge checks against a stored hash of it.

* The control plane derives a *verifier* (a keyed hash of the secret) once, at ``tunnel
  create``, and distributes only the verifier to the edges.
* At each registration the connector sends the secret itself, inside TLS, as cloudflared sends
  ``tunnelSecret``; the edge hashes it and compares with the verifier (:func:`secret_matches`).
  The verifier alone, read off the broker or an edge's cache, does not register anything.
* The edge also sends a fresh random nonce and the connector answers with
  ``proof = HMAC(verifier, nonce | tunnel | account | conn_index | connector)``, so a recorded
  registration is useless on another connection (new nonce), index or connector id.
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


def secret_matches(tunnel_secret: bytes, tunnel_id: str, verifier: str) -> bool:
    """True when ``tunnel_secret`` hashes to ``verifier`` (constant time)."""
    if not tunnel_secret:
        return False
    return hmac.compare_digest(derive_verifier(tunnel_secret, tunnel_id), verifier)


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
