"""The route table of the v4 API: one entry per method and path, used by the router and OpenAPI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reference.controlplane import validation as v
from reference.controlplane.legacy import LegacyRegisterBody

Auth = Literal["user", "admin", "none"]
V4 = "/client/v4"


@dataclass(frozen=True)
class QueryParam:
    name: str
    kind: Literal["bool", "int", "str"]
    description: str
    minimum: int | None = None
    maximum: int | None = None


PAGE = QueryParam("page", "int", "Page number, from 1.", minimum=1, maximum=1_000_000)
PER_PAGE = QueryParam("per_page", "int", "Items per page (1-1000, default 100).", 1, 1000)
PAGING = (PAGE, PER_PAGE)


@dataclass(frozen=True)
class RouteSpec:
    """One API operation."""

    method: str
    path: str
    handler: str
    summary: str
    auth: Auth = "user"
    body: type[v.StrictBody] | None = None
    body_optional: bool = False
    query: tuple[QueryParam, ...] = ()
    is_list: bool = False
    status: int = 200
    tag: str = "tunnels"


ACCOUNT = V4 + "/accounts/{account_id}"
TUNNEL = ACCOUNT + "/cfd_tunnel/{tunnel_id}"
ZONE = V4 + "/zones/{zone_id}"

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "GET",
        V4 + "/accounts",
        "list_accounts",
        "Accounts the token may use.",
        is_list=True,
        tag="accounts",
    ),
    RouteSpec(
        "GET",
        V4 + "/zones",
        "list_zones",
        "Zones the token may use.",
        query=(QueryParam("name", "str", "Exact zone name."), *PAGING),
        is_list=True,
        tag="zones",
    ),
    RouteSpec("GET", ZONE, "get_zone", "One zone.", tag="zones"),
    RouteSpec(
        "POST",
        ZONE + "/origin_certificate",
        "issue_origin_certificate",
        "Issue an origin certificate and key for the zone (used by `tunnel login`).",
        body=v.OriginCertificateBody,
        body_optional=True,
        status=201,
        tag="zones",
    ),
    RouteSpec(
        "GET",
        V4 + "/user/tokens/verify",
        "verify_token",
        "Check the API token; answers the user it belongs to.",
        tag="user",
    ),
    RouteSpec(
        "POST",
        V4 + "/user/tokens/roll",
        "roll_own_token",
        "Replace the caller's API token with a new one (the old one stops working).",
        tag="user",
    ),
    RouteSpec(
        "POST",
        ACCOUNT + "/cfd_tunnel",
        "create_tunnel",
        # 200 as Cloudflare's API answers: cloudflared's `tunnel create` refuses any other
        # status (cfapi/tunnel.go), also 201.
        "Create a named tunnel.",
        body=v.CreateTunnelBody,
    ),
    RouteSpec(
        "GET",
        ACCOUNT + "/cfd_tunnel",
        "list_tunnels",
        "List tunnels.",
        query=(
            QueryParam("is_deleted", "bool", "true: only deleted; false: only live."),
            QueryParam("name", "str", "Exact tunnel name."),
            QueryParam("uuid", "str", "Exact tunnel id."),
            *PAGING,
        ),
        is_list=True,
    ),
    RouteSpec("GET", TUNNEL, "get_tunnel", "One tunnel (also when deleted)."),
    RouteSpec(
        "DELETE",
        TUNNEL,
        "delete_tunnel",
        "Delete a tunnel (revokes its credentials). Refused while it has active "
        "connections unless cascade=true.",
        query=(QueryParam("cascade", "bool", "Delete even with active connections."),),
    ),
    RouteSpec(
        "GET",
        TUNNEL + "/connections",
        "list_connections",
        "Active connectors of the tunnel and their connections.",
        is_list=True,
    ),
    RouteSpec(
        "DELETE",
        TUNNEL + "/connections",
        "cleanup_connections",
        "Forget stale connection records (live ones reappear with the next edge snapshot).",
        query=(QueryParam("client_id", "str", "Only this connector's connections."),),
    ),
    RouteSpec(
        "GET",
        TUNNEL + "/token",
        "get_tunnel_token",
        "The tunnel's run token: base64 JSON {a, s, t} (account, secret, tunnel id).",
    ),
    RouteSpec(
        "PUT",
        ZONE + "/tunnels/{tunnel_id}/routes",
        "route_tunnel",
        "Route a hostname to the tunnel with a CNAME (`tunnel route dns`).",
        body=v.RouteBody,
        tag="dns",
    ),
    RouteSpec(
        "GET",
        ZONE + "/dns_records",
        "list_records",
        "List DNS records.",
        query=(
            QueryParam("name", "str", "Exact record name."),
            QueryParam("type", "str", "Record type."),
            QueryParam("content", "str", "Exact content."),
            *PAGING,
        ),
        is_list=True,
        tag="dns",
    ),
    RouteSpec(
        "POST",
        ZONE + "/dns_records",
        "create_record",
        "Create a DNS record.",
        body=v.CreateDnsRecordBody,
        status=201,
        tag="dns",
    ),
    RouteSpec("GET", ZONE + "/dns_records/{record_id}", "get_record", "One DNS record.", tag="dns"),
    RouteSpec(
        "DELETE",
        ZONE + "/dns_records/{record_id}",
        "delete_record",
        "Delete a DNS record.",
        tag="dns",
    ),
    RouteSpec(
        "POST",
        ZONE + "/legacy_tunnels",
        "register_legacy_tunnel",
        "Legacy (classic) registration, called by an edge with the user's API token for every "
        "legacy connection: finds or creates the hostname's legacy tunnel and its CNAME.",
        body=LegacyRegisterBody,
        tag="legacy",
    ),
    RouteSpec(
        "GET",
        ACCOUNT + "/audit_logs",
        "list_audit",
        "The account's audit log.",
        query=(
            QueryParam("action", "str", "Exact action type, e.g. `CNAME add`."),
            QueryParam("resource_id", "str", "Only entries about this resource."),
            QueryParam("since", "str", "Only entries at or after this RFC 3339 time."),
            QueryParam("direction", "str", "`desc` (default, newest first) or `asc`."),
            *PAGING,
        ),
        is_list=True,
        tag="audit",
    ),
    RouteSpec(
        "POST",
        V4 + "/admin/bootstrap",
        "admin_bootstrap",
        "Create (or reuse) an account, a zone and a user; answers the user's new token.",
        auth="admin",
        body=v.BootstrapBody,
        tag="admin",
    ),
    RouteSpec(
        "POST",
        V4 + "/admin/users/roll_token",
        "admin_roll_token",
        "Roll a user's API token.",
        auth="admin",
        body=v.RollTokenBody,
        tag="admin",
    ),
    RouteSpec(
        "POST",
        V4 + "/admin/accounts/remove_member",
        "admin_remove_member",
        "Remove a user from an account (rolls the user's token).",
        auth="admin",
        body=v.RemoveMemberBody,
        tag="admin",
    ),
    RouteSpec("GET", V4 + "/openapi.json", "openapi", "This document.", auth="none", tag="meta"),
)
