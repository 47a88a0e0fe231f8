"""Handlers of the v4 API (one method per entry of ``routes.ROUTES``)."""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from cryptography import x509

from reference.config_signing import ConfigSigner
from reference.controlplane import validation as v
from reference.controlplane.broker_link import config_topic
from reference.controlplane.connections import ConnectionView, EdgeConnection, active_clients
from reference.controlplane.errors import ApiProblem, ErrorCode
from reference.controlplane.legacy import (
    LegacyDnsExpiry,
    LegacyRegisterBody,
    legacy_hostname,
    refuse_other_connectors,
)
from reference.controlplane.models import ADMIN, Actor, Tunnel, User, Zone
from reference.controlplane.openapi import build_openapi
from reference.controlplane.routes import QueryParam, RouteSpec
from reference.controlplane.store import Store
from reference.legacy_tunnel import legacy_tunnel_id
from reference.pki import CertAndKey, issue_certificate


class ConfigNotifier(Protocol):
    def notify(self) -> None: ...


class _NoBroker:
    def notify(self) -> None:
        return None


@dataclass
class Reply:
    """What a handler answers: the ``result`` (and ``result_info`` for lists)."""

    result: Any
    result_info: dict[str, int] | None = None
    status: int = 200
    raw: bool = False  # answer ``result`` itself, without the envelope


@dataclass
class Call:
    """One authenticated, parsed request."""

    request: web.Request
    user: User | None
    query: dict[str, Any]
    body: Any = None
    accounts: set[str] = field(default_factory=set)

    def path(self, name: str) -> str:
        return self.request.match_info[name]

    @property
    def actor(self) -> Actor:
        if self.user is None:
            return ADMIN
        return Actor(type="user", id=self.user.id, email=self.user.email)


def envelope(result: Any, result_info: dict[str, int] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return body


def failure(code: int, message: str) -> dict[str, Any]:
    return {
        "success": False,
        "errors": [{"code": code, "message": message}],
        "messages": [],
        "result": None,
    }


def parse_query(query: Mapping[str, str], params: tuple[QueryParam, ...]) -> dict[str, Any]:
    """Strictly parse the query string against ``params``."""
    known = {p.name: p for p in params}
    for key in query:
        if key not in known:
            accepted = ", ".join(known) or "none"
            raise ApiProblem(
                ErrorCode.INVALID_QUERY, f"unknown query parameter '{key}' (accepted: {accepted})"
            )
    parsed: dict[str, Any] = {}
    for param in params:
        if param.name not in query:
            continue
        raw = query[param.name]
        if param.kind == "bool":
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ApiProblem(
                    ErrorCode.INVALID_QUERY, f"query parameter '{param.name}' must be true or false"
                )
            parsed[param.name] = raw.lower() in ("true", "1")
        elif param.kind == "int":
            try:
                number = int(raw)
            except ValueError:
                raise ApiProblem(
                    ErrorCode.INVALID_QUERY, f"query parameter '{param.name}' must be an integer"
                ) from None
            low = param.minimum if param.minimum is not None else number
            high = param.maximum if param.maximum is not None else number
            if not low <= number <= high:
                raise ApiProblem(
                    ErrorCode.INVALID_QUERY,
                    f"query parameter '{param.name}' must be in {low}-{high}",
                )
            parsed[param.name] = number
        else:
            parsed[param.name] = raw
    return parsed


class ControlPlaneApi:
    """The handlers, bound to the store, the connection view and the configuration notifier."""

    def __init__(
        self,
        store: Store,
        view: ConnectionView,
        ca: CertAndKey,
        admin_token: str,
        *,
        tunnel_limit: int = 1000,
        notifier: ConfigNotifier | None = None,
        legacy_expiry: LegacyDnsExpiry | None = None,
        signer: ConfigSigner | None = None,
    ) -> None:
        self.signer = signer
        self.store = store
        self.view = view
        self.ca = ca
        self.admin_token = admin_token
        self.tunnel_limit = tunnel_limit
        self.notifier: ConfigNotifier = notifier or _NoBroker()
        self.legacy_expiry = legacy_expiry

    # ------------------------------------------------------------------ plumbing

    def bind(self, spec: RouteSpec) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """An aiohttp handler doing auth, query and body parsing for ``spec``."""
        method: Callable[[Call], Awaitable[Reply]] = getattr(self, spec.handler)

        async def handler(request: web.Request) -> web.StreamResponse:
            user: User | None = None
            accounts: set[str] = set()
            if spec.auth == "user":
                user = self._authenticate(request)
                accounts = self.store.user_account_ids(user.id)
            elif spec.auth == "admin":
                self._authenticate_admin(request)
            call = Call(request, user, parse_query(request.query, spec.query), accounts=accounts)
            if spec.body is not None:
                raw = await request.read()
                if not raw.strip() and spec.body_optional:
                    call.body = spec.body()
                else:
                    call.body = v.parse_body(spec.body, v.parse_json(raw))
            reply = await method(call)
            if reply.raw:
                return web.json_response(reply.result)
            return web.json_response(
                envelope(reply.result, reply.result_info),
                status=reply.status if reply.status != 200 else spec.status,
            )

        return handler

    @staticmethod
    def _bearer(request: web.Request, what: str) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiProblem(
                ErrorCode.MISSING_AUTH,
                f"missing or malformed Authorization header; send `Authorization: Bearer <{what}>`",
            )
        return token.strip()

    def _authenticate(self, request: web.Request) -> User:
        token = self._bearer(request, "API token (kept in cert.pem by `outlast tunnel login`)")
        return self.store.authenticate(token)

    def _authenticate_admin(self, request: web.Request) -> None:
        token = self._bearer(request, "admin token from DIR/admin.token")
        if not hmac.compare_digest(token.encode(), self.admin_token.encode()):
            raise ApiProblem(
                ErrorCode.ADMIN_TOKEN_INVALID,
                "admin endpoints need the admin token from the control plane's "
                "DIR/admin.token (pass it with --admin-token-file)",
            )

    def _account(self, call: Call) -> str:
        account_id = v.hex_id(call.path("account_id"), "account")
        if account_id not in call.accounts:
            raise ApiProblem(
                ErrorCode.FORBIDDEN, f"your API token has no access to account {account_id}"
            )
        return account_id

    def _zone(self, call: Call) -> Zone:
        zone_id = v.hex_id(call.path("zone_id"), "zone")
        zone = self.store.get_zone(zone_id)
        if zone is None or zone.account_id not in call.accounts:
            raise ApiProblem(ErrorCode.FORBIDDEN, f"your API token has no access to zone {zone_id}")
        return zone

    def _tunnel(self, account_id: str, tunnel_id: str) -> Tunnel:
        tunnel = self.store.get_tunnel(account_id, v.tunnel_id(tunnel_id))
        if tunnel is None:
            raise ApiProblem(
                ErrorCode.TUNNEL_NOT_FOUND, f"no tunnel {tunnel_id} in account {account_id}"
            )
        return tunnel

    def tunnel_to_api(self, tunnel: Tunnel) -> dict[str, Any]:
        conns: list[EdgeConnection] = [] if tunnel.deleted else self.view.for_tunnel(tunnel.id)
        return {
            "id": tunnel.id,
            "account_tag": tunnel.account_id,
            "name": tunnel.name,
            "created_at": tunnel.created_at,
            "deleted_at": tunnel.deleted_at,
            "connections": [c.to_api() for c in conns],
            "conns_active_at": min((c.opened_at for c in conns), default=None),
            "status": "deleted" if tunnel.deleted else ("healthy" if conns else "inactive"),
            "tun_type": "cfd_tunnel",
            "remote_config": False,
        }

    # ------------------------------------------------------------------ accounts, zones, user

    async def list_accounts(self, call: Call) -> Reply:
        accounts = self.store.accounts(call.accounts)
        return Reply(
            [a.to_api() for a in accounts],
            {
                "page": 1,
                "per_page": len(accounts),
                "count": len(accounts),
                "total_count": len(accounts),
            },
        )

    async def list_zones(self, call: Call) -> Reply:
        name = call.query.get("name")
        zones = self.store.zones_of_accounts(call.accounts, v.zone_name(name) if name else None)
        page, per_page = call.query.get("page", 1), call.query.get("per_page", 100)
        chunk = zones[(page - 1) * per_page : page * per_page]
        return Reply(
            [z.to_api() for z in chunk],
            {"page": page, "per_page": per_page, "count": len(chunk), "total_count": len(zones)},
        )

    async def get_zone(self, call: Call) -> Reply:
        return Reply(self._zone(call).to_api())

    async def issue_origin_certificate(self, call: Call) -> Reply:
        zone = self._zone(call)
        body: v.OriginCertificateBody = call.body
        issued = issue_certificate(
            self.ca,
            zone.name,
            dns_names=(zone.name, f"*.{zone.name}"),
            days=body.requested_validity,
        )
        cert = x509.load_pem_x509_certificate(issued.cert_pem)
        self.store.record_event(
            zone.account_id,
            "Origin certificate issue",
            call.actor,
            "zone",
            zone.id,
            {"serial": format(cert.serial_number, "x")},
        )
        return Reply(
            {
                "certificate": issued.cert_pem.decode(),
                "private_key": issued.key_pem.decode(),
                "ca_certificate": self.ca.cert_pem.decode(),
                "hostnames": [zone.name, f"*.{zone.name}"],
                "expires_on": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "zone_id": zone.id,
                "account_id": zone.account_id,
            }
        )

    async def verify_token(self, call: Call) -> Reply:
        assert call.user is not None
        return Reply(
            {
                "id": call.user.id,
                "email": call.user.email,
                "status": "active",
                "issued_on": call.user.token_issued_at,
            }
        )

    async def roll_own_token(self, call: Call) -> Reply:
        assert call.user is not None
        rolled = self.store.roll_token_of(call.user, "rolled by its owner")
        return Reply({"user_id": rolled.user_id, "api_token": rolled.api_token})

    # ------------------------------------------------------------------ tunnels

    async def create_tunnel(self, call: Call) -> Reply:
        account_id = self._account(call)
        body: v.CreateTunnelBody = call.body
        name = v.tunnel_name(body.name)
        secret = v.tunnel_secret(body.tunnel_secret)
        tunnel = self.store.create_tunnel(account_id, name, secret, self.tunnel_limit, call.actor)
        self.notifier.notify()
        return Reply(self.tunnel_to_api(tunnel))

    async def list_tunnels(self, call: Call) -> Reply:
        account_id = self._account(call)
        uuid = call.query.get("uuid")
        page = self.store.list_tunnels(
            account_id,
            is_deleted=call.query.get("is_deleted"),
            name=call.query.get("name"),
            tunnel_id=v.tunnel_id(uuid) if uuid else None,
            page=call.query.get("page", 1),
            per_page=call.query.get("per_page", 100),
        )
        return Reply([self.tunnel_to_api(t) for t in page.items], page.result_info())

    async def get_tunnel(self, call: Call) -> Reply:
        return Reply(self.tunnel_to_api(self._tunnel(self._account(call), call.path("tunnel_id"))))

    async def delete_tunnel(self, call: Call) -> Reply:
        tunnel = self._tunnel(self._account(call), call.path("tunnel_id"))
        cascade = bool(call.query.get("cascade", False))
        if tunnel.deleted:
            raise ApiProblem(
                ErrorCode.TUNNEL_ALREADY_DELETED,
                f"tunnel {tunnel.name} ({tunnel.id}) has already been deleted",
            )
        conns = self.view.for_tunnel(tunnel.id)
        if conns and not cascade:
            raise ApiProblem(
                ErrorCode.TUNNEL_HAS_CONNECTIONS,
                f"tunnel {tunnel.name} has {len(conns)} active connections; stop its connector "
                "first, or delete with cascade=true (`outlast tunnel delete -f`)",
            )
        if cascade:
            self.view.cleanup(tunnel.id)
        deleted = self.store.delete_tunnel(tunnel, call.actor, cascade=cascade)
        self.notifier.notify()
        return Reply(self.tunnel_to_api(deleted))

    async def list_connections(self, call: Call) -> Reply:
        tunnel = self._tunnel(self._account(call), call.path("tunnel_id"))
        clients = [] if tunnel.deleted else active_clients(self.view.for_tunnel(tunnel.id))
        return Reply(
            clients,
            {
                "page": 1,
                "per_page": len(clients),
                "count": len(clients),
                "total_count": len(clients),
            },
        )

    async def cleanup_connections(self, call: Call) -> Reply:
        tunnel = self._tunnel(self._account(call), call.path("tunnel_id"))
        client_id = call.query.get("client_id")
        removed = self.view.cleanup(tunnel.id, client_id)
        self.store.record_event(
            tunnel.account_id,
            "Cleanup connections",
            call.actor,
            "tunnel",
            tunnel.id,
            {"client_id": client_id, "removed": removed},
        )
        return Reply({"removed": removed})

    async def get_tunnel_token(self, call: Call) -> Reply:
        tunnel = self._tunnel(self._account(call), call.path("tunnel_id"))
        if tunnel.deleted:
            raise ApiProblem(
                ErrorCode.TUNNEL_ALREADY_DELETED,
                f"tunnel {tunnel.name} ({tunnel.id}) has been deleted",
            )
        token = {
            "a": tunnel.account_id,
            "s": base64.b64encode(tunnel.secret).decode(),
            "t": tunnel.id,
        }
        return Reply(base64.b64encode(json.dumps(token).encode()).decode())

    # ------------------------------------------------------------------ DNS

    async def route_tunnel(self, call: Call) -> Reply:
        zone = self._zone(call)
        body: v.RouteBody = call.body
        host = v.hostname(body.user_hostname)
        if not zone.contains(host):
            raise ApiProblem(
                ErrorCode.HOSTNAME_OUTSIDE_ZONE,
                f"hostname {host} is not in zone {zone.name}; use {zone.name} or a name ending "
                f"in .{zone.name} (or log in to the zone that holds it)",
            )
        tunnel = self._tunnel(zone.account_id, call.path("tunnel_id"))
        if tunnel.deleted:
            raise ApiProblem(
                ErrorCode.TUNNEL_ALREADY_DELETED,
                f"tunnel {tunnel.name} ({tunnel.id}) has been deleted",
            )
        result, record = self.store.route_dns(
            zone, tunnel, host, body.overwrite_existing, call.actor
        )
        if result != "unchanged":
            self.notifier.notify()
        return Reply({"cname": result, "name": host, "record": record.to_api()})

    async def list_records(self, call: Call) -> Reply:
        zone = self._zone(call)
        name = call.query.get("name")
        page = self.store.list_records(
            zone.id,
            name=v.hostname(name) if name else None,
            type=call.query.get("type"),
            content=call.query.get("content"),
            page=call.query.get("page", 1),
            per_page=call.query.get("per_page", 100),
        )
        return Reply([r.to_api() for r in page.items], page.result_info())

    async def create_record(self, call: Call) -> Reply:
        zone = self._zone(call)
        body: v.CreateDnsRecordBody = call.body
        name = zone.name if body.name == "@" else v.hostname(body.name, what="record name")
        if not zone.contains(name):
            raise ApiProblem(
                ErrorCode.HOSTNAME_OUTSIDE_ZONE, f"record name {name} is not in zone {zone.name}"
            )
        record = self.store.create_record(
            zone,
            body.type,
            name,
            v.record_content(body.type, body.content),
            body.proxied,
            v.ttl(body.ttl),
            call.actor,
        )
        self.notifier.notify()
        return Reply(record.to_api())

    async def get_record(self, call: Call) -> Reply:
        zone = self._zone(call)
        record_id = v.hex_id(call.path("record_id"), "DNS record")
        record = self.store.get_record(zone.id, record_id)
        if record is None:
            raise ApiProblem(
                ErrorCode.RECORD_NOT_FOUND, f"no DNS record {record_id} in zone {zone.name}"
            )
        return Reply(record.to_api())

    async def delete_record(self, call: Call) -> Reply:
        zone = self._zone(call)
        record = self.store.delete_record(
            zone, v.hex_id(call.path("record_id"), "DNS record"), call.actor
        )
        self.notifier.notify()
        return Reply({"id": record.id})

    # ------------------------------------------------------------------ legacy tunnels

    async def register_legacy_tunnel(self, call: Call) -> Reply:
        """An edge registers one legacy connection on behalf of the connector's API token."""
        zone = self._zone(call)
        body: LegacyRegisterBody = call.body
        host = legacy_hostname(zone, body.hostname)
        expected = legacy_tunnel_id(zone.id, host)
        if body.tunnel_id != expected:
            raise ApiProblem(
                ErrorCode.INVALID_FIELDS,
                f"tunnel_id {body.tunnel_id!r} is not the legacy tunnel of {host} in zone "
                f"{zone.name} (expected {expected})",
            )
        refuse_other_connectors(self.view, expected, host, body.connector_id)
        registration = self.store.register_legacy(
            zone, host, call.actor, {"pop": body.pop, "connector_id": body.connector_id}
        )
        if self.legacy_expiry is not None:
            self.legacy_expiry.touch(expected)
        if registration.changed:
            self.notifier.notify()
        config = [
            {
                "topic": config_topic(obj),
                "payload": obj.payload,
                **(
                    {"message": self.signer.sign(config_topic(obj), obj.payload).decode()}
                    if self.signer is not None
                    else {}
                ),
            }
            for obj in self.store.legacy_config(registration)
        ]
        return Reply(
            {
                "tunnel_id": expected,
                "hostname": host,
                "record": registration.record.to_api(),
                "created": {
                    "tunnel": registration.created_tunnel,
                    "record": registration.created_record,
                },
                "config": config,
            }
        )

    # ------------------------------------------------------------------ audit

    async def list_audit(self, call: Call) -> Reply:
        account_id = self._account(call)
        direction = call.query.get("direction", "desc")
        if direction not in ("asc", "desc"):
            raise ApiProblem(ErrorCode.INVALID_QUERY, "direction must be asc or desc")
        page = self.store.list_audit(
            account_id,
            action=call.query.get("action"),
            resource_id=call.query.get("resource_id"),
            since=v.since_timestamp(call.query.get("since")),
            descending=direction == "desc",
            page=call.query.get("page", 1),
            per_page=call.query.get("per_page", 100),
        )
        return Reply([e.to_api() for e in page.items], page.result_info())

    # ------------------------------------------------------------------ admin

    async def admin_bootstrap(self, call: Call) -> Reply:
        body: v.BootstrapBody = call.body
        result = self.store.bootstrap(
            v.account_name(body.account), v.zone_name(body.zone), v.email(body.email)
        )
        self.notifier.notify()
        return Reply(
            {
                "account_id": result.account_id,
                "zone_id": result.zone_id,
                "user_id": result.user_id,
                "api_token": result.api_token,
            }
        )

    async def admin_roll_token(self, call: Call) -> Reply:
        body: v.RollTokenBody = call.body
        rolled = self.store.roll_token(v.email(body.email), "rolled by an administrator")
        return Reply(
            {
                "user_id": rolled.user_id,
                "email": rolled.email,
                "api_token": rolled.api_token,
                "accounts": rolled.accounts,
            }
        )

    async def admin_remove_member(self, call: Call) -> Reply:
        body: v.RemoveMemberBody = call.body
        rolled = self.store.remove_member(body.account, v.email(body.email))
        return Reply(
            {
                "user_id": rolled.user_id,
                "email": rolled.email,
                "api_token": rolled.api_token,
                "accounts": rolled.accounts,
            }
        )

    async def openapi(self, call: Call) -> Reply:
        return Reply(build_openapi(), raw=True)
