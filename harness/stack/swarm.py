"""The Swarm stack: the reference system as a ``docker stack`` spread over the swarm's nodes.

    outlast swarm up
    async with SwarmStack(state_dir, topology) as stack: ...

``up``:

1. checks the swarm (`outlast swarm up`): every labelled node ready, the Outlast image on each;
2. makes the generated files on the host (:mod:`harness.deploy.files`) and deploys the Swarm
   rendering of the plan without the connectors (``docker stack deploy``): secrets and configs
   are Swarm secrets and configs, each service pinned to its node;
3. starts the gateway container on the manager (:mod:`harness.swarm.gateway`), the only thing
   that publishes ports, on 127.0.0.1; creates the fault-proxy links through it;
4. bootstraps from the host against the published API (account, zone, tunnel, route), adds
   ``cert.pem`` and the tunnel credentials as Swarm secrets, and deploys the stack again with
   the connectors; returns once visitors are served through every PoP and the anycast entry.

Same ``endpoints()`` shape as the Compose backend (``"backend": "swarm"``, ``project`` is the
stack name, ``node`` per component). ``stop``/``start`` scale a service to 0/1 replicas,
``kill`` SIGKILLs the task's container and scales to 0, ``pause``/``resume`` freeze the task's
container on its node; the orchestrator faults (:mod:`harness.faults.swarm`) act on nodes and tasks.
``down`` removes the stack (services, networks, secrets, configs), the gateway and the stack's
volumes on every node, and raises if any of them is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from harness.compose import plan as shape
from harness.compose.images import OFFLINE_IMAGE
from harness.compose.steps import BootstrapSpec, StepError, bootstrap, populate
from harness.deploy.files import add_tunnel_files, make_files
from harness.deploy.model import DeploymentPlan
from harness.deploy.swarm_render import NO_UPSTREAM_DNS, render_swarm
from harness.stack.base import StackError
from harness.stack.compose import ComposeStack
from harness.stack.readiness import wait_http
from harness.stack.topology import Topology
from harness.swarm.cluster import NODE_LABEL, SwarmCluster, SwarmError
from harness.swarm.gateway import Forward
from reference.files import atomic_write

STACK_LABEL = "com.docker.stack.namespace"
GATEWAY_NETWORK = "outlast-swarm-gateway"
GATEWAY_FIRST_PORT = 30000


def _docker_cli() -> str:
    docker = shutil.which("docker")
    if docker is None:
        raise StackError(
            "the docker CLI is missing (`docker stack deploy`): apt-get install docker.io"
        )
    return docker


def _docker(*argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """The docker CLI of the manager with ``argv``; the caller judges the exit code."""
    return subprocess.run(
        [_docker_cli(), *argv], capture_output=True, text=True, timeout=timeout, check=False
    )


class SwarmStack(ComposeStack):
    """The reference system as a Swarm stack (see the module docstring)."""

    def __init__(
        self,
        state_dir: Path,
        topology: Topology | None = None,
        *,
        seed: int = 0,
        connector_args: tuple[str, ...] = (),
        cluster: SwarmCluster | None = None,
        project: str | None = None,
        ready_timeout: float = 240.0,
    ) -> None:
        super().__init__(
            state_dir,
            topology,
            seed=seed,
            connector_args=connector_args,
            offline=True,
            project=project or f"outlast-{secrets.token_hex(4)}",
            ready_timeout=ready_timeout,
        )
        self.cluster = cluster or SwarmCluster(
            Path(os.environ.get("OUTLAST_SWARM_STATE", ".outlast/swarm"))
        )
        self.plan: DeploymentPlan = self._deployment_plan(seed, connector_args)
        self._deployed = False

    # ----------------------------------------------------------------- names

    @property
    def gateway_name(self) -> str:
        return f"{self.project}-gateway"

    def _swarm_service(self, component: str) -> str:
        return f"{self.project}_{self._service(component)}"

    def _port_key(self, service: str, port: str) -> str:
        if service == shape.FAULTPROXY_SERVICE:
            return "faultproxy"
        if service == "controlplane":
            return "controlplane"
        if service == "origin":
            return "origin"
        if service.startswith("connector"):
            replica = 1 if service == "connector" else int(service.removeprefix("connector-"))
            component = self.tunnel.connectors[replica - 1]
            return self._metrics_port_key(component)
        return f"{service}-{port}"

    def _forwards(self) -> list[tuple[str, Forward]]:
        """(port key, relay) for every published port of the plan."""
        forwards: list[tuple[str, Forward]] = []
        listen = GATEWAY_FIRST_PORT
        for service in self.plan.daemons:
            for port in service.ports:
                for protocol in port.protocols:
                    forwards.append(
                        (
                            self._port_key(service.name, port.name),
                            Forward(protocol, listen, service.name, port.container),
                        )
                    )
                listen += 1
        return forwards

    def endpoints(self) -> dict[str, Any]:
        data = super().endpoints()
        data["backend"] = "swarm"
        data["offline"] = True
        data["gateway"] = self.gateway_name
        for name, component in data["components"].items():
            component["service"] = self._swarm_service(name)
            component["container"] = None
            component["node"] = self._node_name(self._service(name))
        return data

    def _node_name(self, service: str) -> str:
        placement = self.plan.service(service).placement
        worker = self.cluster.node_of(placement)
        return worker.name if worker else "manager"

    # ----------------------------------------------------------------- lifecycle

    async def _start_all(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(mode=0o700, exist_ok=True)
        await asyncio.to_thread(self._check_cluster)
        # A fresh control plane: an earlier run's bootstrap record names tokens it never made.
        shutil.rmtree(self.state_dir / "bootstrap-home", ignore_errors=True)
        files = await asyncio.to_thread(make_files, self.plan, self.state_dir / "swarm-files")
        self._adopt_host_files(files)
        self._compose_started = True  # down() must run from here on
        self._allocate_ports()
        await asyncio.to_thread(self._deploy, {k: str(v) for k, v in files.items()}, False)
        await asyncio.to_thread(self._start_gateway)
        await self._populate()
        await wait_http(f"{self.api_url}/health", timeout=self.ready_timeout)
        record = await asyncio.to_thread(self._bootstrap)
        boot_home = self.state_dir / "bootstrap-home"
        credentials = boot_home / f"{self.tunnel.name}.json"
        self._adopt_bootstrap(record, credentials.read_bytes())
        full = add_tunnel_files(self.plan, files, boot_home / "cert.pem", credentials)
        await asyncio.to_thread(self._deploy, {k: str(v) for k, v in full.items()}, True)
        await asyncio.to_thread(self._connect_gateway)
        for name in self.topology.components:
            self.running[name] = True
        await self._login_on_host()
        await self.wait_serving()

    def _check_cluster(self) -> None:
        try:
            status = self.cluster.status()
        except SwarmError as exc:
            raise StackError(str(exc)) from None
        if status["swarm"] != "active":
            raise StackError("this engine is not a swarm manager: run `outlast swarm up` first")
        image = self.cluster.client.images.get(OFFLINE_IMAGE)
        for service in self.plan.daemons:
            worker = self.cluster.node_of(service.placement)
            if service.placement != "core" and worker is None:
                raise StackError(
                    f"service {service.name}: no node for placement {service.placement}"
                )
            if worker is None:
                continue
            node = next((n for n in status["nodes"] if n["hostname"] == worker.name), None)
            if node is None or node["state"] != "ready":
                seen = node["state"] if node else "not in the swarm"
                raise StackError(
                    f"service {service.name}: its node {worker.name} is {seen}: "
                    "run `outlast swarm up`"
                )
            try:
                self.cluster.check_image(worker.name, str(image.id))
            except SwarmError as exc:
                raise StackError(f"service {service.name}: {exc}") from None

    def _deploy(self, files: dict[str, str], with_connectors: bool) -> None:
        stack = render_swarm(self.plan, files, with_connectors=with_connectors)
        path = self.state_dir / ("stack.yaml" if with_connectors else "stack.core.yaml")
        atomic_write(path, yaml.safe_dump(stack, sort_keys=False).encode())
        done = _docker(
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "--prune",
            "-c",
            str(path),
            self.project,
            timeout=300,
        )
        if done.returncode != 0:
            raise StackError(f"docker stack deploy {self.project} failed: {done.stderr.strip()}")
        self._deployed = True

    def _start_gateway(self) -> None:
        import docker.errors

        client = self.cluster.client
        if not client.networks.list(names=[GATEWAY_NETWORK]):
            client.networks.create(GATEWAY_NETWORK, driver="bridge", labels={NODE_LABEL: "gateway"})
        forwards = self._forwards()
        ports: dict[str, tuple[str, int]] = {}
        for key, forward in forwards:
            ports[f"{forward.listen_port}/{forward.protocol}"] = ("127.0.0.1", self.ports[key])
        command = ["outlast", "swarm", "gateway"]
        for _, forward in forwards:
            command += ["--forward", forward.argument()]
        try:
            container = client.containers.create(
                OFFLINE_IMAGE,
                command,
                name=self.gateway_name,
                detach=True,
                init=True,
                dns=[NO_UPSTREAM_DNS],
                network=GATEWAY_NETWORK,
                ports=ports,
                labels={STACK_LABEL: self.project, NODE_LABEL: "gateway"},
            )
        except docker.errors.APIError as exc:
            raise StackError(f"gateway {self.gateway_name}: {exc.explanation or exc}") from None
        for network in self._pub_networks(with_connectors=False):
            self._connect(network, container)
        try:
            container.start()
        except docker.errors.APIError as exc:
            raise StackError(
                f"gateway {self.gateway_name} could not publish its ports on 127.0.0.1 "
                f"({exc.explanation or exc}): a port already used?"
            ) from None

    def _pub_networks(self, with_connectors: bool) -> list[str]:
        return [
            f"{self.project}_{n}"
            for s in self.plan.daemons
            if with_connectors or not s.needs_tunnel
            for n in s.networks
            if n.startswith("pub-")
        ]

    def _connect(self, network: str, container: Any) -> None:
        import docker.errors

        deadline = time.monotonic() + 30
        while True:
            try:
                self.cluster.client.networks.get(network).connect(container)
                return
            except docker.errors.APIError as exc:
                if "already" in str(exc):
                    return
                if time.monotonic() > deadline:
                    raise StackError(f"gateway: cannot join {network}: {exc}") from None
            time.sleep(0.5)

    def _connect_gateway(self) -> None:
        container = self.cluster.client.containers.get(self.gateway_name)
        core = set(self._pub_networks(with_connectors=False))
        for network in self._pub_networks(with_connectors=True):
            if network not in core:
                self._connect(network, container)

    async def _populate(self) -> None:
        try:
            await asyncio.to_thread(populate, self.faultproxy_url, self.ready_timeout)
        except StepError as exc:
            raise StackError(f"service toxiproxy: {exc}") from None

    def _bootstrap(self) -> dict[str, Any]:
        topo = self.topology
        spec = BootstrapSpec(
            api=self.api_url,
            admin_token_file=self.admin_token_file,
            home=self.state_dir / "bootstrap-home",
            account=topo.account,
            zone=topo.zone,
            email=topo.email,
            tunnel=self.tunnel.name,
            hostname=self.tunnel.hostname,
        )
        try:
            return bootstrap(spec, timeout=self.ready_timeout)
        except StepError as exc:
            raise StackError(f"bootstrap through the gateway failed: {exc}") from None

    async def down(self) -> None:
        """Remove the stack, the gateway and the stack's volumes on every node; check."""
        if not self._compose_started:
            return
        await asyncio.to_thread(self._save_logs)
        left = await asyncio.to_thread(self._remove_all)
        self._compose_started = False
        self.running = {}
        if any(left.values()):
            raise StackError(f"swarm stack {self.project} left {left} behind")

    def _save_logs(self) -> None:
        """Each component's running task log, read on its node (``docker service logs`` can
        hang on a node that went away)."""
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for name in self.topology.components:
            try:
                worker, container = self.task_container(name)
                if worker is None:
                    raw = self.cluster.client.containers.get(container).logs(timestamps=True)
                    text = raw.decode(errors="replace")
                else:
                    _code, text = self.cluster.node_exec(
                        worker, ["docker", "logs", "--timestamps", container], timeout=20
                    )
            except Exception as exc:  # a log is a courtesy; teardown must go on
                text = f"could not read the log: {exc}\n"
            (logs / f"{name}.log").write_text(text)
        with contextlib.suppress(Exception):
            gateway = self.cluster.client.containers.get(self.gateway_name)
            (logs / "gateway.log").write_bytes(gateway.logs(timestamps=True))

    def _remove_all(self) -> dict[str, list[str]]:
        import docker.errors

        client = self.cluster.client
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(self.gateway_name).remove(force=True)
        _docker("stack", "rm", self.project, timeout=120)
        label = {"label": f"{STACK_LABEL}={self.project}"}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and any(self.leftovers(volumes=False).values()):
            for network in client.networks.list(filters=label):  # once their tasks are gone
                with contextlib.suppress(docker.errors.APIError):
                    network.remove()
            time.sleep(1)
        for worker in self.cluster.workers:
            with contextlib.suppress(SwarmError):
                self._node_volumes(worker.name, remove=True)
        for _ in range(20):  # the manager's own tasks' volumes
            volumes = client.volumes.list(filters=label)
            if not volumes:
                break
            for volume in volumes:
                with contextlib.suppress(docker.errors.APIError):
                    volume.remove(force=True)
            time.sleep(0.5)
        return self.leftovers()

    def _node_volumes(self, worker: str, remove: bool = False) -> list[str]:
        code, out = self.cluster.node_exec(
            worker,
            ["docker", "volume", "ls", "-q", "--filter", f"label={STACK_LABEL}={self.project}"],
        )
        names = out.split() if code == 0 else []
        if remove:
            for name in names:
                for _ in range(20):  # a task's container may still be going away
                    code, _out = self.cluster.node_exec(
                        worker, ["docker", "volume", "rm", "-f", name]
                    )
                    if code == 0:
                        break
                    time.sleep(0.5)
            return self._node_volumes(worker)
        return [f"{worker}:{n}" for n in names]

    def leftovers(self, volumes: bool = True) -> dict[str, list[str]]:
        """Services, networks, secrets, configs, the gateway and node volumes still there."""
        client = self.cluster.client
        label = {"label": f"{STACK_LABEL}={self.project}"}
        left = {
            "services": [s.name for s in client.services.list(filters=label)],
            "secrets": [s.name for s in client.secrets.list(filters=label)],
            "configs": [c.name for c in client.configs.list(filters=label)],
            "networks": [n.name for n in client.networks.list(filters=label)],
            "containers": [c.name for c in client.containers.list(all=True, filters=label)],
            "volumes": [f"manager:{v.name}" for v in client.volumes.list(filters=label)],
        }
        if volumes:
            for worker in self.cluster.workers:
                with contextlib.suppress(SwarmError):
                    left["volumes"] += self._node_volumes(worker.name)
        return left

    # ----------------------------------------------------------------- component control

    def task_container(self, component: str) -> tuple[str | None, str]:
        """(worker name or None for the manager, container id) of ``component``'s running task."""
        client = self.cluster.client
        service = self._swarm_service(component)
        tasks = client.api.tasks(filters={"service": service, "desired-state": "running"})
        running = [t for t in tasks if t["Status"].get("ContainerStatus", {}).get("ContainerID")]
        if not running:
            raise StackError(f"service {service} has no running task")
        task = running[0]
        node = client.api.inspect_node(task["NodeID"])
        hostname = str(node["Description"]["Hostname"])
        container = str(task["Status"]["ContainerStatus"]["ContainerID"])
        role = node["Spec"]["Role"]
        return (None if role == "manager" else hostname), container

    def _container_command(self, component: str, *argv: str) -> None:
        worker, container = self.task_container(component)
        if worker is None:
            done = _docker(*argv, container, timeout=60)
            code, out = done.returncode, done.stderr
        else:
            code, out = self.cluster.node_exec(worker, ["docker", *argv, container])
        if code != 0:
            raise StackError(f"docker {' '.join(argv)} {component} failed: {out.strip()}")

    def scale(self, component: str, replicas: int) -> None:
        """``docker service scale`` (detached): Swarm starts or stops the task."""
        done = _docker(
            "service",
            "scale",
            "--detach",
            f"{self._swarm_service(component)}={replicas}",
            timeout=60,
        )
        if done.returncode != 0:
            raise StackError(f"scaling {component} to {replicas} failed: {done.stderr.strip()}")

    async def stop(self, component: str) -> None:
        await asyncio.to_thread(self.scale, component, 0)
        self.running[component] = False

    async def kill(self, component: str) -> None:
        await asyncio.to_thread(self._container_command, component, "kill")
        await asyncio.to_thread(self.scale, component, 0)
        self.running[component] = False

    async def start(self, component: str) -> None:
        await asyncio.to_thread(self.scale, component, 1)
        self.running[component] = True

    async def restart(self, component: str) -> None:
        await self.stop(component)
        await self.start(component)

    async def pause(self, component: str) -> None:
        await asyncio.to_thread(self._container_command, component, "pause")

    async def resume(self, component: str) -> None:
        await asyncio.to_thread(self._container_command, component, "unpause")

    async def exec_in(self, component: str, argv: list[str]) -> tuple[int, str]:
        worker, container = await asyncio.to_thread(self.task_container, component)
        if worker is None:
            result = await asyncio.to_thread(
                self.cluster.client.containers.get(container).exec_run, argv
            )
            return int(result.exit_code), result.output.decode(errors="replace")
        return await asyncio.to_thread(
            self.cluster.node_exec, worker, ["docker", "exec", container, *argv]
        )

    async def container_status(self, component: str) -> str:
        service = self._swarm_service(component)
        tasks = await asyncio.to_thread(
            self.cluster.client.api.tasks, {"service": service, "desired-state": "running"}
        )
        return str(tasks[0]["Status"]["State"]) if tasks else "none"

    # ----------------------------------------------------------------- orchestrator faults

    def _worker_container(self, node: str) -> Any:
        import docker.errors

        spec = self.cluster.worker(node)
        try:
            return self.cluster.client.containers.get(spec.container)
        except docker.errors.NotFound:
            raise StackError(f"node {node}: no container {spec.container} (swarm up?)") from None

    async def node_down(self, node: str) -> None:
        """Kill node ``node``'s engine container: the node and every task on it vanish."""
        container = await asyncio.to_thread(self._worker_container, node)
        await asyncio.to_thread(container.kill)

    async def node_up(self, node: str) -> None:
        """Start the node's engine again and wait until the manager sees it ready."""
        container = await asyncio.to_thread(self._worker_container, node)
        await asyncio.to_thread(container.start)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            status = await asyncio.to_thread(self.cluster.status)
            states = {n["hostname"]: n["state"] for n in status["nodes"]}
            if states.get(node) == "ready":
                return
            if time.monotonic() > deadline:
                raise StackError(f"node {node} did not come back ready ({states.get(node)})")
            await asyncio.sleep(0.5)

    async def node_availability(self, node: str, availability: str) -> None:
        """``docker node update --availability active|pause|drain``."""

        def update() -> None:
            found = self.cluster._swarm_node(node)
            if found is None:
                raise StackError(f"node {node} is not in the swarm")
            body = dict(found["Spec"])
            body["Availability"] = availability
            self.cluster.client.api.update_node(found["ID"], found["Version"]["Index"], body)

        await asyncio.to_thread(update)

    async def task_kill(self, component: str) -> None:
        """SIGKILL the running task of ``component``; Swarm starts a new one."""
        await asyncio.to_thread(self._container_command, component, "kill")

    async def partition(self, node: str, cut: bool) -> None:
        """Drop (``cut``) or allow again every packet between ``node`` and the other nodes."""
        subnet = str(self.cluster.subnet)
        rules = [
            [
                "INPUT",
                "-s",
                subnet,
                "-j",
                "DROP",
                "-m",
                "comment",
                "--comment",
                "outlast-partition",
            ],
            [
                "OUTPUT",
                "-d",
                subnet,
                "-j",
                "DROP",
                "-m",
                "comment",
                "--comment",
                "outlast-partition",
            ],
        ]
        for rule in rules:
            if cut:
                code, out = await asyncio.to_thread(
                    self.cluster.node_exec, node, ["iptables", "-I", *rule]
                )
                if code != 0:
                    raise StackError(f"node {node}: iptables failed: {out.strip()}")
            else:
                while (
                    await asyncio.to_thread(self.cluster.node_exec, node, ["iptables", "-D", *rule])
                )[0] == 0:
                    pass

    def task_states(self) -> list[dict[str, Any]]:
        """Every task of the stack: service, node, desired and current state, since when."""
        client = self.cluster.client
        nodes = {n.id: n.attrs["Description"]["Hostname"] for n in client.nodes.list()}
        tasks = client.api.tasks(filters={"label": f"{STACK_LABEL}={self.project}"})
        services = {
            s.id: s.name
            for s in client.services.list(filters={"label": f"{STACK_LABEL}={self.project}"})
        }
        return [
            {
                "service": services.get(t.get("ServiceID", ""), "-"),
                "node": nodes.get(t.get("NodeID", ""), "-"),
                "desired": t.get("DesiredState"),
                "state": t["Status"]["State"],
                "since": t["Status"].get("Timestamp"),
                "error": t["Status"].get("Err", ""),
            }
            for t in tasks
        ]

    def write_stack_json(self, **extra: Any) -> Path:
        path = super().write_stack_json(**extra)
        data = json.loads(path.read_text())
        data["backend"] = "swarm"
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path
