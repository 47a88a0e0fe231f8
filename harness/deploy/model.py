"""The deployment plan: one description of the containerised stack, rendered three ways.

A :class:`DeploymentPlan` says which services run, with which image role, command, ports,
networks, volumes, files and placement. :mod:`harness.deploy.compose_render`,
:mod:`harness.deploy.swarm_render` and :mod:`harness.deploy.kubernetes_render` turn the same
plan into a Compose file, a Swarm stack file and Kubernetes manifests; none of them decides
*what* runs, only how their orchestrator spells it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: Which image a service runs: the Outlast image, the fault proxy (the Toxiproxy image online,
#: ``outlast serve faultproxy`` offline), or the MQTT broker (eclipse-mosquitto online,
#: Debian's mosquitto in the Outlast image offline).
ImageRole = Literal["outlast", "faultproxy", "broker"]
#: Where a service may run on a multi-node cluster: the core node(s), one PoP's node, or the
#: connectors' node.
Placement = Literal["core", "connectors"] | str
Protocol = Literal["tcp", "udp"]
Condition = Literal["service_started", "service_healthy", "service_completed_successfully"]


@dataclass(frozen=True)
class Port:
    """A container port the host may reach (published on 127.0.0.1 only, in every rendering)."""

    name: str
    container: int
    #: The Compose variable holding the host port, and its default.
    variable: str
    default_host: int
    protocols: tuple[Protocol, ...] = ("tcp",)


@dataclass(frozen=True)
class Mount:
    """A named volume mounted into a service."""

    volume: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class FileMount:
    """A generated file a service reads (a secret or a config in Swarm and Kubernetes; in
    Compose the one-shot steps write it into a shared volume instead)."""

    name: str
    target: str
    secret: bool
    #: Owner and mode inside the container (the Outlast image runs as uid 10001).
    uid: int = 10001
    mode: int = 0o400


@dataclass(frozen=True)
class Service:
    """One service of the stack."""

    name: str
    image: ImageRole
    command: tuple[str, ...]
    networks: tuple[str, ...]
    placement: Placement = "core"
    ports: tuple[Port, ...] = ()
    mounts: tuple[Mount, ...] = ()
    files: tuple[FileMount, ...] = ()
    #: argv run inside the container; exit 0 = healthy.
    health: tuple[str, ...] | None = None
    depends_on: tuple[tuple[str, Condition], ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    #: A step that runs once and exits (Compose only: Swarm and Kubernetes get its results as
    #: secrets and configs made by the harness).
    one_shot: bool = False
    #: Whether the service needs the tunnel's credentials (deployed after the bootstrap).
    needs_tunnel: bool = False


@dataclass(frozen=True)
class GeneratedFile:
    """A file the stack needs that is made before (or during) deployment."""

    name: str
    secret: bool
    description: str


@dataclass(frozen=True)
class DeploymentPlan:
    """Everything a renderer needs (see the module docstring)."""

    services: tuple[Service, ...]
    #: Network name -> internal (no route out of it).
    networks: dict[str, bool]
    volumes: tuple[str, ...]
    #: Volumes that only carry files the one-shot steps write (replaced by secrets/configs
    #: outside Compose).
    file_volumes: tuple[str, ...]
    files: tuple[GeneratedFile, ...]
    tunnel: str
    hostname: str
    pops: tuple[str, ...]
    connector_replicas: int = 1
    labels: dict[str, str] = field(default_factory=dict)

    def service(self, name: str) -> Service:
        """The service called ``name`` (``KeyError`` names the known ones)."""
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(f"no service {name!r} (have: {', '.join(s.name for s in self.services)})")

    @property
    def daemons(self) -> tuple[Service, ...]:
        """The long-running services (what an orchestrator keeps running)."""
        return tuple(s for s in self.services if not s.one_shot)

    def file(self, name: str) -> GeneratedFile:
        """The generated file called ``name``."""
        for generated in self.files:
            if generated.name == name:
                return generated
        raise KeyError(f"no generated file {name!r}")
