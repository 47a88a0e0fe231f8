"""The Compose stack: the reference system in Docker Compose, behind the Toxiproxy service.

    async with ComposeStack(state_dir) as stack:
        print(stack.endpoints()["pops"]["ams"]["visitor_url"])

``up`` runs the Compose CLI (``compose/compose.yaml``, plus ``compose/compose.offline.yaml`` when
the offline images are used) under a project name of its own, with every published port a free
port on 127.0.0.1; ``down`` removes the project's containers, networks and volumes and checks
that none is left. Stopping, killing, pausing and restarting one component goes through the
docker SDK. ``endpoints()`` has the same shape as :meth:`LocalStack.endpoints`; the secrets the
harness needs on the host (admin token, ``cert.pem`` for the published API, the tunnel's
credentials, the edge CA, each broker client's credentials and the broker CA) are copied out of
the containers into ``<state_dir>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import json
import os
import secrets
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from harness.compose import plan
from harness.compose.engine import EngineError, docker_client, repo_root, run_compose
from harness.compose.owner import owner_labels, reap_orphaned_projects
from harness.deploy import reference_plan as deploy_plan
from harness.deploy.model import DeploymentPlan
from harness.stack import compose_origin
from harness.stack.base import StackError
from harness.stack.layout import StackLayout
from harness.stack.layout import address as _addr
from harness.stack.ports import free_port
from harness.stack.process import outlast_argv
from harness.stack.readiness import wait_http
from harness.stack.topology import Topology, TunnelSpec
from harness.stack.user_origin import fill
from reference.files import atomic_write

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
OFFLINE_IMAGE = "outlast:offline"
OFFLINE_IMAGE_REFERENCE = "${OUTLAST_OFFLINE_IMAGE:-outlast:offline}"

#: Environment variable of each published host port (see compose/compose.yaml).
PORT_VARIABLES: dict[str, str] = {
    "faultproxy": "OUTLAST_FAULTPROXY_PORT",
    "controlplane": "OUTLAST_API_PORT",
    "origin": "OUTLAST_ORIGIN_PORT",
    "connector-metrics": "OUTLAST_CONNECTOR_METRICS_PORT",
    "anycast-visitor": "OUTLAST_ANYCAST_VISITOR_PORT",
    "anycast-dns": "OUTLAST_ANYCAST_DNS_PORT",
    "anycast-control": "OUTLAST_ANYCAST_CONTROL_PORT",
    **{
        f"edge-{pop}-{kind}": f"OUTLAST_EDGE_{pop.upper()}_{kind.upper()}_PORT"
        for pop in plan.POPS
        for kind in ("visitor", "dns", "metrics")
    },
}


def _read_file_from_archive(stream: Any) -> bytes:
    data = io.BytesIO(b"".join(stream))
    with tarfile.open(fileobj=data) as tar:
        member = next(m for m in tar.getmembers() if m.isfile())
        extracted = tar.extractfile(member)
        if extracted is None:
            raise StackError(f"{member.name} is not a regular file")
        return extracted.read()


def _compose_file_services() -> dict[str, Any]:
    """The services of ``compose/compose.yaml`` with its YAML anchors merged."""
    data = yaml.safe_load((repo_root() / "compose" / "compose.yaml").read_text())
    services: dict[str, Any] = data["services"]
    return services


class ComposeStack(StackLayout):
    """The reference system as a Docker Compose project (see module docstring)."""

    def __init__(
        self,
        state_dir: Path,
        topology: Topology | None = None,
        *,
        seed: int = 0,
        connector_args: tuple[str, ...] = (),
        offline: bool | None = None,
        project: str | None = None,
        ready_timeout: float = 180.0,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.topology = topology or Topology()
        self._check_topology(self.topology)
        self.tunnel: TunnelSpec = self.topology.tunnels[0]
        self.seed = seed
        self.connector_args = connector_args
        self.offline = offline
        self.project = project or f"outlast-{secrets.token_hex(4)}"
        self.ready_timeout = ready_timeout
        self.ports: dict[str, int] = {}
        self.tunnel_ids: dict[str, str] = {}
        self.credentials_files: dict[str, Path] = {}
        self.broker_credentials: dict[str, Path] = {}
        self.reaped_projects: list[str] = []
        """Projects of dead owners that ``up`` removed before starting this one."""
        """Host copies of each broker client's credentials (``controlplane``, ``edge-<pop>``)."""
        self.api_token: str | None = None
        self.account_id: str | None = None
        self.zone_id: str | None = None
        self.startup_seconds: float | None = None
        self.running: dict[str, bool] = {}
        self._client: Any = None
        self._compose_started = False
        #: The image built for a ``stack.origin.build`` context (removed by ``down``).
        self._built_origin_image: str | None = None

    @staticmethod
    def _check_topology(topology: Topology) -> None:
        if tuple(topology.pops) != plan.POPS:
            raise StackError(
                f"the compose backend runs PoPs {', '.join(plan.POPS)} (compose/compose.yaml); "
                f"got {', '.join(topology.pops)}: use the local backend for other PoPs"
            )
        if len(topology.tunnels) != 1 or topology.tunnels[0].kind != "named":
            raise StackError(
                "the compose backend runs exactly one named tunnel (one connector service, plus "
                "one per extra replica); use the local backend for several or legacy tunnels"
            )
        user = topology.origin
        problem = user.backend_problem("compose") if user is not None else None
        if problem is not None:
            raise StackError(problem)

    # ----------------------------------------------------------------- paths and endpoints

    def service_of(self, component: str) -> str:
        """The Compose service of ``component`` (``KeyError`` if it has none)."""
        return plan.service_of(component, self.tunnel.name)

    def _metrics_port_key(self, component: str) -> str:
        return "connector-metrics" if component == self.tunnel.connector else f"{component}-metrics"

    def connector_metrics_url(self, connector: str | None = None) -> str:
        """Base URL of a connector replica's /metrics and /ready (``connector`` = the tunnel's
        name or a component such as ``connector-web-2``; default: the first replica)."""
        component = connector or self.tunnel.connector
        if not component.startswith("connector-"):
            component = f"connector-{component}"
        return f"http://{_addr(self.ports[self._metrics_port_key(component)])}"

    @property
    def anycast_url(self) -> str:
        """The edge network's one visitor address (HTTP and WebSocket)."""
        return f"http://{_addr(self.ports['anycast-visitor'])}"

    @property
    def anycast_control_url(self) -> str:
        return f"http://{_addr(self.ports['anycast-control'])}"

    @property
    def compose_files(self) -> list[Path]:
        """The Compose files of this project, in ``-f`` order."""
        compose_dir = repo_root() / "compose"
        files = [compose_dir / "compose.yaml"]
        if self._offline():
            files.append(compose_dir / "compose.offline.yaml")
        files.append(self.state_dir / "compose.run.yaml")
        return files

    def endpoints(self) -> dict[str, Any]:
        """Everything a user or a probe needs (same shape as ``LocalStack.endpoints()``)."""
        tunnel = self.tunnel
        return {
            "backend": "compose",
            "project": self.project,
            "offline": self._offline(),
            "state_dir": str(self.state_dir),
            "zone": self.topology.zone,
            "account_id": self.account_id,
            "zone_id": self.zone_id,
            "api_url": self.api_url,
            "admin_token_file": str(self.admin_token_file),
            "origincert": str(self.origincert),
            "edge_ca": str(self.edge_ca_file),
            # The broker is on an internal network only: this is its in-project address.
            "broker": f"broker:{plan.BROKER_PORT}",
            "origin_url": self.origin_url,
            "origin": self.origin_info(),
            # Copies of each client's broker credentials (the broker is TLS-only, with users).
            "broker_credentials": {name: str(p) for name, p in self.broker_credentials.items()},
            "broker_ca": str(self.broker_ca_file),
            "faultproxy": {
                "url": self.faultproxy_url,
                "proxies": {
                    lk.name: {"listen": lk.listen, "upstream": lk.upstream} for lk in plan.links()
                },
            },
            "visitor_url": self.anycast_url,
            "dns": _addr(self.ports["anycast-dns"]),
            "anycast": {
                "visitor_url": self.anycast_url,
                "dns": _addr(self.ports["anycast-dns"]),
                "control_url": self.anycast_control_url,
                "convergence": self.topology.convergence,
                "regions": {r.name: list(r.prefer) for r in self.topology.visitor_regions},
            },
            # ``tunnel`` and ``peer`` are in-project addresses (not published): what the
            # connector dials (the conn-<pop> proxy) and the PoP's peer listener.
            "pops": {
                pop: {
                    "visitor_url": self.visitor_url(pop),
                    "dns": _addr(self.ports[f"edge-{pop}-dns"]),
                    "tunnel": plan.link(f"conn-{pop}").faultproxy_address,
                    "peer": f"edge-{pop}:{plan.EDGE_PEER_PORT}",
                    "metrics_url": self.pop_metrics_url(pop),
                }
                for pop in self.topology.pops
            },
            "tunnels": [
                {
                    "name": tunnel.name,
                    "kind": tunnel.kind,
                    "hostname": tunnel.hostname,
                    "id": self.tunnel_ids.get(tunnel.name),
                    "credentials_file": str(self.credentials_files.get(tunnel.name, "")),
                    "connector": tunnel.connector,
                    "connector_kind": "reference",  # cloudflared runs on the local backend only
                    "metrics_url": self.connector_metrics_url() + "/metrics",
                    "ready_url": self.connector_metrics_url() + "/ready",
                    "connectors": {
                        c: {
                            "metrics_url": self.connector_metrics_url(c) + "/metrics",
                            "ready_url": self.connector_metrics_url(c) + "/ready",
                        }
                        for c in tunnel.connectors
                    },
                }
            ],
            "components": {
                name: {
                    "service": self.service_of(name),
                    "container": f"{self.project}-{self.service_of(name)}-1",
                    "pid": None,
                    "log": str(self.state_dir / "logs" / f"{name}.log"),
                    "running": self.running.get(name, False),
                }
                for name in self.topology.components
            },
            "startup_seconds": self.startup_seconds,
            "connector": {"kind": "reference", "version": None},
        }

    @property
    def origin_url(self) -> str | None:
        """The reference origin's published address; ``None`` for the user's container, which
        is reachable only inside the project (see :meth:`origin_info`)."""
        if self.topology.origin is not None:
            return None
        return f"http://{_addr(self.ports['origin'])}"

    def origin_info(self) -> dict[str, Any]:
        """``stack.json``'s ``origin``: which origin runs, and how the connector reaches it."""
        user = self.topology.origin
        if user is None:
            return {"kind": "reference", "url": self.origin_url}
        info: dict[str, Any] = {
            "kind": user.kind,
            "url": None,
            "service_url": f"http://origin:{user.container_port}",
            "health": user.health,
            "image": user.image or self._built_origin_image,
        }
        if user.build is not None:
            info["build"] = user.build
        if user.command is not None:
            info["command"] = fill(user.command, user.container_port)
        return info

    # ----------------------------------------------------------------- lifecycle

    def _offline(self) -> bool:
        if self.offline is None:
            setting = os.environ.get("OUTLAST_COMPOSE_OFFLINE", "").strip().lower()
            if setting in ("0", "1", "true", "false", "yes", "no"):
                self.offline = setting in ("1", "true", "yes")
            else:
                self.offline = self._docker_has_image(OFFLINE_IMAGE)
        return self.offline

    def _docker(self) -> Any:
        if self._client is None:
            try:
                self._client = docker_client()
            except EngineError as exc:
                raise StackError(str(exc)) from None
        return self._client

    def _docker_has_image(self, name: str) -> bool:
        import docker.errors

        try:
            self._docker().images.get(name)
        except docker.errors.ImageNotFound:
            return False
        return True

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({variable: str(self.ports[key]) for key, variable in PORT_VARIABLES.items()})
        env.update(
            {
                "OUTLAST_SEED": str(self.seed),
                "OUTLAST_ACCOUNT": self.topology.account,
                "OUTLAST_ZONE": self.topology.zone,
                "OUTLAST_EMAIL": self.topology.email,
                "OUTLAST_TUNNEL": self.tunnel.name,
                "OUTLAST_HOSTNAME": self.tunnel.hostname,
            }
        )
        return env

    def _compose_args(self, *args: str) -> list[str]:
        files = [arg for path in self.compose_files for arg in ("-f", str(path))]
        project_dir = str(repo_root() / "compose")
        return ["-p", self.project, "--project-directory", project_dir, *files, *args]

    def _allocate_ports(self) -> None:
        taken: set[int] = set()
        replicas = [self._metrics_port_key(c) for c in self.tunnel.connectors[1:]]
        for name in [*PORT_VARIABLES, *replicas]:
            port = free_port()
            while port in taken:
                port = free_port()
            taken.add(port)
            self.ports[name] = port

    def _write_run_override(self) -> None:
        """``compose.run.yaml``: this run's connector command (extra connector arguments), the
        anycast front's convergence, seed and regions, and a service per extra replica."""
        topo = self.topology
        user = topo.origin
        command = plan.connector_command(
            self.tunnel.name,
            extra=self.connector_args,
            origin_port=user.container_port if user is not None else plan.ORIGIN_PORT,
        )
        anycast = plan.anycast_command(
            convergence=topo.convergence,
            seed=self.seed,
            regions=tuple(r.argument() for r in topo.visitor_regions),
        )
        # Every service names this process as its owner, so a later run (or `stack down`)
        # removes the project if this process is killed before its teardown.
        labels = owner_labels()
        services: dict[str, Any] = {name: {"labels": labels} for name in _compose_file_services()}
        services["connector"]["command"] = command
        services[plan.ANYCAST_SERVICE]["command"] = anycast
        if user is not None:
            image = user.image or self._built_origin_image
            assert image is not None
            services["origin"] = {**compose_origin.origin_service(user, image), "labels": labels}
            # The user's image may have no health command: the connector waits for it to start,
            # the harness for its health path through every PoP (wait_serving).
            services["connector"]["depends_on"] = {"origin": {"condition": "service_started"}}
        volumes: dict[str, Any] = {}
        networks: dict[str, Any] = {}
        if len(self.tunnel.connectors) > 1:
            base = _compose_file_services()["connector"]
            for replica, component in enumerate(self.tunnel.connectors[1:], start=2):
                service = plan.connector_service(replica)
                services[service] = self._replica_service(base, component, replica, command)
                services[service]["labels"] = labels
                volumes[f"connector-state-{replica}"] = {}
                networks[f"pub-{service}"] = {}
        override: dict[str, Any] = {"services": services}
        if volumes:
            override["volumes"] = volumes
            override["networks"] = networks
        atomic_write(self.state_dir / "compose.run.yaml", compose_origin.dump_override(override))

    def _replica_service(
        self, base: dict[str, Any], component: str, replica: int, command: list[str]
    ) -> dict[str, Any]:
        """Service ``connector-<replica>``: the ``connector`` service with its own state volume,
        published metrics port and publishing network."""
        spec = copy.deepcopy(base)
        spec["command"] = command
        port = self.ports[self._metrics_port_key(component)]
        spec["ports"] = [f"127.0.0.1:{port}:{plan.CONNECTOR_METRICS_PORT}"]
        spec["volumes"] = [
            volume.replace("connector-state:", f"connector-state-{replica}:", 1)
            for volume in base["volumes"]
        ]
        spec["networks"] = [
            f"pub-{plan.connector_service(replica)}" if network == "pub-connector" else network
            for network in base["networks"]
        ]
        if self.topology.origin is not None:
            spec["depends_on"] = {**spec["depends_on"], "origin": {"condition": "service_started"}}
        if self._offline():
            spec.pop("build", None)
            spec["image"] = OFFLINE_IMAGE_REFERENCE
            spec["pull_policy"] = "never"
        return spec

    async def up(self) -> None:
        """Start the project and wait until visitors are served through every PoP.

        On any failure (or cancellation) the project is torn down before the error propagates.
        """
        started = time.monotonic()
        try:
            await self._start_all()
        except BaseException:
            await asyncio.shield(self.down())
            raise
        self.startup_seconds = round(time.monotonic() - started, 3)

    async def _start_all(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(mode=0o700, exist_ok=True)
        self.reaped_projects = await asyncio.to_thread(reap_orphaned_projects, self._docker())
        self._allocate_ports()
        await asyncio.to_thread(self._offline)  # decide once, before the first compose call
        self._compose_started = True  # from here on, down() cleans up (a built image too)
        await asyncio.to_thread(self._prepare_origin_image)
        self._write_run_override()
        try:
            await run_compose(
                self._compose_args("up", "--detach", "--no-color", "--quiet-pull"),
                env=self._environment(),
                timeout=max(self.ready_timeout, 60.0),
            )
        except EngineError as exc:
            raise StackError(f"compose project {self.project} did not come up: {exc}") from None
        for name in self.topology.components:
            self.running[name] = True
        await self._copy_out_secrets()
        await self._login_on_host()
        await self.wait_serving()

    def _prepare_origin_image(self) -> None:
        """The user's image: present (offline), or built from ``stack.origin.build``."""
        user = self.topology.origin
        if user is None:
            return
        offline = self._offline()
        if user.image is not None:
            compose_origin.check_image_present(self._docker(), user.image, offline)
            return
        context = compose_origin.build_context(user, Path.cwd())
        tag = compose_origin.image_tag(self.project)
        self._built_origin_image = tag
        compose_origin.build_image(self._docker(), context, tag, offline=offline)

    async def wait_serving(
        self, tunnel: TunnelSpec | None = None, timeout: float | None = None
    ) -> None:
        """Wait until every replica is ready and the tunnel's hostname is served through every
        PoP and through the anycast entry (``tunnel``: as ``LocalStack``; there is one)."""
        if tunnel is not None and tunnel.name != self.tunnel.name:
            raise StackError(f"no tunnel {tunnel.name!r} in this stack (have: {self.tunnel.name})")
        timeout = timeout or self.ready_timeout
        for component in self.tunnel.connectors:
            await wait_http(f"{self.connector_metrics_url(component)}/ready", timeout=timeout)
        if self.topology.origin is not None:
            await self._wait_user_origin(timeout)
            return
        for url in [*(self.visitor_url(pop) for pop in self.topology.pops), self.anycast_url]:
            await wait_http(f"{url}/", timeout=timeout, headers={"Host": self.tunnel.hostname})

    async def _wait_user_origin(self, timeout: float) -> None:
        """Until the user's service answers its health path below 500 through every PoP and
        the anycast entry (edge errors are 5xx). A container that exits, or never answers, is a
        :class:`StackError` naming the image or build context and its last output lines."""
        user = self.topology.origin
        assert user is not None
        what = f"origin {user.kind} {user.image or user.build!r}"
        if user.command is not None:
            what += f" (command {user.command!r})"
        urls = [*(self.visitor_url(pop) for pop in self.topology.pops), self.anycast_url]
        deadline = time.monotonic() + timeout
        last = "no answer"
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while urls:
                status = await self.container_status("origin")
                if status in ("exited", "dead"):
                    code = await asyncio.to_thread(self._exit_code, "origin")
                    raise StackError(
                        f"{what} exited with code {code}; last output:\n"
                        f"{await self._origin_log_tail()}"
                    )
                try:
                    answer = await client.get(
                        urls[0] + user.health, headers={"Host": self.tunnel.hostname}
                    )
                    if answer.status_code < 500:
                        urls.pop(0)
                        continue
                    last = f"status {answer.status_code}: {answer.text[:200]}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                if time.monotonic() > deadline:
                    raise StackError(
                        f"{what} did not answer {user.health} below 500 through {urls[0]} within "
                        f"{timeout:g} s (last: {last}); last output:\n"
                        f"{await self._origin_log_tail()}"
                    )
                await asyncio.sleep(0.2)

    def _exit_code(self, service: str) -> object:
        container = self._container(service)
        container.reload()
        return container.attrs.get("State", {}).get("ExitCode")

    async def _origin_log_tail(self, lines: int = 15) -> str:
        """The last lines of the origin container's output (for a failed start)."""
        try:
            container = await asyncio.to_thread(self._container, "origin")
            raw = await asyncio.to_thread(container.logs, tail=lines)
        except Exception as exc:  # the error being reported matters more
            return f"(could not read the origin's log: {exc})"
        return bytes(raw).decode(errors="replace").strip() or "(none)"

    def _container(self, service: str) -> Any:
        found = self._docker().containers.list(
            all=True,
            filters={"label": [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"]},
        )
        if not found:
            raise StackError(f"no container of service {service!r} in project {self.project}")
        return found[0]

    def _read_container_file(self, service: str, path: str) -> bytes:
        stream, _ = self._container(service).get_archive(path)
        return _read_file_from_archive(stream)

    def _deployment_plan(self, seed: int, connector_args: tuple[str, ...]) -> DeploymentPlan:
        """Swarm and Kubernetes: the plan of this stack's tunnel and topology."""
        return deploy_plan.reference_plan(
            deploy_plan.PlanParameters(
                tunnel=self.tunnel.name,
                hostname=self.tunnel.hostname,
                replicas=self.tunnel.replicas,
                convergence=self.topology.convergence,
                seed=seed,
                regions=tuple(r.argument() for r in self.topology.visitor_regions),
                connector_args=tuple(connector_args),
            )
        )

    def _adopt_host_files(self, files: dict[str, Path]) -> None:
        """Swarm and Kubernetes: the admin token, the edge CA, the broker CA and each client's
        broker credentials that the harness made on the host
        (:func:`harness.deploy.files.make_files`)."""
        atomic_write(self.admin_token_file, files[deploy_plan.ADMIN_TOKEN].read_bytes(), mode=0o600)
        atomic_write(self.edge_ca_file, files[deploy_plan.EDGE_CA].read_bytes())
        atomic_write(self.broker_ca_file, files[deploy_plan.BROKER_CA].read_bytes())
        for client in plan.broker_clients():
            self._adopt_broker_credential(
                client, files[deploy_plan.broker_credentials(client)].read_bytes()
            )

    def _adopt_broker_credential(self, client: str, credential: bytes) -> None:
        path = self.broker_auth_dir / f"{client}.credentials.json"
        atomic_write(path, credential, mode=0o600)
        self.broker_credentials[client] = path

    def _adopt_bootstrap(self, record: dict[str, Any], credentials: bytes) -> None:
        """The bootstrap's record (API token, ids) and the tunnel's credentials file."""
        self.api_token = str(record["api_token"])
        self.account_id = str(record["account_id"])
        self.zone_id = str(record["zone_id"])
        tunnel = self.tunnel.name
        self.tunnel_ids[tunnel] = str(record["tunnels"][tunnel]["id"])
        path = self.home / f"{tunnel}.json"
        atomic_write(path, credentials, mode=0o400)
        self.credentials_files[tunnel] = path

    async def _copy_out_secrets(self) -> None:
        """Admin token, edge CA, bootstrap record and tunnel credentials onto the host."""
        read = self._read_container_file
        token = await asyncio.to_thread(read, "controlplane", plan.ADMIN_TOKEN_FILE)
        atomic_write(self.admin_token_file, token, mode=0o600)
        ca = await asyncio.to_thread(read, "connector", plan.EDGE_CA_FILE)
        atomic_write(self.edge_ca_file, ca)
        record = json.loads(await asyncio.to_thread(read, "bootstrap", plan.BOOTSTRAP_FILE))
        credentials = await asyncio.to_thread(
            read, "bootstrap", f"{plan.HOME_DIR}/{self.tunnel.name}.json"
        )
        self._adopt_bootstrap(record, credentials)
        client_dir = plan.BROKER_CLIENT_DIR
        ca_path = f"{client_dir}/{plan.BROKER_CA_FILE}"
        broker_ca = await asyncio.to_thread(read, "controlplane", ca_path)
        atomic_write(self.broker_ca_file, broker_ca)
        for client in plan.broker_clients():
            credential = await asyncio.to_thread(
                read, client, f"{client_dir}/{plan.BROKER_CREDENTIALS_FILE}"
            )
            self._adopt_broker_credential(client, credential)

    async def _login_on_host(self) -> None:
        """A host ``cert.pem`` naming the published API (the container's names the proxy)."""
        assert self.api_token is not None
        env = dict(os.environ)
        env["OUTLAST_HOME"] = str(self.home)
        proc = await asyncio.create_subprocess_exec(
            *outlast_argv(
                "tunnel",
                "login",
                "--api",
                self.api_url,
                "--token",
                self.api_token,
                "--zone",
                self.topology.zone,
                "--origincert",
                str(self.origincert),
                "--force",
            ),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise StackError(f"`outlast tunnel login` on the host failed: {err.decode().strip()}")

    async def down(self) -> None:
        """Save each service's log, remove the project (volumes too) and check nothing is left."""
        if not self._compose_started:
            return
        with contextlib.suppress(Exception):  # logs are a courtesy; teardown must go on
            await asyncio.to_thread(self._save_logs)
        error: Exception | None = None
        try:
            await run_compose(
                self._compose_args("down", "--volumes", "--remove-orphans", "--timeout", "10"),
                env=self._environment(),
                timeout=180.0,
            )
        except EngineError as exc:
            error = exc
        try:
            left = await asyncio.to_thread(self._remove_leftovers)
        except Exception as exc:
            raise StackError(
                f"could not check what compose project {self.project} left behind: {exc} "
                f"(down: {error}); look with `docker ps -a --filter label={PROJECT_LABEL}="
                f"{self.project}`"
            ) from None
        self._compose_started = False
        self.running = {}
        if self._built_origin_image is not None:
            with contextlib.suppress(Exception):  # a stale per-run tag is harmless
                await asyncio.to_thread(
                    compose_origin.remove_image, self._docker(), self._built_origin_image
                )
        if any(left.values()):
            raise StackError(f"compose project {self.project} left {left} behind (down: {error})")

    def _save_logs(self) -> None:
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        containers = self._docker().containers.list(
            all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"}
        )
        services = {c.labels.get(SERVICE_LABEL, c.name): c for c in containers}
        names = {self.service_of(n): n for n in self.topology.components}
        for service, container in services.items():
            name = names.get(service, service)
            try:
                (logs / f"{name}.log").write_bytes(container.logs(timestamps=True))
            except Exception as exc:  # a log is a courtesy; teardown must go on
                (logs / f"{name}.log").write_text(f"could not read the log: {exc}\n")

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes of this project that still exist."""
        client = self._docker()
        label = {"label": f"{PROJECT_LABEL}={self.project}"}
        return {
            "containers": [c.name for c in client.containers.list(all=True, filters=label)],
            "networks": [n.name for n in client.networks.list(filters=label)],
            "volumes": [v.name for v in client.volumes.list(filters=label)],
        }

    def _remove_leftovers(self) -> dict[str, list[str]]:
        """Force-remove whatever ``compose down`` left; return what still could not go."""
        client = self._docker()
        label = {"label": f"{PROJECT_LABEL}={self.project}"}
        for container in client.containers.list(all=True, filters=label):
            container.remove(force=True, v=True)
        for network in client.networks.list(filters=label):
            network.remove()
        for volume in client.volumes.list(filters=label):
            volume.remove(force=True)
        return self.leftovers()

    # ----------------------------------------------------------------- component control

    def _service(self, component: str) -> str:
        try:
            return self.service_of(component)
        except KeyError:
            known = ", ".join(self.topology.components)
            raise StackError(f"no component {component!r} in this stack (have: {known})") from None

    async def _act(self, component: str, action: str, running: bool) -> None:
        container = await asyncio.to_thread(self._container, self._service(component))

        def act() -> None:
            if action in ("stop", "restart"):
                getattr(container, action)(timeout=10)
            else:
                getattr(container, action)()

        try:
            await asyncio.to_thread(act)
        except Exception as exc:
            raise StackError(f"docker {action} {component} failed: {exc}") from None
        self.running[component] = running

    async def exec_in(self, component: str, argv: list[str]) -> tuple[int, str]:
        """Run ``argv`` inside ``component``'s container; return exit code and output."""
        container = await asyncio.to_thread(self._container, self._service(component))
        result = await asyncio.to_thread(container.exec_run, argv)
        return int(result.exit_code), result.output.decode(errors="replace")

    async def container_status(self, component: str) -> str:
        """Docker's state of ``component``'s container: running, exited, paused, ..."""
        container = await asyncio.to_thread(self._container, self._service(component))
        await asyncio.to_thread(container.reload)
        return str(container.status)

    async def stop(self, component: str) -> None:
        await self._act(component, "stop", False)

    async def kill(self, component: str) -> None:
        await self._act(component, "kill", False)

    async def start(self, component: str) -> None:
        await self._act(component, "start", True)

    async def restart(self, component: str) -> None:
        await self._act(component, "restart", True)

    async def forget_state(self, component: str) -> None:
        raise StackError(
            f"restart with fresh: true ({component}) is not supported on the compose backend yet"
        )

    async def pause(self, component: str) -> None:
        await self._act(component, "pause", True)

    async def resume(self, component: str) -> None:
        await self._act(component, "unpause", True)
