"""``outlast compose ...``: build the images, and the one-shot steps the Compose file runs.

outlast compose build --offline      # base image (mmdebstrap), host wheels, outlast:offline
outlast compose build                # online: `docker compose build` of compose/compose.yaml
outlast compose setup ...            # inside the `setup` service: edge PKI + POST /populate
outlast compose bootstrap ...        # inside the `bootstrap` service: account, tunnel, route
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

from harness.compose.engine import EngineError, compose_command, repo_root


@click.group(name="compose")
def compose_group() -> None:
    """Docker Compose stack: build images, and the steps its one-shot services run."""


@compose_group.command(name="build")
@click.option("--offline", is_flag=True, help="Build without any registry (see docs/compose.md).")
@click.option("--rebuild-base", is_flag=True, help="Rebuild the mmdebstrap base image too.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".outlast/compose"),
    show_default=True,
    help="Where host-built wheels are kept between builds.",
)
def build_command(offline: bool, rebuild_base: bool, cache_dir: Path) -> None:
    """Build the Outlast image (and, offline, the Debian base image)."""
    try:
        source = repo_root()
        if not offline:
            argv = [*compose_command(), "-f", str(source / "compose" / "compose.yaml"), "build"]
            sys.exit(subprocess.run(argv, check=False).returncode)
        from harness.compose.images import build_offline

        report = build_offline(
            source,
            cache_dir.absolute(),
            rebuild_base=rebuild_base,
            progress=lambda message: click.echo(f"compose build: {message}", err=True),
        )
    except EngineError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report.as_dict()))


@compose_group.command(name="setup")
@click.option("--faultproxy", required=True, help="Fault proxy API URL (Toxiproxy-compatible).")
@click.option(
    "--pki-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where the edge CA and edge certificates are written (kept if present).",
)
@click.option(
    "--signing-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The control plane's configuration key (created if missing); its public half is "
    "written to PKI_DIR/config-signing.pub for the edges.",
)
@click.option(
    "--broker-auth-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the broker's users, ACLs and TLS files (subdirectory broker/) and each "
    "client's credentials and the broker CA (one subdirectory per client) are written "
    "(kept if present).",
)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the proxy.")
def setup_command(
    faultproxy: str,
    pki_dir: Path,
    signing_key: Path | None,
    broker_auth_dir: Path | None,
    timeout: float,
) -> None:
    """Write the edges' certificates and the broker's users and TLS files, and create every
    fault-proxy link (one-shot)."""
    from harness.compose.steps import StepError, setup

    try:
        result = setup(faultproxy.rstrip("/"), pki_dir, timeout, signing_key, broker_auth_dir)
    except StepError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(result))


@compose_group.command(name="bootstrap")
@click.option("--api", required=True, help="Control plane URL (through the connector-api link).")
@click.option("--admin-token-file", type=click.Path(path_type=Path), required=True)
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--account", envvar="OUTLAST_ACCOUNT", default="outlast-demo", show_default=True)
@click.option("--zone", envvar="OUTLAST_ZONE", default="example.com", show_default=True)
@click.option("--email", envvar="OUTLAST_EMAIL", default="sre@example.com", show_default=True)
@click.option("--tunnel", envvar="OUTLAST_TUNNEL", default="web", show_default=True)
@click.option("--hostname", envvar="OUTLAST_HOSTNAME", default="app.example.com", show_default=True)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the API.")
def bootstrap_command(
    api: str,
    admin_token_file: Path,
    home: Path,
    account: str,
    zone: str,
    email: str,
    tunnel: str,
    hostname: str,
    timeout: float,
) -> None:
    """Create account, zone, user, cert.pem, the tunnel and its DNS route (one-shot, idempotent)."""
    from harness.compose.steps import BootstrapSpec, StepError, bootstrap

    spec = BootstrapSpec(
        api=api.rstrip("/"),
        admin_token_file=admin_token_file,
        home=home,
        account=account,
        zone=zone,
        email=email,
        tunnel=tunnel,
        hostname=hostname,
    )
    try:
        record = bootstrap(spec, timeout)
    except StepError as exc:
        raise click.ClickException(str(exc)) from None
    # The API token stays in bootstrap.json (0600); only the identifiers are printed.
    click.echo(json.dumps({k: v for k, v in record.items() if k != "api_token"}))
