"""The embedded stack: every component a process on 127.0.0.1, a fault proxy on every link.

    async with LocalStack(state_dir) as stack:
        print(stack.endpoints()["pops"]["ams"]["visitor_url"])

Component logs land in ``<state_dir>/logs/<component>.log``; ``stack.json`` in the state dir says
where everything listens. Teardown always runs: on ``down()``, on a failure during ``up()``, and
on cancellation (Ctrl-C).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from harness.faultproxy.locate import FaultProxyChoice, locate_fault_proxy
from harness.stack.base import StackError
from harness.stack.cloudflared import (
    CloudflaredRun,
    check_connector_kind,
    cloudflared_version,
    locate_cloudflared,
    write_cloudflared_credentials,
    write_cloudflared_origincert,
)
from harness.stack.contained_dns import (
    StackResolver,
    can_contain,
    contained_argv,
    resolver_host,
    write_resolv_conf,
)
from harness.stack.layout import HOST, StackLayout
from harness.stack.layout import address as _addr
from harness.stack.ports import free_port
from harness.stack.process import ManagedProcess, PidFile, ProcessExited, outlast_argv
from harness.stack.readiness import wait_http, wait_tcp
from harness.stack.topology import Topology, TunnelSpec
from reference.broker.auth import CONTROLPLANE_USER, edge_username, provision_broker_auth
from reference.broker.tls import BrokerTlsFiles, provision_broker_tls
from reference.config_signing import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, load_or_create_signing_key
from reference.files import atomic_write
from reference.legacy_tunnel import legacy_tunnel_id
from reference.pki import create_ca, issue_certificate


class LocalStack(StackLayout):
    """The reference system as local processes (see module docstring)."""

    def __init__(
        self,
        state_dir: Path,
        topology: Topology | None = None,
        *,
        seed: int = 0,
        broker_implementation: str = "auto",
        faultproxy_url: str | None = None,
        connector_args: tuple[str, ...] = (),
        ready_timeout: float = 30.0,
        legacy_dns_grace: float | None = None,
        origin_timeout: float | None = None,
        connector: str = "reference",
        cloudflared: str | Path | None = None,
        ha_connections: int = 4,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.topology = topology or Topology()
        user = self.topology.origin
        problem = user.backend_problem("local") if user is not None else None
        if problem is not None:
            raise StackError(problem)
        self.seed = seed
        self.broker_implementation = broker_implementation
        choice = (
            FaultProxyChoice("url", url=faultproxy_url) if faultproxy_url else locate_fault_proxy()
        )
        self.faultproxy_choice = choice
        self.external_faultproxy_url = choice.url if choice.kind == "url" else None
        self.connector_args = connector_args
        self.ready_timeout = ready_timeout
        #: How long a user's origin command may take to answer its health path.
        self.origin_timeout = origin_timeout or ready_timeout
        self.legacy_dns_grace = legacy_dns_grace
        #: Which connector runs the named tunnels: ``reference`` or the real ``cloudflared``
        #: (legacy tunnels always run the reference connector).
        self.connector = check_connector_kind(connector)
        self.cloudflared_path = cloudflared
        self.cloudflared_binary: Path | None = None
        self.cloudflared_version: str | None = None
        self.ha_connections = ha_connections
        #: The DNS server contained cloudflared replicas ask (harness/stack/contained_dns.py).
        self.cloudflared_resolver: StackResolver | None = None
        self.dns_uncontained_reason: str | None = None
        self.processes: dict[str, ManagedProcess] = {}
        self.ports: dict[str, int] = {}
        self.proxies: dict[str, dict[str, str]] = {}
        self.tunnel_ids: dict[str, str] = {}
        self.credentials_files: dict[str, Path] = {}
        self.broker_credentials: dict[str, Path] = {}
        """Broker credential file of each client (``controlplane``, ``edge-<pop>``)."""
        self.api_token: str | None = None
        self.account_id: str | None = None
        self.zone_id: str | None = None
        self.startup_seconds: float | None = None
        self._up = False

    # ----------------------------------------------------------------- paths and endpoints

    @property
    def faultproxy_url(self) -> str:
        return self.external_faultproxy_url or f"http://{_addr(self.ports['faultproxy'])}"

    def connector_metrics_url(self, connector: str) -> str:
        """Base URL of a connector's /metrics and /ready (``connector`` = tunnel name of the
        first replica, or a component name such as ``connector-web-2``)."""
        component = connector if connector.startswith("connector-") else f"connector-{connector}"
        return f"http://{_addr(self.ports[f'{component}-metrics'])}"

    def endpoints(self) -> dict[str, Any]:
        """Everything a user or a probe needs to reach the stack (``stack.json``)."""
        topo = self.topology
        return {
            "backend": "local",
            "state_dir": str(self.state_dir),
            "zone": topo.zone,
            "account_id": self.account_id,
            "zone_id": self.zone_id,
            "api_url": self.api_url,
            "admin_token_file": str(self.admin_token_file),
            "origincert": str(self.origincert),
            "edge_ca": str(self.edge_ca_file),
            "broker": _addr(self.ports["broker"]),
            "broker_credentials": {name: str(p) for name, p in self.broker_credentials.items()},
            "broker_ca": str(self.broker_ca_file),
            "origin_url": self.origin_url,
            "origin": self.origin_info(),
            "faultproxy": {"url": self.faultproxy_url, "proxies": self.proxies},
            "visitor_url": self.anycast_url,
            "dns": _addr(self.ports["anycast-dns"]),
            "anycast": {
                "visitor_url": self.anycast_url,
                "dns": _addr(self.ports["anycast-dns"]),
                "control_url": self.anycast_control_url,
                "convergence": topo.convergence,
                "regions": {r.name: list(r.prefer) for r in topo.visitor_regions},
            },
            "pops": {
                pop: {
                    "visitor_url": self.visitor_url(pop),
                    "dns": _addr(self.ports[f"edge-{pop}-dns"]),
                    "tunnel": _addr(self.ports[f"edge-{pop}-tunnel"]),
                    "peer": _addr(self.ports[f"edge-{pop}-peer"]),
                    "metrics_url": self.pop_metrics_url(pop),
                }
                for pop in topo.pops
            },
            "tunnels": [
                {
                    "name": t.name,
                    "kind": t.kind,
                    "hostname": t.hostname,
                    "id": self.tunnel_ids.get(t.name),
                    "credentials_file": str(self.credentials_files.get(t.name, "")),
                    "connector": t.connector,
                    "connector_kind": self.connector_kind(t),
                    "metrics_url": self.connector_metrics_url(t.name) + "/metrics",
                    "ready_url": self.connector_metrics_url(t.name) + "/ready",
                    "connectors": {
                        c: {
                            "metrics_url": self.connector_metrics_url(c) + "/metrics",
                            "ready_url": self.connector_metrics_url(c) + "/ready",
                        }
                        for c in t.connectors
                    },
                }
                for t in topo.tunnels
            ],
            "components": {
                name: {"pid": proc.pid, "log": str(proc.log_path), "running": proc.running}
                for name, proc in self.processes.items()
            },
            "startup_seconds": self.startup_seconds,
            "connector": {"kind": self.connector, "version": self.connector_version()},
            **(
                {
                    "cloudflared_dns": self.cloudflared_dns(),
                    "cloudflared_origincert": str(self.cloudflared_origincert),
                }
                if self.cloudflared_binary
                else {}
            ),
        }

    @property
    def cloudflared_origincert(self) -> Path:
        """The user's login in cloudflared's cert.pem format (stacks that run cloudflared)."""
        return self.home / "cloudflared-cert.pem"

    def cloudflared_dns(self) -> dict[str, Any]:
        """Where the cloudflared replicas' DNS goes: the stack's resolver, or why not."""
        resolver = self.cloudflared_resolver
        if resolver is None:
            return {"contained": False, "reason": self.dns_uncontained_reason}
        return {
            "contained": True,
            "resolver": f"{resolver.host}:{resolver.port}",
            "queries_log": str(resolver.log_path),
        }

    def connector_kind(self, tunnel: TunnelSpec) -> str:
        """``cloudflared`` for a named tunnel of a cloudflared stack, else ``reference``."""
        if self.connector == "cloudflared" and not tunnel.is_legacy:
            return "cloudflared"
        return "reference"

    def connector_version(self) -> str | None:
        """The cloudflared version the named tunnels run (``None`` for the reference one)."""
        return self.cloudflared_version if self.connector == "cloudflared" else None

    # ----------------------------------------------------------------- lifecycle

    async def up(self) -> None:
        """Start everything; on any failure (or cancellation) tear down what was started."""
        started = time.monotonic()
        try:
            await self._start_all()
        except BaseException:
            await asyncio.shield(self.down())
            raise
        self.startup_seconds = round(time.monotonic() - started, 3)
        self._up = True

    async def down(self) -> None:
        """Stop every process this stack started; connectors first so they drain cleanly."""
        order = [
            [c for t in self.topology.tunnels for c in t.connectors],
            ["anycast"],
            [f"edge-{pop}" for pop in self.topology.pops],
            ["controlplane", "origin"],
            ["broker"],
            ["faultproxy"],
        ]
        for group in order:
            procs = [self.processes[n] for n in group if n in self.processes]
            await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
        if self.cloudflared_resolver is not None:
            self.cloudflared_resolver.close()
        PidFile(self.state_dir).path.unlink(missing_ok=True)
        self._up = False

    def _process(self, name: str, *args: str) -> ManagedProcess:
        """A component started as ``outlast <args>``."""
        return self._spawn(name, outlast_argv(*args))

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        env = dict(os.environ)
        env["OUTLAST_HOME"] = str(self.home)
        proc = ManagedProcess(name, argv, self.state_dir / "logs" / f"{name}.log", env=env)
        proc.on_start = lambda _proc: PidFile(self.state_dir).record(self.processes)
        self.processes[name] = proc
        return proc

    def _allocate_ports(self) -> None:
        names = ["faultproxy", "broker", "controlplane", "origin"]
        names += ["anycast-visitor", "anycast-dns", "anycast-control"]
        for pop in self.topology.pops:
            kinds = ("tunnel", "visitor", "dns", "metrics", "peer")
            names += [f"edge-{pop}-{kind}" for kind in kinds]
        names += [f"{c}-metrics" for t in self.topology.tunnels for c in t.connectors]
        names += [f"proxy-{link}" for link in self.topology.links]
        if self.connector == "cloudflared":
            # Reserved only to give the cloudflared resolver a loopback address of its own.
            names.append("cloudflared-resolver")
        taken: set[int] = set()
        for name in names:
            port = free_port()
            while port in taken:
                port = free_port()
            taken.add(port)
            self.ports[name] = port

    def _write_pki(self) -> BrokerTlsFiles:
        """Edge CA and certificates, the broker's TLS files (returned), the signing key."""
        ca = create_ca("outlast edge CA")
        pki = self.state_dir / "pki"
        atomic_write(pki / "edge-ca.pem", ca.cert_pem)
        for pop in self.topology.pops:
            leaf = issue_certificate(
                ca,
                f"edge-{pop}",
                dns_names=("localhost", f"edge-{pop}", "h2.cftunnel.com"),
                ip_addresses=(HOST,),
            )
            atomic_write(pki / f"edge-{pop}.pem", leaf.cert_pem)
            atomic_write(pki / f"edge-{pop}.key", leaf.key_pem, mode=0o600)
        # The broker's TLS listener; every client dials it through a proxy on HOST.
        broker_tls = provision_broker_tls(pki, dns_names=("localhost",), ip_addresses=(HOST,))
        # Provisioning: the control plane's configuration key; edges get only its public half.
        load_or_create_signing_key(
            self.state_dir / "controlplane" / PRIVATE_KEY_FILE, pki / PUBLIC_KEY_FILE
        )
        return broker_tls

    def _proxy_plan(self) -> list[dict[str, Any]]:
        upstreams: dict[str, str] = {
            "connector-api": _addr(self.ports["controlplane"]),
            "cp-broker": _addr(self.ports["broker"]),
        }
        for pop in self.topology.pops:
            upstreams[f"conn-{pop}"] = _addr(self.ports[f"edge-{pop}-tunnel"])
            upstreams[f"edge-{pop}-api"] = _addr(self.ports["controlplane"])
            upstreams[f"edge-{pop}-broker"] = _addr(self.ports["broker"])
            for peer in self.topology.pops:
                if peer != pop:
                    upstreams[f"pop-{pop}-{peer}"] = _addr(self.ports[f"edge-{peer}-peer"])
        return [
            {
                "name": link,
                "listen": _addr(self.ports[f"proxy-{link}"]),
                "upstream": upstreams[link],
                "enabled": True,
            }
            for link in self.topology.links
        ]

    def proxy_address(self, link: str) -> str:
        """Where a client of ``link`` connects (the proxy's listen address)."""
        return self.proxies[link]["listen"]

    async def _start_all(self) -> None:
        if any(self.connector_kind(t) == "cloudflared" for t in self.topology.tunnels):
            # Before anything starts: a missing binary is a clear error, not a half-up stack.
            self.cloudflared_binary = locate_cloudflared(self.cloudflared_path)
            self.cloudflared_version = await asyncio.to_thread(
                cloudflared_version, self.cloudflared_binary
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(mode=0o700, exist_ok=True)
        self._allocate_ports()
        broker_tls = self._write_pki()
        broker_auth = provision_broker_auth(self.broker_auth_dir, self.topology.pops)
        self.broker_credentials = broker_auth.credentials
        timeout = self.ready_timeout

        if self.external_faultproxy_url is None:
            # A real toxiproxy-server when one is on PATH, else ours (same API either way).
            argv = self.faultproxy_choice.server_argv(
                HOST, self.ports["faultproxy"], seed=self.seed
            )
            await self._spawn("faultproxy", argv).start()
        broker = self._process(
            "broker",
            "serve",
            "broker",
            "--listen",
            _addr(self.ports["broker"]),
            "--data-dir",
            str(self.state_dir / "broker"),
            "--implementation",
            self.broker_implementation,
            "--users-file",
            str(broker_auth.users_file),
            "--tls-cert",
            str(broker_tls.cert_file),
            "--tls-key",
            str(broker_tls.key_file),
        )
        await broker.start()
        if "faultproxy" in self.processes:
            await wait_http(
                f"{self.faultproxy_url}/version",
                timeout=timeout,
                process=self.processes["faultproxy"],
            )
        await self._populate_proxies()

        cp = self._process(
            "controlplane",
            "serve",
            "controlplane",
            "--data-dir",
            str(self.state_dir / "controlplane"),
            "--listen",
            _addr(self.ports["controlplane"]),
            "--broker",
            self.proxy_address("cp-broker"),
            "--broker-credentials",
            str(self.broker_credentials[CONTROLPLANE_USER]),
            "--broker-ca",
            str(self.broker_ca_file),
            *(
                ("--legacy-dns-grace", str(self.legacy_dns_grace))
                if self.legacy_dns_grace is not None
                else ()
            ),
        )
        origin = self._origin_process()
        edges = [self._edge_process(pop) for pop in self.topology.pops]
        await asyncio.gather(
            cp.start(), *([origin.start()] if origin else []), *(e.start() for e in edges)
        )
        await asyncio.gather(
            wait_tcp(HOST, self.ports["broker"], timeout=timeout, process=broker),
            wait_http(f"{self.api_url}/health", timeout=timeout, process=cp),
            self._wait_origin(origin),
            *(
                wait_http(
                    f"http://{_addr(self.ports[f'edge-{pop}-metrics'])}/metrics",
                    timeout=timeout,
                    process=edge,
                )
                for pop, edge in zip(self.topology.pops, edges, strict=True)
            ),
        )
        await self._start_cloudflared_resolver()
        anycast = self._anycast_process()
        await anycast.start()
        await self._bootstrap()
        if self.cloudflared_binary is not None:
            # The same login for cloudflared's own CLI (`--origincert`, docs/cloudflared.md).
            write_cloudflared_origincert(self.origincert, self.cloudflared_origincert)
        await wait_http(f"{self.anycast_control_url}/pops", timeout=timeout, process=anycast)
        connectors = [
            self._connector_process(t, c) for t in self.topology.tunnels for c in t.connectors
        ]
        await asyncio.gather(*(c.start() for c in connectors))
        await asyncio.gather(*(self.wait_serving(t) for t in self.topology.tunnels))

    # ----------------------------------------------------------------- the origin

    @property
    def origin_url(self) -> str | None:
        """Where the connector sends requests (``None``: by ingress rules, see
        :meth:`origin_info`)."""
        user = self.topology.origin
        if user is None:
            return f"http://{_addr(self.ports['origin'])}"
        return user.service_url(self.ports["origin"])

    def origin_info(self) -> dict[str, Any]:
        """``stack.json``'s ``origin``: which origin runs, and how it is reached."""
        user = self.topology.origin
        if user is None:
            return {"kind": "reference", "url": self.origin_url}
        port = self.ports["origin"]
        info: dict[str, Any] = {"kind": user.kind, "url": self.origin_url, "health": user.health}
        if user.command is not None:
            info["command"] = user.shell_command(port)
        if user.ingress:
            info["ingress"] = user.ingress_rules(port)
        return info

    def _origin_process(self) -> ManagedProcess | None:
        """The reference echo origin, the user's command (``/bin/sh -c``), or nothing."""
        user = self.topology.origin
        if user is None:
            listen = _addr(self.ports["origin"])
            return self._process(
                "origin", "serve", "origin", "--name", "origin", "--listen", listen
            )
        if user.command is None:
            return None
        return self._spawn("origin", ["/bin/sh", "-c", user.shell_command(self.ports["origin"])])

    async def _wait_origin(self, origin: ManagedProcess | None) -> None:
        """Until the origin answers its health path; a user origin that does not is a
        :class:`StackError` naming its command (or url) and its last output lines."""
        user = self.topology.origin
        if user is None:
            assert origin is not None
            url = f"http://{_addr(self.ports['origin'])}/health"
            await wait_http(url, timeout=self.ready_timeout, process=origin)
            return
        base = (
            user.url.rstrip("/")
            if user.url is not None
            else f"http://{_addr(self.ports['origin'])}"
        )
        if user.command is None and user.url is None:
            return  # ingress rules to services the user runs: the tunnel's readiness tells
        try:
            await wait_http(
                base + user.health,
                timeout=self.origin_timeout,
                process=origin,
                expect_status=lambda status: status < 500,
            )
        except (TimeoutError, ProcessExited) as exc:
            if origin is None:
                raise StackError(f"origin url {user.url} is not answering: {exc}") from None
            reason = (
                f"exited with code {origin.returncode}"
                if not origin.running
                else f"did not answer {user.health} below 500 within {self.origin_timeout:g} s"
            )
            raise StackError(
                f"origin command {user.command!r} {reason}; last output ({origin.log_path}):\n"
                f"{origin.log_tail(15) or '(none)'}"
            ) from None

    @property
    def anycast_url(self) -> str:
        """The edge network's one visitor address (HTTP and WebSocket)."""
        return f"http://{_addr(self.ports['anycast-visitor'])}"

    @property
    def anycast_control_url(self) -> str:
        return f"http://{_addr(self.ports['anycast-control'])}"

    def _anycast_process(self) -> ManagedProcess:
        topo = self.topology
        args = [
            "serve",
            "anycast",
            "--listen",
            _addr(self.ports["anycast-visitor"]),
            "--dns-listen",
            _addr(self.ports["anycast-dns"]),
            "--control-listen",
            _addr(self.ports["anycast-control"]),
            "--convergence",
            str(topo.convergence),
            "--seed",
            str(self.seed),
        ]
        for pop in topo.pops:
            visitor = _addr(self.ports[f"edge-{pop}-visitor"])
            dns = _addr(self.ports[f"edge-{pop}-dns"])
            args += ["--pop", f"{pop}={visitor},{dns}"]
        for region in topo.visitor_regions:
            args += ["--region", region.argument()]
        return self._process("anycast", *args)

    def _edge_process(self, pop: str) -> ManagedProcess:
        pki = self.state_dir / "pki"
        return self._process(
            f"edge-{pop}",
            "serve",
            "edge",
            "--pop",
            pop,
            "--tunnel-listen",
            _addr(self.ports[f"edge-{pop}-tunnel"]),
            "--visitor-listen",
            _addr(self.ports[f"edge-{pop}-visitor"]),
            "--dns-listen",
            _addr(self.ports[f"edge-{pop}-dns"]),
            "--metrics-listen",
            _addr(self.ports[f"edge-{pop}-metrics"]),
            "--broker",
            self.proxy_address(f"edge-{pop}-broker"),
            "--broker-credentials",
            str(self.broker_credentials[edge_username(pop)]),
            "--broker-ca",
            str(self.broker_ca_file),
            "--api",
            self.proxy_address(f"edge-{pop}-api"),
            "--cache-dir",
            str(self.state_dir / f"edge-{pop}"),
            "--tls-cert",
            str(pki / f"edge-{pop}.pem"),
            "--tls-key",
            str(pki / f"edge-{pop}.key"),
            "--config-key",
            str(pki / PUBLIC_KEY_FILE),
            "--peer-listen",
            _addr(self.ports[f"edge-{pop}-peer"]),
            *(
                arg
                for peer in self.topology.pops
                if peer != pop
                for arg in ("--peer", f"{peer}={self.proxy_address(f'pop-{pop}-{peer}')}")
            ),
        )

    def _connector_process(self, tunnel: TunnelSpec, component: str) -> ManagedProcess:
        if self.connector_kind(tunnel) == "cloudflared":
            return self._cloudflared_process(tunnel, component)
        if tunnel.is_legacy:
            # Classic: no tunnel object, no credentials file; cert.pem + hostname at every
            # registration, which the edges pass on to the control plane.
            identity = ["--legacy", "--hostname", tunnel.hostname]
        else:
            identity = [
                self.tunnel_ids[tunnel.name],
                "--credentials-file",
                str(self.credentials_files[tunnel.name]),
            ]
        args = [
            "tunnel",
            "--origincert",
            str(self.origincert),
            "run",
            *identity,
            *self._origin_args(),
            "--edge-ca",
            str(self.edge_ca_file),
            "--metrics",
            _addr(self.ports[f"{component}-metrics"]),
        ]
        for pop in self.topology.pops:
            args += ["--edge", self.proxy_address(f"conn-{pop}")]
        return self._process(component, *args, *self.connector_args)

    async def _start_cloudflared_resolver(self) -> None:
        """Contain the cloudflared replicas' DNS, when the stack runs any and can."""
        if self.cloudflared_binary is None:
            return
        ok, why = can_contain()
        if not ok:
            self.dns_uncontained_reason = why
            return
        host = resolver_host(self.ports["cloudflared-resolver"])
        resolver = StackResolver(host, self.state_dir / "logs" / "cloudflared-dns.jsonl")
        await resolver.start()
        self.cloudflared_resolver = resolver
        write_resolv_conf(self.state_dir / "cloudflared-resolv.conf", host)

    def _cloudflared_process(self, tunnel: TunnelSpec, component: str) -> ManagedProcess:
        """One replica of ``tunnel`` as the real cloudflared (harness/stack/cloudflared.py)."""
        assert self.cloudflared_binary is not None
        if self.origin_url is None:
            raise StackError(
                "connector cloudflared: a stack origin given as ingress rules is not supported "
                "yet (give the origin a command or url)"
            )
        credentials = self.home / f"{tunnel.name}.cloudflared.json"
        if not credentials.exists():
            write_cloudflared_credentials(self.credentials_files[tunnel.name], credentials)
        run = CloudflaredRun(
            binary=self.cloudflared_binary,
            tunnel_id=self.tunnel_ids[tunnel.name],
            credentials_file=credentials,
            origin_url=self.origin_url,
            edge_links=tuple(self.proxy_address(f"conn-{pop}") for pop in self.topology.pops),
            edge_ca=self.edge_ca_file,
            metrics=_addr(self.ports[f"{component}-metrics"]),
            ha_connections=self.ha_connections,
        )
        argv = run.argv()
        if self.cloudflared_resolver is not None:
            argv = contained_argv(argv, self.state_dir / "cloudflared-resolv.conf")
        proc = self._spawn(component, argv)
        # A clean environment: cloudflared reads many TUNNEL_* variables, and looks for
        # config.yml under $HOME (the stack's user home has none).
        proc.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home)}
        return proc

    def _origin_args(self) -> list[str]:
        """``--url ORIGIN``, or ``--config`` with the user's ingress rules."""
        url = self.origin_url
        if url is not None:
            return ["--url", url]
        assert self.topology.origin is not None
        config = self.state_dir / "origin-ingress.yml"
        if not config.exists():
            rules = self.topology.origin.ingress_rules(self.ports["origin"])
            atomic_write(config, yaml.safe_dump({"ingress": rules}, sort_keys=False).encode())
        return ["--config", str(config)]

    async def _populate_proxies(self) -> None:
        plan = self._proxy_plan()
        async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
            response = await client.post(f"{self.faultproxy_url}/populate", json=plan)
        if response.status_code not in (200, 201):
            raise StackError(
                f"fault proxy refused /populate: {response.status_code} {response.text}"
            )
        self.proxies = {p["name"]: {"listen": p["listen"], "upstream": p["upstream"]} for p in plan}

    async def _cli(self, *args: str) -> str:
        """Run an ``outlast`` CLI command as the stack's user; return stdout."""
        env = dict(os.environ)
        env["OUTLAST_HOME"] = str(self.home)
        proc = await asyncio.create_subprocess_exec(
            *outlast_argv(*args),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise StackError(
                f"`outlast {' '.join(args[:3])} ...` failed ({proc.returncode}): "
                f"{err.decode(errors='replace').strip()}"
            )
        return out.decode()

    async def _bootstrap(self) -> None:
        topo = self.topology
        boot = json.loads(
            await self._cli(
                "controlplane",
                "--api",
                self.api_url,
                "--admin-token-file",
                str(self.admin_token_file),
                "bootstrap",
                "--account",
                topo.account,
                "--zone",
                topo.zone,
                "--email",
                topo.email,
            )
        )
        self.api_token = str(boot["api_token"])
        self.account_id = str(boot["account_id"])
        self.zone_id = str(boot["zone_id"])
        await self._cli(
            "tunnel",
            "login",
            "--api",
            self.api_url,
            "--token",
            self.api_token,
            "--zone",
            topo.zone,
            "--origincert",
            str(self.origincert),
        )
        for tunnel in topo.tunnels:
            if tunnel.is_legacy:
                # Created by its first registration; the id follows from zone and hostname.
                self.tunnel_ids[tunnel.name] = legacy_tunnel_id(self.zone_id, tunnel.hostname)
            else:
                await self.create_tunnel(tunnel)

    async def create_tunnel(self, tunnel: TunnelSpec) -> str:
        """Create and route ``tunnel`` through the connector CLI; return its id."""
        creds = self.home / f"{tunnel.name}.json"
        created = json.loads(
            await self._cli(
                "tunnel",
                "--origincert",
                str(self.origincert),
                "create",
                tunnel.name,
                "--credentials-file",
                str(creds),
                "-o",
                "json",
            )
        )
        tunnel_id = str(created["id"])
        await self._cli(
            "tunnel",
            "--origincert",
            str(self.origincert),
            "route",
            "dns",
            tunnel_id,
            tunnel.hostname,
        )
        self.tunnel_ids[tunnel.name] = tunnel_id
        self.credentials_files[tunnel.name] = creds
        return tunnel_id

    async def wait_serving(self, tunnel: TunnelSpec, timeout: float | None = None) -> None:
        """Wait until every replica of ``tunnel`` is ready and its hostname is served through
        every PoP and through the anycast entry."""
        timeout = timeout or self.ready_timeout
        connector = self.processes.get(tunnel.connector)
        # cloudflared dials its HA connections one after the other, a second apart: a scenario
        # starts when all are registered (the reference connector dials them at once).
        full = self.ha_connections if self.connector_kind(tunnel) == "cloudflared" else 1
        for component in tunnel.connectors:
            await wait_http(
                f"{self.connector_metrics_url(component)}/ready",
                timeout=timeout,
                process=self.processes.get(component),
                expect_body=lambda body: _ready_connections(body) >= full,
            )
        user = self.topology.origin
        path = user.health if user else "/"
        for url in [*(self.visitor_url(pop) for pop in self.topology.pops), self.anycast_url]:
            await wait_http(
                url + path,
                timeout=timeout,
                process=connector,
                headers={"Host": tunnel.hostname},
                # The user's service answers its health path below 500; edge errors are 5xx.
                expect_status=200 if user is None else (lambda status: status < 500),
            )

    # ----------------------------------------------------------------- component control

    def _component(self, component: str) -> ManagedProcess:
        try:
            return self.processes[component]
        except KeyError:
            known = ", ".join(sorted(self.processes))
            raise StackError(f"no component {component!r} in this stack (have: {known})") from None

    async def stop(self, component: str) -> None:
        await self._component(component).stop()

    async def kill(self, component: str) -> None:
        await self._component(component).kill()

    async def start(self, component: str) -> None:
        await self._component(component).start()

    async def restart(self, component: str) -> None:
        proc = self._component(component)
        await proc.stop()
        await proc.start()

    async def forget_state(self, component: str) -> None:
        proc = self._component(component)
        if not component.startswith("edge-"):
            raise StackError(f"only an edge's state can be forgotten, not {component!r}'s")
        if proc.running:
            raise StackError(f"{component} is running: stop it before forgetting its state")
        cache_dir = self.state_dir / component
        if cache_dir.is_dir():
            for path in cache_dir.iterdir():
                if path.is_file():
                    path.unlink()

    async def pause(self, component: str) -> None:
        self._component(component).pause()

    async def resume(self, component: str) -> None:
        self._component(component).resume()


def _ready_connections(body: bytes) -> int:
    """``readyConnections`` of a connector's ``/ready`` body (0 if it is not that JSON)."""
    try:
        value = json.loads(body).get("readyConnections", 0)
    except (ValueError, AttributeError):
        return 0
    return int(value) if isinstance(value, int) else 0
