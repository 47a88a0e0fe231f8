"""``outlast tunnel ...``: the connector's management verbs (cloudflared's), plus ``run``.

    outlast tunnel login --api URL --token TOKEN --zone ZONE [--origincert PATH] [--force]
    outlast tunnel [--origincert PATH] create NAME [--credentials-file PATH] [-o json]
    outlast tunnel route dns NAME|UUID HOSTNAME [--overwrite-dns]
    outlast tunnel list [-o json] | info NAME|UUID [-o json] | delete [-f] NAME|UUID... | token ...

``run`` is imported lazily from ``reference.connector.run_command`` (the data plane).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
import yaml

from reference.connector.api_client import ApiError
from reference.connector.credentials import CredentialsError
from reference.connector.management import (
    ManagementError,
    Session,
    colo_summary,
    credentials_from_token,
    explain,
    login,
)
from reference.lazy_group import LazyGroup

P = ParamSpec("P")
R = TypeVar("R")

LIST_HINT = (
    "You can obtain more detailed information for each tunnel with "
    "`outlast tunnel info <name/uuid>`"
)


@dataclass
class TunnelOptions:
    """Options of the ``tunnel`` group; subcommands find it with ``ctx.find_object``."""

    origincert: Path | None


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn credential, API and management errors into a clear message and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (CredentialsError, ManagementError) as exc:
            raise click.ClickException(str(exc)) from None
        except ApiError as exc:
            raise click.ClickException(explain(exc)) from None

    return wrapper


def _session() -> Session:
    options = click.get_current_context().find_object(TunnelOptions)
    return Session.open(options.origincert if options else None)


def _emit(data: Any, output: str | None) -> None:
    if output == "yaml":
        click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)
    else:
        click.echo(json.dumps(data, indent=2))


OUTPUT = click.option(
    "-o",
    "--output",
    type=click.Choice(["json", "yaml"]),
    default=None,
    help="Print machine-readable output instead of text.",
)


@click.group(
    cls=LazyGroup,
    name="tunnel",
    lazy={"run": "reference.connector.run_command:run_command"},
    help="Create, route, list, delete and run named tunnels.",
)
@click.option(
    "--origincert",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="OUTLAST_ORIGINCERT",
    help="cert.pem from `outlast tunnel login` (default: $OUTLAST_HOME/cert.pem, "
    "OUTLAST_HOME defaults to ~/.outlast).",
)
@click.pass_context
def tunnel_group(ctx: click.Context, origincert: Path | None) -> None:
    ctx.obj = TunnelOptions(origincert=origincert)


@tunnel_group.command(name="login")
@click.option("--api", required=True, envvar="OUTLAST_API", help="Control plane URL.")
@click.option(
    "--token",
    required=True,
    envvar="OUTLAST_API_TOKEN",
    help="Your API token (or set OUTLAST_API_TOKEN).",
)
@click.option("--zone", required=True, help="Zone name the cert.pem is for, e.g. example.com.")
@click.option(
    "--origincert",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write cert.pem (default: $OUTLAST_HOME/cert.pem).",
)
@click.option("--force", is_flag=True, help="Replace an existing cert.pem.")
@click.pass_context
@user_errors
def login_command(
    ctx: click.Context, api: str, token: str, zone: str, origincert: Path | None, force: bool
) -> None:
    """Write cert.pem (0600): your API token for ZONE plus an origin certificate."""
    options = ctx.find_object(TunnelOptions)
    path = origincert or (options.origincert if options else None)
    cert, written = login(api, token, zone, path, force=force)
    click.echo(f"You have successfully logged in to zone {zone} (account {cert.account_id}).")
    click.echo(
        f"Your origin certificate was written to {written}; it is needed to create, "
        "route, list and delete tunnels, never to run one."
    )


@tunnel_group.command(name="create")
@click.argument("name")
@click.option(
    "--credentials-file",
    "--cred-file",
    "credentials_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the credentials (default: $OUTLAST_HOME/<TunnelID>.json).",
)
@OUTPUT
@user_errors
def create_command(name: str, credentials_file: Path | None, output: str | None) -> None:
    """Create a named tunnel and write its credentials file (0400)."""
    with _session() as session:
        tunnel, path = session.create(name, credentials_file)
    if output:
        _emit({**tunnel, "credentials_file": str(path)}, output)
        return
    click.echo(
        f"Tunnel credentials written to {path}. Keep this file secret. To revoke these "
        "credentials, delete the tunnel."
    )
    click.echo()
    click.echo(f"Created tunnel {tunnel['name']} with id {tunnel['id']}")


@tunnel_group.group(name="route")
def route_group() -> None:
    """Route traffic to a tunnel."""


@route_group.command(name="dns")
@click.argument("tunnel")
@click.argument("hostname")
@click.option(
    "--overwrite-dns",
    "-f",
    "overwrite",
    is_flag=True,
    help="Replace an existing A, AAAA or CNAME record at HOSTNAME.",
)
@user_errors
def route_dns_command(tunnel: str, hostname: str, overwrite: bool) -> None:
    """Point HOSTNAME at TUNNEL (name or UUID) with a CNAME; the zone apex is allowed."""
    with _session() as session:
        result = session.route_dns(tunnel, hostname, overwrite)
    if result["cname"] == "unchanged":
        click.echo(
            f"{result['name']} is already configured to route to your tunnel "
            f"tunnelID={result['tunnel_id']}"
        )
    else:
        click.echo(
            f"Added CNAME {result['name']} which will route to this tunnel "
            f"tunnelID={result['tunnel_id']}"
            + (" (replaced the previous record)" if result["cname"] == "updated" else "")
        )


@tunnel_group.command(name="list")
@click.option("-d", "--show-deleted", is_flag=True, help="Include deleted tunnels.")
@click.option("-n", "--name", default=None, help="Only the tunnel with this name.")
@OUTPUT
@user_errors
def list_command(show_deleted: bool, name: str | None, output: str | None) -> None:
    """List tunnels: ID NAME CREATED CONNECTIONS."""
    with _session() as session:
        tunnels = session.list_tunnels(show_deleted=show_deleted, name=name)
    if output:
        _emit(tunnels, output)
        return
    if not tunnels:
        click.echo(
            "No tunnels were found for the given filter flags. You can use the -d flag "
            "to include deleted tunnels."
        )
        return
    click.echo(LIST_HINT)
    click.echo()
    rows = [("ID", "NAME", "CREATED", "CONNECTIONS")]
    for t in tunnels:
        deleted = " (deleted)" if t.get("deleted_at") else ""
        rows.append(
            (
                str(t["id"]),
                str(t["name"]) + deleted,
                str(t["created_at"]),
                colo_summary(t.get("connections") or []),
            )
        )
    click.echo(_table(rows))


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


@tunnel_group.command(name="info")
@click.argument("tunnel")
@OUTPUT
@user_errors
def info_command(tunnel: str, output: str | None) -> None:
    """Show a tunnel and its active connectors."""
    with _session() as session:
        info, clients = session.info(tunnel)
    if output:
        _emit(
            {
                "id": info["id"],
                "name": info["name"],
                "createdAt": info["created_at"],
                "deletedAt": info.get("deleted_at"),
                "conns": clients,
            },
            output,
        )
        return
    click.echo(f"NAME:     {info['name']}")
    click.echo(f"ID:       {info['id']}")
    click.echo(f"CREATED:  {info['created_at']}")
    if info.get("deleted_at"):
        click.echo(f"DELETED:  {info['deleted_at']}")
    click.echo()
    if not clients:
        click.echo(f"Your tunnel {info['id']} does not have any active connection.")
        click.echo("This tunnel has no active connectors.")
        return
    rows = [("CONNECTOR ID", "CREATED", "ARCHITECTURE", "VERSION", "ORIGIN IP", "EDGE")]
    for client in clients:
        conns = client.get("conns") or []
        origin_ips = sorted({str(c.get("origin_ip", "")) for c in conns})
        rows.append(
            (
                str(client["id"]),
                str(client.get("run_at", "")),
                str(client.get("arch", "")),
                str(client.get("version", "")),
                ", ".join(origin_ips),
                colo_summary(conns),
            )
        )
    click.echo(_table(rows))


@tunnel_group.command(name="delete")
@click.argument("tunnels", nargs=-1, required=True)
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="Delete even while the tunnel has active connections (they are closed).",
)
@click.option(
    "--credentials-file",
    "--cred-file",
    "credentials_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Credentials file to remove (default: $OUTLAST_HOME/<TunnelID>.json).",
)
@user_errors
def delete_command(tunnels: tuple[str, ...], force: bool, credentials_file: Path | None) -> None:
    """Delete tunnels (revokes their credentials) and remove the local credentials files.

    A tunnel with active connections is not deleted unless -f is given.
    """
    with _session() as session:
        for ref in tunnels:
            deleted, removed = session.delete(ref, force=force, credentials_file=credentials_file)
            click.echo(f"Deleted tunnel {deleted['name']} with id {deleted['id']}")
            if removed is not None:
                click.echo(f"Removed credentials file {removed}")


@tunnel_group.command(name="token")
@click.argument("tunnel")
@click.option(
    "--credentials-file",
    "--cred-file",
    "credentials_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the credentials file (0400) instead of printing the token.",
)
@user_errors
def token_command(tunnel: str, credentials_file: Path | None) -> None:
    """Print the tunnel's run token (it contains the tunnel secret: keep it private)."""
    with _session() as session:
        _, token = session.token(tunnel)
        endpoint = session.cert.endpoint
    if credentials_file is None:
        click.echo(token)
        return
    credentials_from_token(token, endpoint).write(credentials_file)
    click.echo(f"Tunnel credentials written to {credentials_file}")


@tunnel_group.command(name="cleanup")
@click.argument("tunnel")
@click.option("-c", "--connector-id", default=None, help="Only this connector's connections.")
@user_errors
def cleanup_command(tunnel: str, connector_id: str | None) -> None:
    """Forget stale connection records of a tunnel (live ones reappear)."""
    with _session() as session:
        result = session.cleanup(tunnel, connector_id)
    click.echo(
        f"Cleanup connection for tunnel {result['tunnel_id']}: "
        f"{result['removed']} connection records removed"
    )
