"""``outlast render compose|swarm|kubernetes [SCENARIO] -o DIR``: the deployment plan, written out.

* ``compose``: ``compose.yaml`` (the shape of ``compose/compose.yaml``, for this scenario's tunnel
  and replicas);
* ``swarm``: ``stack.yaml`` for ``docker stack deploy``, plus the generated files it names
  (``files/``: edge PKI, configuration key, admin token, the broker's TLS/users/ACL files and
  each broker client's credentials; secrets 0600);
* ``kubernetes``: one YAML file per kind of object (namespace, Secrets and ConfigMaps,
  NetworkPolicies, Services, workloads) plus the same ``files/``.

The tunnel's ``cert.pem`` and credentials file exist only after the bootstrap against a running
control plane, so the connector services are written only when ``--tunnel-files DIR`` holds
them (``cert.pem`` and ``<tunnel>.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from harness.deploy.compose_render import render_compose
from harness.deploy.files import add_tunnel_files, make_files
from harness.deploy.kubernetes_render import render_kubernetes
from harness.deploy.model import DeploymentPlan
from harness.deploy.reference_plan import PlanParameters, reference_plan
from reference.files import atomic_write


def plan_for_scenario(path: Path | None) -> DeploymentPlan:
    """The plan of a scenario's stack (its tunnel, hostname, replicas, convergence, seed)."""
    if path is None:
        return reference_plan()
    from harness.runner import topology_of
    from harness.scenario import load_scenario

    scenario = load_scenario(path)
    topology = topology_of(scenario)
    tunnel = topology.tunnels[0]
    return reference_plan(
        PlanParameters(
            tunnel=tunnel.name,
            hostname=tunnel.hostname,
            replicas=tunnel.replicas,
            convergence=topology.convergence,
            seed=scenario.seed,
            regions=tuple(r.argument() for r in topology.visitor_regions),
        )
    )


def _write_yaml(path: Path, documents: list[dict[str, Any]], mode: int = 0o644) -> None:
    text = yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False)
    atomic_write(path, text.encode(), mode=mode)


@click.command("render")
@click.argument("target", type=click.Choice(["compose", "swarm", "kubernetes"]))
@click.argument(
    "scenario", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--namespace", default="outlast", show_default=True, help="Kubernetes namespace.")
@click.option(
    "--image",
    default="outlast:offline",
    show_default=True,
    help="The Outlast image (swarm, kubernetes).",
)
@click.option(
    "--tunnel-files",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory with the bootstrap's cert.pem and <tunnel>.json.",
)
def render_command(
    target: str,
    scenario: Path | None,
    output: Path,
    namespace: str,
    image: str,
    tunnel_files: Path | None,
) -> None:
    """Write the deployment plan as a Compose file, a Swarm stack or Kubernetes manifests."""
    try:
        plan = plan_for_scenario(scenario)
    except Exception as exc:  # a scenario error names its file, line and field
        raise click.ClickException(str(exc)) from None
    output.mkdir(parents=True, exist_ok=True)
    if target == "compose":
        _write_yaml(output / "compose.yaml", [render_compose(plan)])
        click.echo(json.dumps({"written": [str(output / "compose.yaml")]}))
        return
    files = make_files(plan, output / "files")
    with_connectors = tunnel_files is not None
    if tunnel_files is not None:
        credentials = tunnel_files / f"{plan.tunnel}.json"
        origincert = tunnel_files / "cert.pem"
        for needed in (credentials, origincert):
            if not needed.is_file():
                raise click.ClickException(f"--tunnel-files: {needed} is missing")
        files = add_tunnel_files(plan, files, origincert, credentials)
    written: list[str] = []
    if target == "swarm":
        from harness.deploy.swarm_render import render_swarm

        stack = render_swarm(
            plan,
            {k: str(v.absolute()) for k, v in files.items()},
            with_connectors=with_connectors,
            image=image,
        )
        _write_yaml(output / "stack.yaml", [stack])
        written.append(str(output / "stack.yaml"))
    else:
        manifests = render_kubernetes(
            plan, files, namespace=namespace, image=image, with_connectors=with_connectors
        )
        for name, documents in manifests.items():
            path = output / f"{name}.yaml"
            secret = any(d["kind"] == "Secret" for d in documents)
            _write_yaml(path, documents, mode=0o600 if secret else 0o644)
            written.append(str(path))
    click.echo(json.dumps({"written": written, "connectors": with_connectors}))
