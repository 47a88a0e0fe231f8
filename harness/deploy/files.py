"""The generated files of a deployment, made on the host before Swarm or Kubernetes deploys.

Compose's one-shot ``setup`` service makes the same files inside the ``pki`` and broker-auth
volumes (:func:`harness.compose.steps.write_broker_auth`: the broker's TLS, users and ACL files,
and each broker client's credentials); outside Compose the harness makes them here (secrets
0600) and hands them to the orchestrator as secrets and configs, each service only its own.
The tunnel's ``cert.pem`` and credentials file come later, from the bootstrap
(:func:`add_tunnel_files`).
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from harness.compose import plan as shape
from harness.compose.engine import repo_root
from harness.compose.steps import write_broker_auth, write_pki
from harness.deploy import reference_plan as names
from harness.deploy.model import DeploymentPlan
from reference.config_signing import load_or_create_signing_key
from reference.files import atomic_write


def make_files(plan: DeploymentPlan, directory: Path) -> dict[str, Path]:
    """Write (or keep) every file that does not need the running stack; name -> path."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki = directory / "pki"
    write_pki(pki, plan.pops)
    broker_auth = directory / "broker-auth"  # secrets 0600 (write_broker_auth), inside 0700
    broker_auth.mkdir(mode=0o700, exist_ok=True)
    write_broker_auth(broker_auth, plan.pops)
    signing = directory / "config-signing.key"
    load_or_create_signing_key(signing, directory / "config-signing.pub")
    token = directory / "admin.token"
    if not token.exists():
        atomic_write(token, (secrets.token_urlsafe(32) + "\n").encode(), mode=0o600)
    conf = directory / "mosquitto.conf"
    shutil.copyfile(repo_root() / "compose" / "mosquitto" / "mosquitto.conf", conf)
    files = {
        names.EDGE_CA: pki / "edge-ca.pem",
        names.SIGNING_KEY: signing,
        names.SIGNING_PUB: directory / "config-signing.pub",
        names.ADMIN_TOKEN: token,
        names.MOSQUITTO_CONF: conf,
    }
    for name, (path, _secret) in names.BROKER_FILES.items():
        files[name] = broker_auth / "broker" / path
    for client in shape.broker_clients():
        files[names.broker_credentials(client)] = (
            broker_auth / client / shape.BROKER_CREDENTIALS_FILE
        )
    for pop in plan.pops:
        files[names.edge_cert(pop)] = pki / f"edge-{pop}.pem"
        files[names.edge_key(pop)] = pki / f"edge-{pop}.key"
    return files


def add_tunnel_files(
    plan: DeploymentPlan, files: dict[str, Path], origincert: Path, credentials: Path
) -> dict[str, Path]:
    """``files`` plus the bootstrap's ``cert.pem`` and the tunnel's credentials file."""
    return {
        **files,
        names.ORIGINCERT: origincert,
        names.tunnel_credentials(plan.tunnel): credentials,
    }
