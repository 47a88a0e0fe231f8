"""The management operations behind ``outlast tunnel login|create|route|list|info|delete|token``.

Each function talks to the control plane with the API token from cert.pem and raises
:class:`ManagementError` with a message that says what went wrong and what to do.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from reference.connector.api_client import (
    CODE_TOKEN_ROLLED,
    CODE_TUNNEL_HAS_CONNECTIONS,
    CODE_TUNNEL_NOT_FOUND,
    CODE_UNKNOWN_TOKEN,
    ApiClient,
    ApiError,
)
from reference.connector.credentials import (
    SECRET_BYTES,
    CredentialsError,
    OriginCert,
    TunnelCredentials,
    default_credentials_path,
    default_origincert_path,
)


class ManagementError(Exception):
    """A management command failed; the message is meant for the user."""


def login_command_hint(cert: OriginCert | None = None) -> str:
    api = cert.endpoint if cert and cert.endpoint else "URL"
    return f"outlast tunnel login --force --api {api} --token NEW_TOKEN --zone ZONE"


def explain(exc: ApiError, cert: OriginCert | None = None, cert_path: Path | None = None) -> str:
    """The user-facing message for an API error (token problems get the re-login fix)."""
    where = f" in {cert_path}" if cert_path else ""
    if exc.code == CODE_TOKEN_ROLLED:
        return (
            f"token rolled: the API token{where} was replaced and no longer works "
            f"({exc.message}). Run `outlast tunnel login` again: `{login_command_hint(cert)}`. "
            "Running tunnels are not affected."
        )
    if exc.code == CODE_UNKNOWN_TOKEN:
        return (
            f"the control plane does not know the API token{where} ({exc.message}). "
            f"Run `{login_command_hint(cert)}` with a valid token."
        )
    return exc.message


def tunnel_secret() -> bytes:
    return os.urandom(SECRET_BYTES)


def colo_summary(connections: list[dict[str, Any]]) -> str:
    """``2xams, 2xfra``: a tunnel's connections per edge location."""
    counts = Counter(str(c.get("colo_name", "?")) for c in connections)
    return ", ".join(f"{n}x{colo}" for colo, n in sorted(counts.items()))


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def login(
    api: str, token: str, zone: str, path: Path | None = None, *, force: bool = False
) -> tuple[OriginCert, Path]:
    """Fetch zone, account and an origin certificate for ``token``; write cert.pem (0600)."""
    path = path or default_origincert_path()
    if not force and path.exists() and path.stat().st_size > 0:
        raise ManagementError(
            f"you have an existing origin certificate at {path} which login would overwrite; "
            "pass --force to replace it, or --origincert to write elsewhere"
        )
    zone_name = zone.strip().lower().rstrip(".")
    with ApiClient(api, token) as client:
        try:
            zones = client.zones(zone_name)
            if not zones:
                raise ManagementError(
                    f"zone {zone_name!r} is unknown or your API token has no access to it; check "
                    "--zone (a zone name such as example.com) and --token"
                )
            found = zones[0]
            issued = client.issue_origin_certificate(str(found["id"]))
        except ApiError as exc:
            raise ManagementError(explain(exc)) from None
    cert = OriginCert(
        zone_id=str(found["id"]),
        account_id=str(found["account"]["id"]),
        api_token=token,
        endpoint=api.rstrip("/"),
        cert_pem=str(issued["certificate"]).encode(),
        key_pem=str(issued["private_key"]).encode(),
    )
    cert.write(path, force=force)
    return cert, path


@dataclass
class Session:
    """cert.pem plus an API client using its token."""

    cert: OriginCert
    cert_path: Path
    client: ApiClient

    @classmethod
    def open(cls, origincert: Path | None) -> Session:
        path = origincert or default_origincert_path()
        cert = OriginCert.load(path)
        if not cert.endpoint:
            raise CredentialsError(
                f"origin certificate {path} does not name the control plane (no endpoint); "
                f"run `{login_command_hint()}`"
            )
        return cls(cert, path, ApiClient(cert.endpoint, cert.api_token))

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def account(self) -> str:
        return self.cert.account_id

    def fail(self, exc: ApiError) -> ManagementError:
        return ManagementError(explain(exc, self.cert, self.cert_path))

    # ------------------------------------------------------------------ tunnels

    def resolve(self, ref: str) -> dict[str, Any]:
        """The tunnel named or identified by ``ref`` (live tunnels only for names)."""
        try:
            if _is_uuid(ref):
                try:
                    return self.client.get_tunnel(self.account, ref.lower())
                except ApiError as exc:
                    if exc.code == CODE_TUNNEL_NOT_FOUND:
                        raise ManagementError(
                            f"there is no tunnel with id {ref} in your account; see "
                            "`outlast tunnel list`"
                        ) from None
                    raise
            found = self.client.list_tunnels(self.account, is_deleted=False, name=ref)
        except ApiError as exc:
            raise self.fail(exc) from None
        if not found:
            raise ManagementError(
                f"there is no tunnel named {ref!r} in your account; see `outlast tunnel list`"
            )
        return found[0]

    def create(
        self, name: str, credentials_file: Path | None = None
    ) -> tuple[dict[str, Any], Path]:
        """Create a tunnel and write its credentials file; nothing is left if writing fails."""
        if credentials_file is not None and credentials_file.exists():
            raise ManagementError(
                f"credentials file {credentials_file} already exists; refusing to overwrite "
                "it (choose another --credentials-file)"
            )
        secret = tunnel_secret()
        try:
            tunnel = self.client.create_tunnel(
                self.account, name, base64.b64encode(secret).decode()
            )
        except ApiError as exc:
            raise self.fail(exc) from None
        credentials = TunnelCredentials(
            account_tag=self.account,
            tunnel_secret=secret,
            tunnel_id=str(tunnel["id"]),
            endpoint=self.cert.endpoint,
        )
        path = credentials_file or default_credentials_path(credentials.tunnel_id)
        try:
            credentials.write(path)
        except CredentialsError as exc:
            try:
                self.client.delete_tunnel(self.account, credentials.tunnel_id, cascade=True)
                undone = "the tunnel was deleted again"
            except ApiError as undo:
                undone = (
                    f"deleting the tunnel again failed too ({undo.message}); delete it with "
                    f"`outlast tunnel delete -f {credentials.tunnel_id}`"
                )
            raise ManagementError(f"{exc}; {undone}") from None
        return tunnel, path

    def route_dns(self, ref: str, hostname: str, overwrite: bool) -> dict[str, Any]:
        tunnel = self.resolve(ref)
        try:
            result = self.client.route_dns(
                self.cert.zone_id, str(tunnel["id"]), hostname, overwrite
            )
        except ApiError as exc:
            raise self.fail(exc) from None
        result["tunnel_id"] = tunnel["id"]
        return result

    def list_tunnels(
        self, *, show_deleted: bool = False, name: str | None = None
    ) -> list[dict[str, Any]]:
        try:
            return self.client.list_tunnels(
                self.account, is_deleted=None if show_deleted else False, name=name
            )
        except ApiError as exc:
            raise self.fail(exc) from None

    def info(self, ref: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        tunnel = self.resolve(ref)
        try:
            clients = self.client.tunnel_connections(self.account, str(tunnel["id"]))
        except ApiError as exc:
            raise self.fail(exc) from None
        return tunnel, clients

    def delete(
        self, ref: str, *, force: bool, credentials_file: Path | None = None
    ) -> tuple[dict[str, Any], Path | None]:
        """Delete the tunnel (cascade with ``force``); remove its local credentials file."""
        tunnel = self.resolve(ref)
        tunnel_id = str(tunnel["id"])
        if tunnel.get("deleted_at"):
            raise ManagementError(f"tunnel {tunnel['name']} ({tunnel_id}) has already been deleted")
        try:
            deleted = self.client.delete_tunnel(self.account, tunnel_id, cascade=force)
        except ApiError as exc:
            if exc.code == CODE_TUNNEL_HAS_CONNECTIONS:
                raise ManagementError(
                    f"you can not delete tunnel {tunnel['name']} because it has active "
                    f"connections ({colo_summary(tunnel.get('connections') or [])}); stop its "
                    "connector first, see `outlast tunnel info`, or use -f/--force to delete it "
                    "anyway (its connections are then closed)"
                ) from None
            raise self.fail(exc) from None
        path = credentials_file or default_credentials_path(tunnel_id)
        removed: Path | None = None
        if path.exists():
            try:
                path.unlink()
                removed = path
            except OSError as exc:
                raise ManagementError(
                    f"tunnel {tunnel_id} was deleted, but its credentials file {path} could not "
                    f"be removed ({exc.strerror}); remove it yourself"
                ) from None
        return deleted, removed

    def token(self, ref: str) -> tuple[str, str]:
        tunnel = self.resolve(ref)
        try:
            return str(tunnel["id"]), self.client.tunnel_token(self.account, str(tunnel["id"]))
        except ApiError as exc:
            raise self.fail(exc) from None

    def cleanup(self, ref: str, connector_id: str | None) -> dict[str, Any]:
        tunnel = self.resolve(ref)
        try:
            result = self.client.cleanup_connections(self.account, str(tunnel["id"]), connector_id)
        except ApiError as exc:
            raise self.fail(exc) from None
        result["tunnel_id"] = tunnel["id"]
        return result


def credentials_from_token(token: str, endpoint: str = "") -> TunnelCredentials:
    """Turn a run token (base64 JSON {a, s, t}) into credentials."""
    try:
        raw = json.loads(base64.b64decode(token, validate=True))
        secret = base64.b64decode(raw["s"], validate=True)
        return TunnelCredentials(
            str(raw["a"]), secret, str(raw["t"]), str(raw.get("e") or endpoint)
        )
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ManagementError("the tunnel token is malformed") from None
