"""The Kubernetes backend: the plan's Kubernetes rendering applied to a real cluster.

Written against the official ``kubernetes`` client (``pip install 'outlast[kubernetes]'``) and the
current kubeconfig context (or the in-cluster service account). Not run on the dev and CI
machines, which have no cluster: ``tests/kubernetes`` skips with that reason.

* ``up``: makes the generated files on the host, creates the namespace ``outlast-<random>``
  with the Secrets, ConfigMaps, NetworkPolicies, Services and workloads of the plan (without the
  connectors), forwards every published port to 127.0.0.1 through the API server's port-forward
  (TCP only: the UDP DNS probe gets no answers on this backend), creates the fault-proxy links,
  bootstraps from the host, adds the tunnel's Secrets and the connectors, and waits until
  visitors are served through every PoP and the anycast front;
* ``stop``/``start``: scale the component's workload to 0/1; ``kill``: delete its pod with no
  grace period, then scale to 0 (so it stays down until ``start``); ``restart``: delete the pod
  (the controller makes a new one); ``pause`` is refused (it would need exec or node access);
* ``down``: deletes the namespace and waits until it is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from pathlib import Path
from typing import Any

from harness.compose.steps import BootstrapSpec, StepError, bootstrap, populate
from harness.deploy.files import add_tunnel_files, make_files
from harness.deploy.kubernetes_render import COMPONENT_LABEL, render_kubernetes
from harness.stack.base import StackError
from harness.stack.compose import ComposeStack
from harness.stack.readiness import wait_http
from harness.stack.topology import Topology


def load_client() -> Any:
    """An API client for the current kubeconfig context (or in-cluster); :class:`StackError`
    saying why when no cluster answers."""
    try:
        import kubernetes
    except ImportError:
        raise StackError(
            "the kubernetes client is missing: pip install 'outlast[kubernetes]'"
        ) from None
    try:
        try:
            kubernetes.config.load_kube_config()
        except Exception:
            kubernetes.config.load_incluster_config()
        client = kubernetes.client.ApiClient()
        kubernetes.client.VersionApi(client).get_code(_request_timeout=10)
    except Exception as exc:
        raise StackError(f"no Kubernetes cluster reachable: {type(exc).__name__}: {exc}") from None
    return client


class _PortForward:
    """127.0.0.1:local -> pod:port through the API server, one stream per connection."""

    def __init__(self, api: Any, namespace: str, component: str, port: int) -> None:
        self.api, self.namespace, self.component, self.port = api, namespace, component, port
        self.server: asyncio.Server | None = None

    def _pod(self) -> str:
        pods = self.api.list_namespaced_pod(
            self.namespace, label_selector=f"{COMPONENT_LABEL}={self.component}"
        ).items
        running = [p for p in pods if p.status.phase == "Running"]
        if not running:
            raise OSError(f"no running pod of {self.component}")
        return str(running[0].metadata.name)

    async def start(self, local_port: int) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", local_port)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from kubernetes.stream import portforward

        try:
            forward = await asyncio.to_thread(
                portforward,
                self.api.connect_get_namespaced_pod_portforward,
                self._pod(),
                self.namespace,
                ports=str(self.port),
            )
            sock = forward.socket(self.port)
            sock.setblocking(False)
            up_reader, up_writer = await asyncio.open_connection(sock=sock)
        except Exception:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


class KubernetesStack(ComposeStack):
    """The reference system in a namespace of a real cluster (see the module docstring)."""

    def __init__(
        self,
        state_dir: Path,
        topology: Topology | None = None,
        *,
        seed: int = 0,
        connector_args: tuple[str, ...] = (),
        image: str = "outlast:offline",
        namespace: str | None = None,
        ready_timeout: float = 300.0,
    ) -> None:
        super().__init__(
            state_dir,
            topology,
            seed=seed,
            connector_args=connector_args,
            offline=True,
            project=namespace or f"outlast-{secrets.token_hex(4)}",
            ready_timeout=ready_timeout,
        )
        self.image = image
        self.plan = self._deployment_plan(seed, connector_args)
        self._api: Any = None
        self._forwards: list[_PortForward] = []

    @property
    def namespace(self) -> str:
        return self.project

    def endpoints(self) -> dict[str, Any]:
        data = super().endpoints()
        data["backend"] = "kubernetes"
        data["namespace"] = self.namespace
        for component in data["components"].values():
            component["container"] = None
        return data

    def _apply(self, documents: list[dict[str, Any]]) -> None:
        from kubernetes import utils

        for document in documents:
            try:
                utils.create_from_dict(self._api, document, namespace=self.namespace)
            except Exception as exc:
                kind, name = document["kind"], document["metadata"]["name"]
                raise StackError(f"creating {kind}/{name} failed: {exc}") from None

    def _manifests(self, files: dict[str, Path], with_connectors: bool) -> list[dict[str, Any]]:
        rendered = render_kubernetes(
            self.plan,
            files,
            namespace=self.namespace,
            image=self.image,
            with_connectors=with_connectors,
        )
        return [d for docs in rendered.values() for d in docs]

    async def _start_all(self) -> None:
        self._api = await asyncio.to_thread(load_client)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(mode=0o700, exist_ok=True)
        files = await asyncio.to_thread(make_files, self.plan, self.state_dir / "k8s-files")
        self._adopt_host_files(files)
        self._compose_started = True
        self._allocate_ports()
        await asyncio.to_thread(self._apply, self._manifests(files, with_connectors=False))
        await self._forward(with_connectors=False)
        try:
            await asyncio.to_thread(populate, self.faultproxy_url, self.ready_timeout)
        except StepError as exc:
            raise StackError(f"toxiproxy: {exc}") from None
        await wait_http(f"{self.api_url}/health", timeout=self.ready_timeout)
        home = self.state_dir / "bootstrap-home"
        topo = self.topology
        spec = BootstrapSpec(
            api=self.api_url,
            admin_token_file=self.admin_token_file,
            home=home,
            account=topo.account,
            zone=topo.zone,
            email=topo.email,
            tunnel=self.tunnel.name,
            hostname=self.tunnel.hostname,
        )
        try:
            record = await asyncio.to_thread(bootstrap, spec, self.ready_timeout)
        except StepError as exc:
            raise StackError(f"bootstrap through the port-forward failed: {exc}") from None
        credentials = home / f"{self.tunnel.name}.json"
        self._adopt_bootstrap(record, credentials.read_bytes())
        full = add_tunnel_files(self.plan, files, home / "cert.pem", credentials)
        first = {(d["kind"], d["metadata"]["name"]) for d in self._manifests(files, False)}
        extra = [
            d
            for d in self._manifests(full, True)
            if (d["kind"], d["metadata"]["name"]) not in first
        ]
        await asyncio.to_thread(self._apply, extra)
        await self._forward(with_connectors=True)
        for name in self.topology.components:
            self.running[name] = True
        await self._login_on_host()
        await self.wait_serving()

    async def _forward(self, with_connectors: bool) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self._api)
        for service in self.plan.daemons:
            if service.needs_tunnel != with_connectors:
                continue
            for port in service.ports:
                if "tcp" not in port.protocols:
                    continue
                key = self._port_key(service.name, port.name)
                forward = _PortForward(core, self.namespace, service.name, port.container)
                await forward.start(self.ports[key])
                self._forwards.append(forward)

    def _port_key(self, service: str, port: str) -> str:
        if service == "toxiproxy":
            return "faultproxy"
        if service in ("controlplane", "origin"):
            return service
        if service.startswith("connector"):
            replica = 1 if service == "connector" else int(service.removeprefix("connector-"))
            return self._metrics_port_key(self.tunnel.connectors[replica - 1])
        return f"{service}-{port}"

    async def down(self) -> None:
        for forward in self._forwards:
            forward.close()
        self._forwards = []
        if not self._compose_started or self._api is None:
            return
        from kubernetes import client

        core = client.CoreV1Api(self._api)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(core.delete_namespace, self.namespace)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                await asyncio.to_thread(core.read_namespace, self.namespace)
            except Exception:
                self._compose_started = False
                return
            await asyncio.sleep(1)
        raise StackError(f"namespace {self.namespace} still exists 180 s after its deletion")

    # ----------------------------------------------------------------- component control

    def _scale(self, component: str, replicas: int) -> None:
        from kubernetes import client

        apps = client.AppsV1Api(self._api)
        name = self._service(component)
        body = {"spec": {"replicas": replicas}}
        try:
            apps.patch_namespaced_stateful_set_scale(name, self.namespace, body)
        except client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise StackError(f"scaling {component} failed: {exc.reason}") from None
            apps.patch_namespaced_deployment_scale(name, self.namespace, body)

    def _delete_pods(self, component: str) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self._api)
        selector = f"{COMPONENT_LABEL}={self._service(component)}"
        for pod in core.list_namespaced_pod(self.namespace, label_selector=selector).items:
            if pod.metadata is not None and pod.metadata.name:
                core.delete_namespaced_pod(
                    str(pod.metadata.name), self.namespace, grace_period_seconds=0
                )

    async def stop(self, component: str) -> None:
        await asyncio.to_thread(self._scale, component, 0)
        self.running[component] = False

    async def start(self, component: str) -> None:
        await asyncio.to_thread(self._scale, component, 1)
        self.running[component] = True

    async def kill(self, component: str) -> None:
        await asyncio.to_thread(self._delete_pods, component)
        await asyncio.to_thread(self._scale, component, 0)
        self.running[component] = False

    async def restart(self, component: str) -> None:
        await asyncio.to_thread(self._delete_pods, component)
        self.running[component] = True

    async def pause(self, component: str) -> None:
        raise StackError(
            "pause is not supported by the kubernetes backend (no exec, no node access)"
        )

    async def resume(self, component: str) -> None:
        raise StackError(
            "pause is not supported by the kubernetes backend (no exec, no node access)"
        )
