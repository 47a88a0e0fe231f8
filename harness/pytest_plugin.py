"""pytest plugin: a running reference stack, its faults and a traffic probe for your own tests.

Installed with Outlast (entry point ``pytest11: outlast``); fixtures start nothing until a test
asks for them. They are synchronous, so they work in plain and in async tests alike::

    def test_survives_control_plane_outage(outlast_stack, outlast_faults, outlast_traffic):
        with outlast_faults.component_down("controlplane"):
            result = outlast_traffic.measure(seconds=3, rate=20)
        assert result.availability == 1.0

* ``outlast_stack`` (session): a :class:`RunningStack` — endpoints, component control.
* ``outlast_faults`` (function): a :class:`Faults` handle; every fault a test leaves behind is
  undone after it (proxies re-enabled, toxics removed, stopped components started).
* ``outlast_traffic`` (function): a :class:`Traffic` handle — single requests and measured bursts.

* ``outlast_origin`` (session): the service behind the tunnel — ``None`` (the reference echo
  origin) unless ``--outlast-origin-command``/``--outlast-origin-url`` is given; override it in
  a ``conftest.py`` to put your own service there::

      @pytest.fixture(scope="session")
      def outlast_origin():
          return UserOrigin(command="{python} -m myapp --port {port}", health="/health")

Options: ``--outlast-pops ams,fra``, ``--outlast-tunnels N``, ``--outlast-keep-state``,
``--outlast-origin-command CMD``, ``--outlast-origin-url URL``, ``--outlast-origin-health PATH``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import tempfile
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from harness.faultproxy.client import FaultProxyClient
from harness.journal import History, Journal
from harness.probes.visitors import ANYCAST, VisitorProbe, VisitorTarget
from harness.scenario.origin import UserRequest
from harness.stack.local import LocalStack
from harness.stack.topology import Topology
from harness.stack.user_origin import UserOrigin

T = TypeVar("T")


class RunningStack:
    """A :class:`LocalStack` on its own event-loop thread, driven synchronously."""

    def __init__(
        self,
        state_dir: Path,
        topology: Topology,
        *,
        connector: str = "reference",
        cloudflared: str | None = None,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="outlast-stack", daemon=True
        )
        self.thread.start()
        self.stack = LocalStack(state_dir, topology, connector=connector, cloudflared=cloudflared)
        self.stopped: set[str] = set()
        try:
            self.call(self.stack.up())
        except BaseException:
            self._stop_loop()
            raise
        self.endpoints: dict[str, Any] = self.stack.endpoints()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run ``coroutine`` on the stack's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def topology(self) -> Topology:
        return self.stack.topology

    def visitor_url(self, pop: str | None = None) -> str:
        """The edge network's anycast visitor address, or one PoP's own address."""
        return self.stack.visitor_url(pop) if pop else str(self.endpoints["visitor_url"])

    def stop(self, component: str) -> None:
        self.call(self.stack.stop(component))
        self.stopped.add(component)

    def kill(self, component: str) -> None:
        self.call(self.stack.kill(component))
        self.stopped.add(component)

    def start(self, component: str) -> None:
        self.call(self.stack.start(component))
        self.stopped.discard(component)

    def restart(self, component: str) -> None:
        self.call(self.stack.restart(component))

    def restore(self) -> None:
        """Start every component a test stopped, and wait until every tunnel serves again."""
        for component in sorted(self.stopped):
            self.start(component)
        for tunnel in self.topology.tunnels:
            self.call(self.stack.wait_serving(tunnel))

    def close(self) -> None:
        try:
            self.call(self.stack.down())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Faults:
    """Fault injection for one test: links through the fault proxy, components through the stack."""

    def __init__(self, stack: RunningStack) -> None:
        self.stack = stack
        self.url: str = stack.endpoints["faultproxy"]["url"]

    async def _proxy_call(self, link: str, action: str, *args: Any, **kwargs: Any) -> Any:
        async with FaultProxyClient(self.url) as client:
            proxy = await client.get_proxy(link)
            return await getattr(proxy, action)(*args, **kwargs)

    @contextlib.contextmanager
    def link_down(self, link: str) -> Iterator[None]:
        """The fault-proxy link ``link`` (e.g. ``conn-ams``) refuses and drops connections."""
        self.stack.call(self._proxy_call(link, "disable"))
        try:
            yield
        finally:
            self.stack.call(self._proxy_call(link, "enable"))

    @contextlib.contextmanager
    def toxic(
        self, link: str, toxic_type: str, stream: str = "downstream", **attributes: int
    ) -> Iterator[None]:
        """A Toxiproxy toxic (``latency``, ``timeout``, ``reset_peer``...) on ``link``."""
        toxic = self.stack.call(
            self._proxy_call(link, "add_toxic", toxic_type, attributes, stream=stream)
        )
        try:
            yield
        finally:
            self.stack.call(self._proxy_call(link, "remove_toxic", toxic.name))

    @contextlib.contextmanager
    def component_down(self, component: str) -> Iterator[None]:
        """``component`` (e.g. ``controlplane``, ``broker``, ``edge-ams``) stopped for the block."""
        self.stack.stop(component)
        try:
            yield
        finally:
            self.stack.start(component)

    def reset(self) -> None:
        """Undo everything: re-enable all proxies, remove all toxics, start stopped components."""

        async def reset_proxies() -> None:
            async with FaultProxyClient(self.url) as client:
                await client.reset()

        self.stack.call(reset_proxies())
        self.stack.restore()


@dataclass(frozen=True)
class TrafficResult:
    """Outcome of a measured burst of visitor requests."""

    ok: int
    failed: int
    indeterminate: int
    history: History

    @property
    def availability(self) -> float:
        decided = self.ok + self.failed
        return self.ok / decided if decided else 0.0


class Traffic:
    """Visitor traffic through the stack's edges."""

    def __init__(self, stack: RunningStack, workdir: Path) -> None:
        self.stack = stack
        self.workdir = workdir
        self.runs = 0

    def get(
        self,
        path: str = "/",
        *,
        pop: str | None = None,
        hostname: str | None = None,
        timeout: float = 10.0,
    ) -> httpx.Response:
        """One GET as a visitor of ``hostname`` (default: the first tunnel's) through the
        anycast entry, or at one ``pop``'s own address."""
        host = hostname or self.stack.topology.tunnels[0].hostname
        return httpx.get(
            self.stack.visitor_url(pop) + path,
            headers={"Host": host},
            timeout=timeout,
            trust_env=False,
        )

    def measure(
        self,
        seconds: float,
        rate: float = 20.0,
        *,
        mix: dict[str, float] | None = None,
        seed: int = 0,
        pops: tuple[str, ...] = (),
        requests: Sequence[UserRequest | Mapping[str, Any]] = (),
    ) -> TrafficResult:
        """Send visitor requests at ``rate``/s for ``seconds`` and judge every answer: through
        the anycast entry, or round robin over the own addresses of ``pops``. ``requests`` are
        the user's (as ``traffic.requests`` in a scenario, e.g. ``{"path": "/health"}``) instead
        of the echo mix: what a test of your own service (``outlast_origin``) sends."""
        chosen = [
            r if isinstance(r, UserRequest) else UserRequest.model_validate(r) for r in requests
        ]
        self.runs += 1
        path = self.workdir / f"traffic-{self.runs}.jsonl"
        endpoints = self.stack.endpoints
        targets = [VisitorTarget(t["hostname"], t["name"], t["id"]) for t in endpoints["tunnels"]]
        entries = (
            {pop: endpoints["pops"][pop]["visitor_url"] for pop in pops}
            if pops
            else {ANYCAST: endpoints["visitor_url"]}
        )

        async def burst() -> VisitorProbe:
            with Journal(path) as journal:
                probe = VisitorProbe(
                    journal,
                    entries=entries,
                    targets=targets,
                    rate=rate,
                    mix=mix or {"get": 1.0},
                    seed=seed,
                    requests=chosen,
                )
                stop = asyncio.Event()
                task = asyncio.create_task(probe.run(stop))
                await asyncio.sleep(seconds)
                stop.set()
                await task
            return probe

        probe = self.stack.call(burst(), timeout=seconds + 60)
        counts = probe.outcomes
        return TrafficResult(counts["ok"], counts["fail"], counts["info"], History.from_path(path))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("outlast", "Outlast reference stack fixtures")
    group.addoption("--outlast-pops", default="ams,fra", help="PoPs of the fixture stack")
    group.addoption("--outlast-tunnels", type=int, default=1, help="named tunnels to run")
    group.addoption(
        "--outlast-origin-command",
        default=None,
        help="your service instead of the echo origin, run by /bin/sh ({port} = its port)",
    )
    group.addoption("--outlast-origin-url", default=None, help="your running service's URL")
    group.addoption("--outlast-origin-health", default="/", help="health path of your service")
    group.addoption(
        "--outlast-connector",
        choices=("reference", "cloudflared"),
        default="reference",
        help="what runs the named tunnels: the reference connector or the real cloudflared",
    )
    group.addoption(
        "--outlast-cloudflared",
        default=None,
        help="the cloudflared binary (default: $OUTLAST_CLOUDFLARED, ../shared/cloudflared/, PATH)",
    )
    group.addoption(
        "--outlast-keep-state",
        action="store_true",
        help="keep the stack's state directory (logs) after the session",
    )


@pytest.fixture(scope="session")
def outlast_origin(request: pytest.FixtureRequest) -> UserOrigin | None:
    """The service behind the tunnel (``None``: the reference echo origin); see module doc."""
    config = request.config
    command = config.getoption("--outlast-origin-command")
    url = config.getoption("--outlast-origin-url")
    if command is None and url is None:
        return None
    try:
        return UserOrigin(
            command=command, url=url, health=str(config.getoption("--outlast-origin-health"))
        )
    except ValueError as exc:
        raise pytest.UsageError(f"--outlast-origin-*: {exc}") from None


@pytest.fixture(scope="session")
def outlast_stack(
    request: pytest.FixtureRequest, outlast_origin: UserOrigin | None
) -> Iterator[RunningStack]:
    """A running embedded stack (broker, control plane, edges, origin, fault proxy, connector)."""
    config = request.config
    pops = tuple(p for p in str(config.getoption("--outlast-pops")).split(",") if p)
    topology = Topology.numbered(pops, int(config.getoption("--outlast-tunnels")))
    if outlast_origin is not None:
        topology = dataclasses.replace(topology, origin=outlast_origin)
    state_dir = Path(tempfile.mkdtemp(prefix="outlast-stack-"))
    stack = RunningStack(
        state_dir / "stack",
        topology,
        connector=str(config.getoption("--outlast-connector")),
        cloudflared=config.getoption("--outlast-cloudflared"),
    )
    try:
        yield stack
    finally:
        stack.close()
        if not config.getoption("--outlast-keep-state"):
            shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def outlast_faults(outlast_stack: RunningStack) -> Iterator[Faults]:
    """Faults for this test; all undone afterwards."""
    faults = Faults(outlast_stack)
    try:
        yield faults
    finally:
        faults.reset()


@pytest.fixture
def outlast_traffic(outlast_stack: RunningStack, tmp_path: Path) -> Traffic:
    """Visitor traffic through the stack, judged for routing and integrity."""
    return Traffic(outlast_stack, tmp_path)
