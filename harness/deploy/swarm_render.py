"""The plan as a Swarm stack file (``docker stack deploy -c FILE NAME``).

What differs from the Compose rendering, and why:

* no one-shot services: the harness makes the edge PKI, the configuration key, the admin token
  and the broker's TLS, users and ACL files (each client's credentials apart) on the host before
  deploying, and runs the bootstrap from the host against the published API;
  every generated file reaches its services as a **Swarm secret** (keys, tokens, credentials) or a
  **Swarm config** (certificates, the public key, mosquitto.conf), owned by uid 10001; a service
  gets only the files its plan names (an edge: its own key and broker credentials, never
  another's);
* every service is pinned with a placement constraint: ``node.labels.outlast.role == core``, the
  PoP's node (``node.labels.outlast.pop == <pop>``) or the connectors' node
  (``node.labels.outlast.role == connectors``); volumes are local to that node;
* ``endpoint_mode: dnsrr``: a service name resolves to its task's address (the Swarm VIP needs
  IPVS, which these kernels lack), so a rescheduled task is found under the same name;
* no ``ports``: Swarm publishes on every interface (ingress and ``mode: host`` alike), so nothing
  is published by the stack; the harness's gateway container on the manager publishes each
  port on 127.0.0.1 (see :mod:`harness.swarm.gateway`). The networks a gateway joins
  (``pub-<service>``) are attachable;
* every network is an internal overlay network, and a name outside the stack fails at once
  (``dns: [127.0.0.1]``): when a node dies its services' names stop resolving, and the
  embedded DNS would otherwise forward them to an unreachable resolver for 10 s per lookup,
  queueing every other lookup of the process behind them.
"""

from __future__ import annotations

from typing import Any

from harness.deploy.model import DeploymentPlan, Service

OFFLINE_IMAGE = "outlast:offline"
HEALTH_TIMING = {"interval": "2s", "timeout": "5s", "retries": 90, "start_period": "5s"}
ROLE_LABEL = "outlast.role"
#: Forwarder for names outside the stack: nothing listens there, so such a lookup fails at once.
NO_UPSTREAM_DNS = "127.0.0.1"
POP_LABEL = "outlast.pop"


def constraint(service: Service) -> str:
    """The placement constraint of ``service``."""
    if service.placement.startswith("pop:"):
        return f"node.labels.{POP_LABEL} == {service.placement.removeprefix('pop:')}"
    return f"node.labels.{ROLE_LABEL} == {service.placement}"


def _file_ref(name: str, target: str, uid: int, mode: int) -> dict[str, Any]:
    return {"source": name, "target": target, "uid": str(uid), "gid": str(uid), "mode": mode}


def swarm_service(
    service: Service, image: str = OFFLINE_IMAGE, file_volumes: tuple[str, ...] = ("pki", "home")
) -> dict[str, Any]:
    """One service of the stack file (``file_volumes``: the plan's, replaced by secrets and
    configs, so never mounted)."""
    spec: dict[str, Any] = {
        "image": image,
        "command": list(service.command),
        "init": True,
        "environment": {"OUTLAST_HOME": "/var/lib/outlast/home", **dict(service.environment)},
        "networks": list(service.networks),
        "deploy": {
            "mode": "replicated",
            "replicas": 1,
            "endpoint_mode": "dnsrr",
            "placement": {"constraints": [constraint(service)]},
            "restart_policy": {"condition": "any", "delay": "1s"},
            "labels": {"org.outlast.service": service.name},
        },
        "stop_grace_period": "10s",
        # Names only ever resolve inside the stack: with no reachable upstream resolver, the
        # engine's embedded DNS would spend 10 s forwarding the name of a service whose task
        # is gone (its node died), and the lookups of every healthy name would queue behind it.
        "dns": [NO_UPSTREAM_DNS],
    }
    if service.health:
        spec["healthcheck"] = {"test": ["CMD", *service.health], **HEALTH_TIMING}
    mounts = [m for m in service.mounts if m.volume not in file_volumes]
    if mounts:
        spec["volumes"] = [f"{m.volume}:{m.target}{':ro' if m.read_only else ''}" for m in mounts]
    secrets = [_file_ref(f.name, f.target, f.uid, f.mode) for f in service.files if f.secret]
    configs = [_file_ref(f.name, f.target, f.uid, f.mode) for f in service.files if not f.secret]
    if secrets:
        spec["secrets"] = secrets
    if configs:
        spec["configs"] = configs
    return spec


def render_swarm(
    plan: DeploymentPlan,
    files: dict[str, str],
    *,
    with_connectors: bool = True,
    image: str = OFFLINE_IMAGE,
) -> dict[str, Any]:
    """The stack file of ``plan``; ``files`` maps each generated file's name to its host path
    (``with_connectors=False``: the first deployment, before the bootstrap made the tunnel)."""
    services = [s for s in plan.daemons if with_connectors or not s.needs_tunnel]
    wanted = {f.name for s in services for f in s.files}
    missing = sorted(wanted - set(files))
    if missing:
        raise ValueError(f"no host file for {', '.join(missing)} (the stack file needs them)")
    used_networks = {n for s in services for n in s.networks}
    used_volumes = {
        m.volume for s in services for m in s.mounts if m.volume not in plan.file_volumes
    }
    return {
        "version": "3.8",
        "services": {s.name: swarm_service(s, image, plan.file_volumes) for s in services},
        "networks": {
            name: {
                "driver": "overlay",
                "internal": True,
                **({"attachable": True} if name.startswith("pub-") else {}),
            }
            for name in plan.networks
            if name in used_networks
        },
        "volumes": {
            name: {}
            for name in plan.volumes
            if name in used_volumes and name not in plan.file_volumes
        },
        "secrets": {
            f.name: {"file": files[f.name]} for f in plan.files if f.secret and f.name in wanted
        },
        "configs": {
            f.name: {"file": files[f.name]} for f in plan.files if not f.secret and f.name in wanted
        },
    }
