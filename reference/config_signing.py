"""Signed configuration messages: the control plane signs, every edge verifies (Ed25519).

The broker and everyone on its network are not trusted: an edge applies (and caches) only a
message that the control plane's key signed for exactly that topic. A message is JSON::

    {"payload": "<the payload's JSON text>", "signature": "<base64 Ed25519 signature>"}

signed over ``outlast-config/v1 NUL topic NUL payload-text``. The version an edge compares is
the one inside the signed payload, so a forged or replayed-elsewhere message can neither route,
un-delete nor roll anything back.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from reference.files import atomic_write, write_new_secret_file

CONTEXT = b"outlast-config/v1\0"
PRIVATE_KEY_FILE = "config-signing.key"
PUBLIC_KEY_FILE = "config-signing.pub"


class ConfigSignatureError(ValueError):
    """A configuration message is unsigned, malformed, or not signed by the control plane."""


def _signed_bytes(topic: str, payload_text: str) -> bytes:
    return CONTEXT + topic.encode() + b"\0" + payload_text.encode()


class ConfigSigner:
    """Signs configuration payloads with the control plane's private key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def sign(self, topic: str, payload: dict[str, Any]) -> bytes:
        """The MQTT message body carrying ``payload`` for ``topic``."""
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        signature = self._key.sign(_signed_bytes(topic, text))
        return json.dumps(
            {"payload": text, "signature": base64.b64encode(signature).decode()},
            separators=(",", ":"),
        ).encode()


class ConfigVerifier:
    """Opens signed configuration messages with the control plane's public key."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key

    def open(self, topic: str, message: bytes | str) -> Any:
        """The payload (parsed JSON) of ``message`` if its signature verifies for ``topic``;
        :class:`ConfigSignatureError` otherwise."""
        try:
            envelope = json.loads(message)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ConfigSignatureError("not a signed configuration message (not JSON)") from None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("payload"), str):
            raise ConfigSignatureError("not a signed configuration message (no payload text)")
        try:
            signature = base64.b64decode(str(envelope.get("signature", "")), validate=True)
            self._key.verify(signature, _signed_bytes(topic, envelope["payload"]))
        except (binascii.Error, ValueError, InvalidSignature):
            raise ConfigSignatureError(
                "configuration signature does not verify with the control plane's key"
            ) from None
        try:
            return json.loads(envelope["payload"])
        except (ValueError, RecursionError):
            raise ConfigSignatureError("signed payload is not JSON") from None


def load_or_create_signing_key(private_path: Path, public_path: Path | None = None) -> ConfigSigner:
    """The signer whose key is in ``private_path`` (PEM, 0600), created on first use; its
    public key is (re)written to ``public_path`` (default: next to it, ``.pub``)."""
    private_path = Path(private_path)
    public_path = Path(public_path or private_path.with_suffix(".pub"))
    if not private_path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        private_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_new_secret_file(private_path, pem, mode=0o600)
    loaded = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{private_path} is not an Ed25519 private key")
    signer = ConfigSigner(loaded)
    public_pem = signer.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if not public_path.exists() or public_path.read_bytes() != public_pem:
        atomic_write(public_path, public_pem, 0o644)
    return signer


def load_verifier(public_path: Path) -> ConfigVerifier:
    """The verifier for the public key PEM in ``public_path`` (given to an edge when it is
    provisioned); ValueError with what to do if it is missing or not an Ed25519 key."""
    try:
        loaded = serialization.load_pem_public_key(Path(public_path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"cannot load the control plane's configuration key {public_path}: {exc}. Pass the "
            f"{PUBLIC_KEY_FILE} the control plane wrote (--config-key)"
        ) from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValueError(f"{public_path} is not an Ed25519 public key")
    return ConfigVerifier(loaded)
