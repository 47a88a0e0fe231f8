"""``outlast serve controlplane`` and the admin CLI ``outlast controlplane ...``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from reference.addresses import HostPort
from reference.broker.auth import BrokerAuthError, BrokerCredential
from reference.broker.client_options import broker_client_options
from reference.broker.tls import BrokerTlsError, client_context
from reference.connector.api_client import ApiClient, ApiError
from reference.http_limits_cli import limits_from_options, slow_client_options
from reference.logs import configure_logging


@click.command(name="controlplane")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="SQLite database, CA and admin.token live here (created if missing).",
)
@click.option(
    "--listen",
    type=HostPort(),
    default="127.0.0.1:8080",
    show_default=True,
    help="HOST:PORT of the REST API.",
)
@click.option(
    "--broker",
    type=HostPort(),
    default=None,
    help="MQTT broker HOST:PORT for configuration distribution and edge events.",
)
@click.option(
    "--tunnel-limit",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Maximum live tunnels per account.",
)
@click.option(
    "--broker-backoff-cap",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Longest wait (s) between broker reconnect attempts.",
)
@click.option(
    "--legacy-dns-grace",
    type=click.FloatRange(min=0.0),
    default=86_400.0,
    show_default=True,
    help="Seconds a legacy tunnel may have no connection anywhere before its DNS record is "
    "removed (24 h: the provider's documented lower bound; see docs/legacy.md).",
)
@click.option(
    "--signing-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Ed25519 key (PEM) that signs every configuration message; created if missing, its "
    "public half written next to it (.pub) for the edges' --config-key. Default: "
    "DATA_DIR/config-signing.key.",
)
@broker_client_options("the control plane", "controlplane.credentials.json")
@slow_client_options("API listener")
@click.option("--log-level", default="INFO", show_default=True)
def serve_command(
    data_dir: Path,
    listen: tuple[str, int],
    broker: tuple[str, int] | None,
    tunnel_limit: int,
    broker_backoff_cap: float,
    legacy_dns_grace: float,
    signing_key: Path | None,
    broker_credentials: Path | None,
    broker_ca: Path | None,
    header_timeout: float,
    idle_timeout: float,
    body_timeout: float,
    max_connections: int,
    log_level: str,
) -> None:
    """Run the control plane (REST API, SQLite, CA, config publisher) in the foreground."""
    from reference.controlplane.app import ControlPlane, serve_forever

    configure_logging("controlplane", log_level)
    control_plane = ControlPlane(
        data_dir,
        listen[0],
        listen[1],
        broker=broker,
        tunnel_limit=tunnel_limit,
        broker_backoff_cap=broker_backoff_cap,
        legacy_dns_grace=legacy_dns_grace,
        signing_key=signing_key,
        broker_credentials=broker_credentials,
        broker_ca=broker_ca,
        limits=limits_from_options(header_timeout, idle_timeout, body_timeout, max_connections),
    )
    try:
        if broker_credentials is not None:
            BrokerCredential.load(broker_credentials)
        if broker_ca is not None:
            client_context(broker_ca)
    except (BrokerAuthError, BrokerTlsError) as exc:
        raise click.ClickException(str(exc)) from None
    asyncio.run(serve_forever(control_plane))


def _admin_client(ctx: click.Context) -> ApiClient:
    api, token_file = ctx.obj["api"], ctx.obj["admin_token_file"]
    try:
        token = Path(token_file).read_text().strip()
    except OSError as exc:
        raise click.ClickException(
            f"cannot read the admin token file {token_file} ({exc.strerror}); it is "
            "DIR/admin.token of the control plane (written on its first start)"
        ) from None
    if not token:
        raise click.ClickException(f"admin token file {token_file} is empty")
    return ApiClient(api, token)


def _admin_call(ctx: click.Context, path: str, body: dict[str, Any]) -> None:
    with _admin_client(ctx) as client:
        try:
            result = client.result("POST", path, json=body)
        except ApiError as exc:
            raise click.ClickException(exc.message) from None
    click.echo(json.dumps(result, indent=2))


@click.group(name="controlplane")
@click.option("--api", required=True, envvar="OUTLAST_API", help="Control plane URL.")
@click.option(
    "--admin-token-file",
    required=True,
    type=click.Path(path_type=Path),
    help="The control plane's DIR/admin.token.",
)
@click.pass_context
def admin_group(ctx: click.Context, api: str, admin_token_file: Path) -> None:
    """Administer a running control plane (accounts, zones, users, tokens)."""
    ctx.obj = {"api": api, "admin_token_file": admin_token_file}


@admin_group.command()
@click.option("--account", required=True, help="Account name (created if new).")
@click.option("--zone", required=True, help="Zone name, e.g. example.com (created if new).")
@click.option("--email", required=True, help="User email (created if new).")
@click.pass_context
def bootstrap(ctx: click.Context, account: str, zone: str, email: str) -> None:
    """Create account, zone and user; print JSON {account_id, zone_id, user_id, api_token}.

    A user that already exists gets a new API token (the old one is rolled).
    """
    _admin_call(ctx, "/admin/bootstrap", {"account": account, "zone": zone, "email": email})


@admin_group.command(name="roll-token")
@click.option("--email", required=True)
@click.pass_context
def roll_token(ctx: click.Context, email: str) -> None:
    """Replace a user's API token; print JSON with the new token."""
    _admin_call(ctx, "/admin/users/roll_token", {"email": email})


@admin_group.command(name="remove-user")
@click.option("--account", required=True, help="Account name.")
@click.option("--email", required=True)
@click.pass_context
def remove_user(ctx: click.Context, account: str, email: str) -> None:
    """Remove a user from an account (their token is rolled); print JSON."""
    _admin_call(ctx, "/admin/accounts/remove_member", {"account": account, "email": email})
