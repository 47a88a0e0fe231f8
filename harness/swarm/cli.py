"""``outlast swarm up | down | status``: a multi-node swarm on this machine (docs/distributed.md).

``outlast swarm gateway`` runs inside the Swarm stack's gateway container.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from harness.swarm.cluster import DEFAULT_SUBNET, SwarmCluster, SwarmError, default_workers

_STATE = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".outlast/swarm"),
    show_default=True,
    help="Where the cluster's state and the image file for the workers are kept.",
)


def _cluster(state_dir: Path, subnet: str = DEFAULT_SUBNET, timeout: float = 90.0) -> SwarmCluster:
    return SwarmCluster(
        state_dir,
        default_workers(),
        subnet=subnet,
        join_timeout=timeout,
        progress=lambda message: click.echo(f"swarm: {message}", err=True),
    )


@click.group(name="swarm")
def swarm_group() -> None:
    """A Docker Swarm of the manager ($DOCKER_HOST) and worker engines in containers."""


@swarm_group.command(name="up")
@_STATE
@click.option(
    "--subnet",
    default=DEFAULT_SUBNET,
    show_default=True,
    help="The nodes network (the manager is its first address).",
)
@click.option(
    "--timeout",
    default=90.0,
    show_default=True,
    help="Seconds a worker may take to start its engine and to join.",
)
def up_command(state_dir: Path, subnet: str, timeout: float) -> None:
    """Make the swarm: one worker per PoP and one for the connectors, labelled."""
    try:
        state = _cluster(state_dir, subnet, timeout).up()
    except SwarmError as exc:
        raise click.ClickException(f"{exc} (everything made so far was removed)") from None
    click.echo(
        json.dumps(
            {"manager": state.manager_address, "workers": state.workers, "seconds": state.seconds}
        )
    )


@swarm_group.command(name="down")
@_STATE
def down_command(state_dir: Path) -> None:
    """Remove the stacks, secrets, configs, worker nodes, their containers and volumes."""
    try:
        _cluster(state_dir).down()
    except SwarmError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"left": {}}))


@swarm_group.command(name="status")
@_STATE
def status_command(state_dir: Path) -> None:
    """Nodes with their state, availability and labels, as JSON."""
    try:
        click.echo(json.dumps(_cluster(state_dir).status(), indent=2))
    except SwarmError as exc:
        raise click.ClickException(str(exc)) from None


@swarm_group.command(name="gateway")
@click.option(
    "--forward",
    "forwards",
    multiple=True,
    required=True,
    help="tcp|udp:LISTEN_PORT=SERVICE:PORT (repeatable).",
)
def gateway_command(forwards: tuple[str, ...]) -> None:
    """Relay published ports to the stack's services (runs inside the gateway container)."""
    import asyncio
    import logging

    from harness.swarm.gateway import Forward, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        parsed = [Forward.parse(text) for text in forwards]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--forward") from None
    asyncio.run(serve(parsed))
