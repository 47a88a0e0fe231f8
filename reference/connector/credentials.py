"""The two credential files a user holds: ``cert.pem`` (login) and ``<TunnelID>.json`` (create).

* ``cert.pem`` (mode 0600) is an API credential: a PEM block ``OUTLAST TUNNEL TOKEN`` holding base64
  JSON ``{zoneID, accountID, apiToken, endpoint}``, then the origin certificate and its key issued
  by the control plane's CA. It is needed to manage tunnels, never to run one.
* ``<TunnelID>.json`` (mode 0400) is ``{AccountTag, TunnelSecret, TunnelID, Endpoint}`` with the
  secret as base64 of 32 random bytes. It is enough to run that one tunnel and nothing else.

Every problem with these files raises :class:`CredentialsError` whose message names the file, says
what is wrong and what to do about it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference.files import atomic_write, write_new_secret_file

HOME_ENV = "OUTLAST_HOME"
ORIGINCERT_NAME = "cert.pem"
TOKEN_BLOCK = "OUTLAST TUNNEL TOKEN"
SECRET_BYTES = 32
CREDENTIALS_MODE = 0o400
ORIGINCERT_MODE = 0o600

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_LOGIN_HINT = "run `outlast tunnel login --api URL --token TOKEN --zone ZONE`"


class CredentialsError(Exception):
    """A credential file is missing, unreadable or malformed (the message says how to fix it)."""


def outlast_home() -> Path:
    """Directory for cert.pem and tunnel credentials: ``$OUTLAST_HOME``, else ``~/.outlast``."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".outlast"


def default_origincert_path() -> Path:
    """Where ``tunnel login`` writes, and other commands look for, ``cert.pem``."""
    return outlast_home() / ORIGINCERT_NAME


def default_credentials_path(tunnel_id: str) -> Path:
    """Where ``tunnel create`` writes, and ``tunnel run`` looks for, ``<TunnelID>.json``."""
    return outlast_home() / f"{tunnel_id}.json"


def _read_file(path: Path, what: str, fix: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CredentialsError(f"{what} {path} does not exist; {fix}") from None
    except IsADirectoryError:
        raise CredentialsError(f"{what} {path} is a directory, not a file; {fix}") from None
    except PermissionError:
        raise CredentialsError(
            f"{what} {path} is not readable by this user (permission denied); fix its owner or "
            f"mode (it should be readable only by you), or {fix}"
        ) from None
    except OSError as exc:
        raise CredentialsError(f"{what} {path} cannot be read ({exc.strerror}); {fix}") from None


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


@dataclass(frozen=True)
class TunnelCredentials:
    """Contents of ``<TunnelID>.json``: everything needed to run one tunnel."""

    account_tag: str
    tunnel_secret: bytes
    tunnel_id: str
    endpoint: str

    def __repr__(self) -> str:  # never show the secret
        return (
            f"TunnelCredentials(account_tag={self.account_tag!r}, tunnel_id={self.tunnel_id!r}, "
            f"endpoint={self.endpoint!r}, tunnel_secret=[redacted])"
        )

    @classmethod
    def from_json(
        cls, data: bytes | str, *, source: str = "credentials", tunnel_id: str | None = None
    ) -> TunnelCredentials:
        """Parse credentials JSON; ``tunnel_id`` fills in files that lack ``TunnelID``."""
        fix = (
            "the file is corrupt: restore it from a backup, or delete the tunnel and create it "
            "again (`outlast tunnel delete NAME` then `outlast tunnel create NAME`)"
        )
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CredentialsError(
                f"credentials file {source} is not valid JSON ({exc}); {fix}"
            ) from None
        if not isinstance(raw, dict):
            raise CredentialsError(f"credentials file {source} is not a JSON object; {fix}")
        if "TunnelID" not in raw and tunnel_id is not None:
            raw["TunnelID"] = tunnel_id
        missing = [k for k in ("AccountTag", "TunnelSecret", "TunnelID") if not raw.get(k)]
        if missing:
            raise CredentialsError(f"credentials file {source} lacks {', '.join(missing)}; {fix}")
        for key in ("AccountTag", "TunnelSecret", "TunnelID", "Endpoint"):
            if key in raw and not isinstance(raw[key], str):
                raise CredentialsError(f"credentials file {source}: {key} must be a string; {fix}")
        try:
            secret = base64.b64decode(raw["TunnelSecret"], validate=True)
        except (binascii.Error, ValueError):
            raise CredentialsError(
                f"credentials file {source}: TunnelSecret is not base64; {fix}"
            ) from None
        if len(secret) < SECRET_BYTES:
            raise CredentialsError(
                f"credentials file {source}: TunnelSecret decodes to {len(secret)} bytes, "
                f"at least {SECRET_BYTES} are required; {fix}"
            )
        if not _is_uuid(raw["TunnelID"]):
            raise CredentialsError(f"credentials file {source}: TunnelID is not a UUID; {fix}")
        if not _HEX32.match(raw["AccountTag"]):
            raise CredentialsError(
                f"credentials file {source}: AccountTag is not a 32-hex account id; {fix}"
            )
        return cls(
            account_tag=raw["AccountTag"],
            tunnel_secret=secret,
            tunnel_id=raw["TunnelID"].lower(),
            endpoint=str(raw.get("Endpoint") or ""),
        )

    @classmethod
    def load(cls, path: Path, *, tunnel_id: str | None = None) -> TunnelCredentials:
        """Read and validate ``path`` (raises CredentialsError with the fix)."""
        data = _read_file(
            path,
            "credentials file",
            "pass the right file with --credentials-file, or create the tunnel with "
            "`outlast tunnel create NAME` (which writes <TunnelID>.json)",
        )
        return cls.from_json(data, source=str(path), tunnel_id=tunnel_id)

    def to_json(self) -> bytes:
        """The file contents (cloudflared's field names)."""
        return json.dumps(
            {
                "AccountTag": self.account_tag,
                "TunnelSecret": base64.b64encode(self.tunnel_secret).decode(),
                "TunnelID": self.tunnel_id,
                "Endpoint": self.endpoint,
            }
        ).encode()

    def write(self, path: Path) -> None:
        """Create ``path`` with mode 0400; refuse (CredentialsError) if it already exists."""
        try:
            write_new_secret_file(Path(path), self.to_json(), mode=CREDENTIALS_MODE)
        except FileExistsError:
            raise CredentialsError(
                f"credentials file {path} already exists; refusing to overwrite it "
                "(choose another path with --credentials-file, or remove the old file)"
            ) from None
        except OSError as exc:
            raise CredentialsError(
                f"cannot write credentials file {path} ({exc.strerror}); check that its "
                "directory is writable, or choose another path with --credentials-file"
            ) from None


@dataclass(frozen=True)
class OriginCert:
    """Contents of ``cert.pem``: the user's API token for one zone plus the origin certificate."""

    zone_id: str
    account_id: str
    api_token: str
    endpoint: str
    cert_pem: bytes
    key_pem: bytes

    def __repr__(self) -> str:  # never show the token or the key
        return (
            f"OriginCert(zone_id={self.zone_id!r}, account_id={self.account_id!r}, "
            f"endpoint={self.endpoint!r}, api_token=[redacted], key_pem=[redacted])"
        )

    def token_json(self) -> dict[str, str]:
        """The JSON object inside the token block."""
        return {
            "zoneID": self.zone_id,
            "accountID": self.account_id,
            "apiToken": self.api_token,
            "endpoint": self.endpoint,
        }

    def encode(self) -> bytes:
        """The cert.pem contents: token block, then certificate, then private key."""
        token = base64.b64encode(json.dumps(self.token_json()).encode()).decode()
        lines = [token[i : i + 64] for i in range(0, len(token), 64)]
        body = "\n".join(lines)
        block = f"-----BEGIN {TOKEN_BLOCK}-----\n{body}\n-----END {TOKEN_BLOCK}-----\n".encode()
        return block + self.cert_pem.rstrip(b"\n") + b"\n" + self.key_pem.rstrip(b"\n") + b"\n"

    @classmethod
    def decode(cls, data: bytes, *, source: str = "cert.pem") -> OriginCert:
        """Parse cert.pem contents (raises CredentialsError with the fix)."""
        fix = f"{_LOGIN_HINT} --force to replace it"
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise CredentialsError(
                f"origin certificate {source} is not a PEM file; {fix}"
            ) from None
        tokens: list[str] = []
        certs: list[str] = []
        keys: list[str] = []
        for match in _PEM_BLOCK.finditer(text):
            kind, full = match.group(1), match.group(0) + "\n"
            if kind == TOKEN_BLOCK:
                tokens.append(match.group(2))
            elif kind == "CERTIFICATE":
                certs.append(full)
            elif kind in ("PRIVATE KEY", "EC PRIVATE KEY"):
                keys.append(full)
            else:
                raise CredentialsError(
                    f"origin certificate {source} has an unknown block {kind!r}; {fix}"
                )
        if not tokens:
            raise CredentialsError(
                f"origin certificate {source} holds no {TOKEN_BLOCK} block (corrupt or not an "
                f"Outlast cert.pem); {fix}"
            )
        if len(tokens) > 1:
            raise CredentialsError(f"origin certificate {source} holds several tokens; {fix}")
        try:
            raw: Any = json.loads(base64.b64decode("".join(tokens[0].split()), validate=True))
        except (binascii.Error, ValueError):
            raise CredentialsError(
                f"origin certificate {source}: the token block is corrupt; {fix}"
            ) from None
        if not isinstance(raw, dict):
            raise CredentialsError(f"origin certificate {source}: the token is corrupt; {fix}")
        missing = [k for k in ("zoneID", "accountID", "apiToken") if not raw.get(k)]
        if missing:
            raise CredentialsError(
                f"origin certificate {source}: the token lacks {', '.join(missing)}; {fix}"
            )
        if not all(
            isinstance(raw.get(k, ""), str) for k in ("zoneID", "accountID", "apiToken", "endpoint")
        ):
            raise CredentialsError(f"origin certificate {source}: the token is corrupt; {fix}")
        if len(certs) != 1 or len(keys) != 1:
            raise CredentialsError(
                f"origin certificate {source} must hold exactly one CERTIFICATE and one "
                f"PRIVATE KEY block (found {len(certs)} and {len(keys)}); {fix}"
            )
        return cls(
            zone_id=raw["zoneID"],
            account_id=raw["accountID"],
            api_token=raw["apiToken"],
            endpoint=str(raw.get("endpoint") or ""),
            cert_pem=certs[0].encode(),
            key_pem=keys[0].encode(),
        )

    @classmethod
    def load(cls, path: Path) -> OriginCert:
        """Read and validate cert.pem at ``path``."""
        data = _read_file(path, "origin certificate", f"{_LOGIN_HINT} (or pass --origincert PATH)")
        return cls.decode(data, source=str(path))

    def write(self, path: Path, force: bool = False) -> None:
        """Write cert.pem with mode 0600; an existing non-empty file needs ``force``."""
        path = Path(path)
        if not force and path.exists() and path.stat().st_size > 0:
            raise CredentialsError(
                f"you have an existing origin certificate at {path} which login would "
                "overwrite; pass --force to replace it, or --origincert to write elsewhere"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write(path, self.encode(), mode=ORIGINCERT_MODE)
        except OSError as exc:
            raise CredentialsError(
                f"cannot write origin certificate {path} ({exc.strerror}); check that its "
                "directory is writable, or choose another path with --origincert"
            ) from None
