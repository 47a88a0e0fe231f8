"""The plan as a Compose file (the shape of ``compose/compose.yaml``, online images).

The one-shot ``setup`` and ``bootstrap`` services write the generated files into the shared
``pki`` and ``home`` volumes, so a service's :class:`FileMount` s are not rendered here (its volume
mounts carry them); the broker's configuration is a bind mount of
``compose/mosquitto/mosquitto.conf``. Ports are published as ``127.0.0.1:${VAR:-default}:PORT``.
"""

from __future__ import annotations

from typing import Any

from harness.deploy.model import DeploymentPlan, Service
from harness.deploy.reference_plan import MOSQUITTO_CONF

TOXIPROXY_IMAGE = "ghcr.io/shopify/toxiproxy:2.9.0"
MOSQUITTO_IMAGE = "eclipse-mosquitto:2.0.20"
OUTLAST_IMAGE = "${OUTLAST_IMAGE:-outlast:local}"
#: Files that are part of the source tree, bind-mounted (relative to ``compose/``).
BIND_FILES = {MOSQUITTO_CONF: "./mosquitto/mosquitto.conf"}
HEALTH_TIMING = {"interval": "2s", "timeout": "5s", "retries": 90}


def _image(service: Service) -> dict[str, Any]:
    if service.image == "faultproxy":
        return {"image": TOXIPROXY_IMAGE}
    if service.image == "broker":
        return {"image": MOSQUITTO_IMAGE}
    return {
        "image": OUTLAST_IMAGE,
        "build": {"context": "..", "dockerfile": "compose/Dockerfile"},
        "init": True,
        "environment": {"OUTLAST_HOME": "/var/lib/outlast/home"},
    }


def _command(service: Service, seed: str) -> list[str] | None:
    if service.image == "faultproxy":  # the Toxiproxy image's own flags
        return ["-host=0.0.0.0", "-port=8474", f"-seed={seed}"]
    if service.image == "broker":  # the mosquitto image's own command reads the same file
        return None
    return list(service.command)


def _health(service: Service) -> list[str] | None:
    if service.image == "faultproxy":
        return ["CMD", "/toxiproxy-cli", "list"]  # the image has no shell, no Python
    if service.image == "broker":
        return [
            "CMD",
            "mosquitto_sub",
            "-h",
            "localhost",  # the name in the broker's TLS certificate
            "-p",
            "1883",
            "-t",
            "$$SYS/broker/uptime",
            "-C",
            "1",
            "-W",
            "3",
        ]
    return ["CMD", *service.health] if service.health else None


def compose_service(service: Service, seed: str = "0") -> dict[str, Any]:
    """One service of the Compose file."""
    spec: dict[str, Any] = _image(service)
    command = _command(service, seed)
    if command is not None:
        spec["command"] = command
    if service.environment:
        spec["environment"] = {**spec.get("environment", {}), **dict(service.environment)}
    if service.one_shot:
        spec["restart"] = "no"
    if service.depends_on:
        spec["depends_on"] = {name: {"condition": cond} for name, cond in service.depends_on}
    health = _health(service)
    if health:
        spec["healthcheck"] = {"test": health, **HEALTH_TIMING}
    volumes = [f"{BIND_FILES[f.name]}:{f.target}:ro" for f in service.files if f.name in BIND_FILES]
    volumes += [f"{m.volume}:{m.target}{':ro' if m.read_only else ''}" for m in service.mounts]
    if volumes:
        spec["volumes"] = volumes
    ports = [
        f"127.0.0.1:${{{port.variable}:-{port.default_host}}}:{port.container}"
        + ("" if port.protocols == ("tcp",) else f"/{protocol}")
        for port in service.ports
        for protocol in port.protocols
    ]
    if ports:
        spec["ports"] = ports
    spec["networks"] = list(service.networks)
    return spec


def render_compose(plan: DeploymentPlan, seed: str = "${OUTLAST_SEED:-0}") -> dict[str, Any]:
    """The Compose file of ``plan`` (a dict ready for YAML)."""
    return {
        "name": "outlast",
        "services": {s.name: compose_service(s, seed) for s in plan.services},
        "networks": {
            name: ({"internal": True} if internal else None)
            for name, internal in plan.networks.items()
        },
        "volumes": {name: None for name in plan.volumes},
    }
