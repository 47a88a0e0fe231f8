"""A real multi-node Docker Swarm on one machine: ``outlast swarm up | down | status``.

The manager is the engine at ``$DOCKER_HOST``. Each worker is a Docker engine in a container of
the node image (:mod:`harness.swarm.node_image`) on a bridge network of its own
(``outlast-swarm-nodes``, bridge ``outlastsw0``), its ``/var/lib/docker`` on a volume; it joins
with ``docker swarm join`` and gets node labels: ``outlast.pop=<pop>`` for a PoP's node,
``outlast.role=connectors`` for the connectors' node; the manager is ``outlast.role=core``.
The Outlast image is loaded into every worker from one ``docker save`` file.

Worker containers get every capability but ``CAP_SYS_RESOURCE`` (not ``--privileged``: these
machines' root lacks that one capability, and ``--privileged`` asks for it), no seccomp or
AppArmor profile, and the host's cgroup tree: what an engine inside a container needs.

``down`` removes every stack, secret and config made on the swarm, the worker nodes, their
containers and volumes, the nodes network, and leaves the swarm if ``up`` created it; it then
checks that none of these is left (:meth:`SwarmCluster.leftovers`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.compose.engine import EngineError, docker_client
from harness.compose.images import OFFLINE_IMAGE
from harness.swarm.node_image import NODE_IMAGE, build_node_image

NODE_LABEL = "org.outlast.swarm"
NODES_NETWORK = "outlast-swarm-nodes"
NODES_BRIDGE = "outlastsw0"
DEFAULT_SUBNET = "10.231.7.0/24"
SWARM_PORT = 2377
IMAGES_IN_NODE = "/outlast-images"
IPTABLES_COMMENT = "outlast-swarm"
ROLE_LABEL = "outlast.role"
POP_LABEL = "outlast.pop"

Progress = Callable[[str], None]


class SwarmError(RuntimeError):
    """The swarm could not be made, used or removed; the message names the node or service."""


@dataclass(frozen=True)
class WorkerSpec:
    """One worker node: its name (also its hostname and swarm node name) and its labels."""

    name: str
    labels: dict[str, str]

    @property
    def container(self) -> str:
        return f"outlast-swarm-{self.name}"

    @property
    def volume(self) -> str:
        return f"outlast-swarm-{self.name}-docker"


def default_workers(pops: tuple[str, ...] = ("ams", "fra")) -> tuple[WorkerSpec, ...]:
    """One worker per PoP and one for the connectors (and the origin)."""
    return (
        *(WorkerSpec(f"pop-{pop}", {POP_LABEL: pop}) for pop in pops),
        WorkerSpec("connectors", {ROLE_LABEL: "connectors"}),
    )


@dataclass
class ClusterState:
    """What ``up`` made (``<state_dir>/cluster.json``), so ``down`` removes exactly that."""

    manager_address: str
    subnet: str
    swarm_created: bool
    gwbridge_created: bool
    workers: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _outlast_stack(attrs: dict[str, Any]) -> bool:
    """Whether a swarm object belongs to a stack deployed by Outlast (``outlast-...``)."""
    labels = attrs.get("Spec", {}).get("Labels") or attrs.get("Labels") or {}
    return str(labels.get("com.docker.stack.namespace", "")).startswith("outlast-")


def _run(argv: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


class SwarmCluster:
    """Make, inspect and remove the swarm (see the module docstring)."""

    def __init__(
        self,
        state_dir: Path = Path(".outlast/swarm"),
        workers: tuple[WorkerSpec, ...] | None = None,
        *,
        subnet: str = DEFAULT_SUBNET,
        join_timeout: float = 90.0,
        progress: Progress = lambda _message: None,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.workers = workers or default_workers()
        self.subnet = ipaddress.ip_network(subnet)
        self.join_timeout = join_timeout
        self.progress = progress
        self._client: Any = None

    # ------------------------------------------------------------------ helpers

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                self._client = docker_client()
            except EngineError as exc:
                raise SwarmError(str(exc)) from None
        return self._client

    @property
    def state_file(self) -> Path:
        return self.state_dir / "cluster.json"

    @property
    def manager_address(self) -> str:
        """The manager's address on the nodes network (the bridge's gateway)."""
        return str(next(self.subnet.hosts()))

    def load_state(self) -> ClusterState | None:
        """The state ``up`` wrote, or None."""
        if not self.state_file.exists():
            return None
        return ClusterState(**json.loads(self.state_file.read_text()))

    def _save_state(self, state: ClusterState) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(asdict(state), indent=2) + "\n")

    def _swarm_state(self) -> str:
        return str(self.client.info().get("Swarm", {}).get("LocalNodeState", "inactive"))

    def node_exec(self, worker: str, argv: list[str], timeout: float = 120.0) -> tuple[int, str]:
        """Run ``argv`` inside worker container ``worker`` (its name or container name)."""
        import docker.errors

        name = worker if worker.startswith("outlast-swarm-") else f"outlast-swarm-{worker}"
        try:
            container = self.client.containers.get(name)
            result = container.exec_run(argv, demux=False)
        except docker.errors.NotFound:
            raise SwarmError(f"node {worker}: no container {name} (is the swarm up?)") from None
        except docker.errors.APIError as exc:
            raise SwarmError(f"node {worker}: {exc.explanation or exc}") from None
        return int(result.exit_code), result.output.decode(errors="replace")

    def worker(self, name: str) -> WorkerSpec:
        for spec in self.workers:
            if spec.name == name:
                return spec
        raise SwarmError(
            f"no worker node {name!r} (have: {', '.join(w.name for w in self.workers)})"
        )

    def node_of(self, placement: str) -> WorkerSpec | None:
        """The worker that runs a plan placement (``pop:ams``, ``connectors``; core: None)."""
        for spec in self.workers:
            if placement.startswith("pop:") and spec.labels.get(POP_LABEL) == placement[4:]:
                return spec
            if spec.labels.get(ROLE_LABEL) == placement:
                return spec
        return None

    # ------------------------------------------------------------------ up

    def up(self) -> ClusterState:
        """Make the swarm; on failure remove what was made, then raise :class:`SwarmError`."""
        started = time.monotonic()
        try:
            return self._up(started)
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            raise

    def _up(self, started: float) -> ClusterState:
        client = self.client
        import docker.errors

        try:
            manager_image = client.images.get(OFFLINE_IMAGE)
        except docker.errors.ImageNotFound:
            raise SwarmError(
                f"the manager has no {OFFLINE_IMAGE} image: run `outlast compose build --offline` "
                "first (the swarm's workers get it from the manager)"
            ) from None
        existing = self.load_state()
        if existing is not None and self._all_ready(str(manager_image.id)):
            self.progress("the swarm is up, every worker ready with the manager's image")
            return existing
        built = build_node_image(client, self.progress)
        # An `up` over an earlier one keeps what that one created: `down` must still undo it.
        state = ClusterState(
            manager_address=self.manager_address,
            subnet=str(self.subnet),
            swarm_created=existing.swarm_created if existing else False,
            gwbridge_created=existing.gwbridge_created if existing else False,
        )
        if built is not None:
            state.seconds["node_image"] = built
        self._save_state(state)
        self._nodes_network()
        self._allow_forwarding(True)
        swarm = self._swarm_state()
        if swarm == "inactive":
            had_gwbridge = bool(client.networks.list(names=["docker_gwbridge"]))
            self.progress(f"swarm init on {self.manager_address}:{SWARM_PORT}")
            try:
                client.swarm.init(
                    advertise_addr=self.manager_address,
                    listen_addr=f"{self.manager_address}:{SWARM_PORT}",
                    data_path_addr=self.manager_address,
                )
            except docker.errors.APIError as exc:
                raise SwarmError(
                    f"manager: swarm init on {self.manager_address}:{SWARM_PORT} failed: "
                    f"{exc.explanation or exc} (is port {SWARM_PORT} in use?)"
                ) from None
            state.swarm_created = True
            state.gwbridge_created = not had_gwbridge
        elif swarm != "active":
            raise SwarmError(f"manager: the engine's swarm state is {swarm!r}; expected inactive")
        else:
            self.progress("manager: already in a swarm; joining workers to it")
        self._save_state(state)
        manager_id = str(client.info()["Swarm"]["NodeID"])
        client.api.update_node(
            manager_id,
            client.api.inspect_node(manager_id)["Version"]["Index"],
            {**client.api.inspect_node(manager_id)["Spec"], "Labels": {ROLE_LABEL: "core"}},
        )
        step = time.monotonic()
        self._save_image(manager_image)
        for spec in self.workers:
            self._start_worker(spec)
        state.workers = [{"name": w.name, "labels": w.labels} for w in self.workers]
        self._save_state(state)
        with ThreadPoolExecutor(max_workers=len(self.workers)) as pool:
            list(pool.map(self._wait_engine, self.workers))
        state.seconds["engines"] = round(time.monotonic() - step, 1)
        step = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(self.workers)) as pool:
            list(pool.map(lambda w: self._load_image(w, str(manager_image.id)), self.workers))
        state.seconds["images"] = round(time.monotonic() - step, 1)
        step = time.monotonic()
        token = str(client.swarm.attrs["JoinTokens"]["Worker"])
        for spec in self.workers:
            self._join(spec, token)
        state.seconds["join"] = round(time.monotonic() - step, 1)
        state.seconds["total"] = round(time.monotonic() - started, 1)
        self._save_state(state)
        return state

    def _all_ready(self, image_id: str) -> bool:
        """Whether every worker is a ready node holding the manager's image (``up`` is done)."""
        if self._swarm_state() != "active":
            return False
        for spec in self.workers:
            node = self._swarm_node(spec.name)
            if node is None or node["Status"]["State"] != "ready":
                return False
            try:
                self.check_image(spec.name, image_id)
            except SwarmError:
                return False
        return True

    def _nodes_network(self) -> None:
        import docker.types

        if self.client.networks.list(names=[NODES_NETWORK]):
            return
        pool = docker.types.IPAMPool(subnet=str(self.subnet), gateway=self.manager_address)
        self.client.networks.create(
            NODES_NETWORK,
            driver="bridge",
            ipam=docker.types.IPAMConfig(pool_configs=[pool]),
            options={"com.docker.network.bridge.name": NODES_BRIDGE},
            labels={NODE_LABEL: "network"},
        )

    def _allow_forwarding(self, allow: bool) -> None:
        """Let node-to-node traffic cross the host's FORWARD chain (another engine on this
        machine may have set its policy to DROP); one commented rule, removed by ``down``."""
        iptables = shutil.which("iptables")
        if iptables is None:
            return
        rule = [
            "FORWARD",
            "-i",
            NODES_BRIDGE,
            "-o",
            NODES_BRIDGE,
            "-j",
            "ACCEPT",
            "-m",
            "comment",
            "--comment",
            IPTABLES_COMMENT,
        ]
        present = _run([iptables, "-C", *rule]).returncode == 0
        if allow and not present:
            _run([iptables, "-I", *rule])
        while not allow and _run([iptables, "-C", *rule]).returncode == 0:
            _run([iptables, "-D", *rule])

    def _save_image(self, image: Any) -> None:
        images = self.state_dir / "images"
        images.mkdir(parents=True, exist_ok=True)
        target = images / "outlast.tar"
        stamp = images / "outlast.id"
        if target.exists() and stamp.exists() and stamp.read_text().strip() == image.id:
            return
        self.progress(f"docker save {OFFLINE_IMAGE} ({image.id[:19]})")
        with target.open("wb") as out:
            for chunk in image.save(named=True):
                out.write(chunk)
        stamp.write_text(f"{image.id}\n")

    def _start_worker(self, spec: WorkerSpec) -> None:
        import docker.errors

        client = self.client
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(spec.container).remove(force=True)
        self.progress(f"node {spec.name}: starting its engine")
        client.volumes.create(spec.volume, labels={NODE_LABEL: spec.name})
        api = client.api
        host_config = api.create_host_config(
            cap_add=["ALL"],
            cap_drop=["SYS_RESOURCE"],
            security_opt=["seccomp=unconfined", "apparmor=unconfined"],
            device_cgroup_rules=["a *:* rwm"],
            binds={
                spec.volume: {"bind": "/var/lib/docker", "mode": "rw"},
                "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                str(self.state_dir / "images"): {"bind": IMAGES_IN_NODE, "mode": "ro"},
            },
            network_mode=NODES_NETWORK,
        )
        # A fixed address: a node that dies and comes back must keep the one it advertised.
        networking = api.create_networking_config(
            {NODES_NETWORK: api.create_endpoint_config(ipv4_address=self.node_address(spec))}
        )
        # `--security-opt systempaths=unconfined`: the engine inside writes /proc/sys.
        host_config["MaskedPaths"] = []
        host_config["ReadonlyPaths"] = []
        created = api.create_container(
            NODE_IMAGE,
            # A node that was killed leaves its pid files behind; its next start removes them.
            [
                "sh",
                "-c",
                "rm -rf /var/run/docker.pid /var/run/docker/containerd/*.pid; "
                "exec dockerd --host unix:///var/run/docker.sock",
            ],
            name=spec.container,
            hostname=spec.name,
            detach=True,
            host_config=host_config,
            networking_config=networking,
            labels={NODE_LABEL: spec.name},
        )
        api.start(created["Id"])

    def _wait_engine(self, spec: WorkerSpec) -> None:
        deadline = time.monotonic() + self.join_timeout
        last = ""
        while time.monotonic() < deadline:
            container = self.client.containers.get(spec.container)
            if container.status == "exited":
                break
            code, out = self.node_exec(spec.name, ["docker", "info", "--format", "{{.ID}}"])
            if code == 0:
                return
            last = out.strip()
            time.sleep(0.5)
        tail = self.client.containers.get(spec.container).logs(tail=15).decode(errors="replace")
        raise SwarmError(
            f"node {spec.name}: its engine did not answer within {self.join_timeout:.0f} s "
            f"({last or 'container exited'}); its log:\n{tail}"
        )

    def _load_image(self, spec: WorkerSpec, image_id: str) -> None:
        self.progress(f"node {spec.name}: docker load {OFFLINE_IMAGE}")
        code, out = self.node_exec(
            spec.name,
            ["docker", "load", "--quiet", "--input", f"{IMAGES_IN_NODE}/outlast.tar"],
            timeout=600,
        )
        if code != 0:
            raise SwarmError(f"node {spec.name}: docker load failed: {out.strip()}")
        self.check_image(spec.name, image_id)

    def check_image(self, worker: str, image_id: str) -> None:
        """Raise unless ``worker`` holds :data:`OFFLINE_IMAGE` with id ``image_id``."""
        code, out = self.node_exec(
            worker, ["docker", "image", "inspect", "-f", "{{.Id}}", OFFLINE_IMAGE]
        )
        if code != 0:
            raise SwarmError(
                f"node {worker}: image {OFFLINE_IMAGE} is missing ({out.strip()}); "
                "`outlast swarm up` loads it into every worker"
            )
        if out.strip() != image_id:
            raise SwarmError(
                f"node {worker}: image {OFFLINE_IMAGE} is {out.strip()[:19]}, the manager's is "
                f"{image_id[:19]}: run `outlast swarm up` again to reload it"
            )

    def node_address(self, spec: WorkerSpec) -> str:
        """The worker's fixed address: the subnet's (2 + index)th host."""
        index = [w.name for w in self.workers].index(spec.name)
        return str(list(self.subnet.hosts())[1 + index])

    def _join(self, spec: WorkerSpec, token: str) -> None:
        address = self.node_address(spec)
        self.progress(f"node {spec.name}: docker swarm join ({address})")
        code, out = self.node_exec(
            spec.name,
            [
                "docker",
                "swarm",
                "join",
                "--token",
                token,
                "--advertise-addr",
                address,
                f"{self.manager_address}:{SWARM_PORT}",
            ],
            timeout=self.join_timeout,
        )
        if code != 0 and "already part of a swarm" not in out:
            raise SwarmError(f"node {spec.name} could not join the swarm: {out.strip()}")
        deadline = time.monotonic() + self.join_timeout
        while True:
            node = self._swarm_node(spec.name)
            if node is not None and node["Status"]["State"] == "ready":
                break
            if time.monotonic() > deadline:
                seen = node["Status"] if node else "not listed by the manager"
                raise SwarmError(
                    f"node {spec.name} never joined as ready within {self.join_timeout:.0f} s "
                    f"({seen})"
                )
            time.sleep(0.5)
        spec_body = dict(node["Spec"])
        spec_body["Labels"] = dict(spec.labels)
        self.client.api.update_node(node["ID"], node["Version"]["Index"], spec_body)

    def _swarm_node(self, hostname: str) -> dict[str, Any] | None:
        """The manager's record of the newest node called ``hostname``."""
        found = [n.attrs for n in self.client.nodes.list(filters={"name": hostname})]
        found = [n for n in found if n["Description"]["Hostname"] == hostname]
        found.sort(key=lambda n: str(n["CreatedAt"]))
        return found[-1] if found else None

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """Swarm state, nodes (state, availability, labels) and worker containers."""
        client = self.client
        swarm = self._swarm_state()
        nodes = []
        if swarm == "active":
            for node in client.nodes.list():
                attrs = node.attrs
                nodes.append(
                    {
                        "hostname": attrs["Description"]["Hostname"],
                        "role": attrs["Spec"]["Role"],
                        "state": attrs["Status"]["State"],
                        "availability": attrs["Spec"]["Availability"],
                        "address": attrs["Status"].get("Addr"),
                        "labels": attrs["Spec"].get("Labels", {}),
                    }
                )
        containers = {
            c.name: c.status
            for c in client.containers.list(all=True, filters={"label": NODE_LABEL})
        }
        return {"swarm": swarm, "nodes": nodes, "worker_containers": containers}

    # ------------------------------------------------------------------ down

    def down(self) -> dict[str, list[str]]:
        """Remove everything ``up`` made (see the module docstring); raise if anything stays."""
        client = self.client
        import docker.errors

        state = self.load_state()
        everything = state is None or state.swarm_created
        if self._swarm_state() == "active":
            for kind in (client.services, client.secrets, client.configs):
                for item in kind.list():
                    if everything or _outlast_stack(item.attrs):
                        with contextlib.suppress(docker.errors.APIError):
                            item.remove()
                if kind is client.services:
                    self._wait_no_tasks()
            self._remove_swarm_networks(everything)
        for container in client.containers.list(all=True, filters={"label": NODE_LABEL}):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        if self._swarm_state() == "active":
            for node in client.nodes.list():
                if node.attrs["Spec"]["Role"] != "manager":
                    with contextlib.suppress(docker.errors.APIError):
                        node.remove(force=True)
        if state is None or state.swarm_created:
            if self._swarm_state() != "inactive":
                with contextlib.suppress(docker.errors.APIError):
                    client.swarm.leave(force=True)
            if state is None or state.gwbridge_created:
                for network in client.networks.list(names=["docker_gwbridge"]):
                    with contextlib.suppress(docker.errors.APIError):
                        network.remove()
        stack_volumes = [
            v for v in client.volumes.list() if _outlast_stack({"Labels": v.attrs.get("Labels")})
        ]
        for volume in [*client.volumes.list(filters={"label": NODE_LABEL}), *stack_volumes]:
            with contextlib.suppress(docker.errors.APIError):
                volume.remove(force=True)
        for network in client.networks.list(filters={"label": NODE_LABEL}):
            with contextlib.suppress(docker.errors.APIError):
                network.remove()
        self._allow_forwarding(False)
        shutil.rmtree(self.state_dir / "images", ignore_errors=True)
        left = self.leftovers(swarm_created=state is None or state.swarm_created)
        if any(left.values()):
            raise SwarmError(f"swarm down left {left} behind")
        self.state_file.unlink(missing_ok=True)
        return left

    def _wait_no_tasks(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.client.api.tasks(filters={"desired-state": "running"}):
                return
            time.sleep(0.5)

    def _remove_swarm_networks(self, everything: bool) -> None:
        import docker.errors

        for _ in range(20):
            left = [
                n
                for n in self.client.networks.list(filters={"scope": "swarm"})
                if n.name != "ingress" and (everything or _outlast_stack(n.attrs))
            ]
            if not left:
                return
            for network in left:
                with contextlib.suppress(docker.errors.APIError):
                    network.remove()
            time.sleep(0.5)

    def leftovers(self, swarm_created: bool = True) -> dict[str, list[str]]:
        """Nodes, containers, volumes, networks, secrets and configs ``down`` should remove."""
        client = self.client
        label = {"label": NODE_LABEL}
        left: dict[str, list[str]] = {
            "containers": [c.name for c in client.containers.list(all=True, filters=label)],
            "volumes": [
                v.name
                for v in client.volumes.list()
                if (v.attrs.get("Labels") or {}).get(NODE_LABEL)
                or _outlast_stack({"Labels": v.attrs.get("Labels")})
            ],
            "networks": [n.name for n in client.networks.list(filters=label)],
            "nodes": [],
            "services": [],
            "secrets": [],
            "configs": [],
        }
        if self._swarm_state() == "active":
            left["nodes"] = [
                str(n.attrs["Description"]["Hostname"])
                for n in client.nodes.list()
                if n.attrs["Spec"]["Role"] != "manager"
            ]
            left["services"] = [s.name for s in client.services.list()]
            left["secrets"] = [s.name for s in client.secrets.list()]
            left["configs"] = [c.name for c in client.configs.list()]
            left["networks"] += [
                n.name
                for n in client.networks.list(filters={"scope": "swarm"})
                if n.name != "ingress"
            ]
            if swarm_created:
                left["swarm"] = ["the manager is still in a swarm"]
        return left
