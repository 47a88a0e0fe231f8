"""Plays a scenario: brings up a stack, runs probes, applies the timeline's faults, writes a report.

The run's only output that matters is the journal; the report is computed from it afterwards
(``harness.report``). Whatever happens — a fault that cannot be applied, a stack that does not
come up, Ctrl-C — every fault is undone, the stack is torn down, and the journal is kept.

Probes: visitors always; DNS and metrics when the scenario's traffic asks for them; management
calls (``api_call`` operations, ``harness.probes.management``) when a check reads them. While
it plays, the run reports events (``RunOptions.progress``) and, twice a second, a
:class:`RunStatus` (``RunOptions.status``) for a live view (``harness.run_progress``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.faultproxy.client import FaultProxyClient
from harness.faults.base import Fault, FaultContext, make_fault
from harness.journal import Journal, TunnelInfo
from harness.probes.dns import DnsProbe
from harness.probes.management import ManagementProbe
from harness.probes.metrics import MetricsProbe, ScrapeTarget
from harness.probes.registration_log import RegistrationLogProbe
from harness.probes.user_requests import NOT_AVAILABLE
from harness.probes.visitors import ANYCAST, VisitorProbe, VisitorTarget
from harness.report.run_dir import RunReport, write_report
from harness.scenario import Scenario, TimelineEntry, save_scenario
from harness.stack.base import Stack
from harness.stack.layout import reap_abandoned_stacks, remove_secrets
from harness.stack.local import LocalStack
from harness.stack.topology import Topology

Progress = Callable[[str], None]
STATUS_INTERVAL = 0.5  # seconds between two RunStatus reports


@dataclass(frozen=True)
class RunStatus:
    """Where a playing scenario is: for a live progress view (all times real seconds)."""

    scenario: str
    elapsed: float
    total: float
    active: tuple[str, ...]  # labels of the faults in effect now
    ok: int
    fail: int
    info: int
    planned: tuple[tuple[float, float], ...] = ()  # the timeline's fault windows (start, end)

    @property
    def availability(self) -> float | None:
        """Visitor availability so far (ok / decided), ``None`` before the first answer."""
        decided = self.ok + self.fail
        return self.ok / decided if decided else None


StatusSink = Callable[[RunStatus], None]


@dataclass
class RunOptions:
    """How to run a scenario (overrides of the scenario's own seed and time scale)."""

    backend: str = "local"
    seed: int | None = None
    time_scale: float | None = None
    speed: float | None = None  # play each scenario this many times faster than its own scale
    report_dir: Path = Path("reports")
    progress: Progress | None = None
    status: StatusSink | None = None
    connector_args: tuple[str, ...] = ()
    #: What runs the named tunnels (``None``: the scenario's ``stack.connector``).
    connector: str | None = None
    #: The cloudflared binary (``None``: ``harness.stack.cloudflared.locate_cloudflared``).
    cloudflared: Path | None = None


def topology_of(scenario: Scenario) -> Topology:
    """The stack shape a scenario asks for."""
    return scenario.stack.topology()


def make_stack(scenario: Scenario, options: RunOptions, state_dir: Path) -> Stack:
    """The stack backend for this run."""
    args = ("--ha-connections", str(scenario.stack.ha_connections), *options.connector_args)
    connector = connector_of(scenario, options)
    if options.backend == "local":
        return LocalStack(
            state_dir,
            topology_of(scenario),
            seed=scenario.seed,
            connector_args=args,
            connector=connector,
            cloudflared=options.cloudflared,
            ha_connections=scenario.stack.ha_connections,
        )
    if connector != "reference":
        raise ValueError(
            f"connector {connector!r} runs on the local backend only (the compose backend "
            "runs the reference connector)"
        )
    if options.backend == "compose":
        from harness.stack.compose import ComposeStack

        return ComposeStack(
            state_dir, topology_of(scenario), seed=scenario.seed, connector_args=args
        )
    if options.backend == "swarm":
        from harness.stack.swarm import SwarmStack

        return SwarmStack(state_dir, topology_of(scenario), seed=scenario.seed, connector_args=args)
    if options.backend == "kubernetes":
        from harness.stack.kubernetes import KubernetesStack

        return KubernetesStack(
            state_dir, topology_of(scenario), seed=scenario.seed, connector_args=args
        )
    raise ValueError(
        f"unknown backend {options.backend!r} (available: local, compose, swarm, kubernetes)"
    )


def connector_of(scenario: Scenario, options: RunOptions) -> str:
    """What runs the scenario's named tunnels: the command line's choice, else the scenario's."""
    return options.connector or scenario.stack.connector


def effective_scenario(scenario: Scenario, options: RunOptions) -> Scenario:
    """The scenario with the command line's overrides applied (what the run really plays)."""
    update: dict[str, Any] = {}
    if options.seed is not None:
        update["seed"] = options.seed
    if options.time_scale is not None:
        update["time_scale"] = options.time_scale
    elif options.speed is not None:
        update["time_scale"] = scenario.time_scale / options.speed
    return scenario.model_copy(update=update) if update else scenario


def new_run_dir(report_dir: Path, scenario: Scenario) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = report_dir / f"{stamp}-{scenario.name}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = report_dir / f"{stamp}-{scenario.name}-{suffix}"
    run_dir.mkdir(parents=True)
    return run_dir


@dataclass
class _ActiveFault:
    entry: TimelineEntry
    fault: Fault
    fault_id: str
    healed: bool = False


@dataclass
class ScenarioRun:
    """One run of one scenario on one stack."""

    scenario: Scenario
    stack: Stack
    journal: Journal
    progress: Progress
    status: StatusSink | None = None
    active: list[_ActiveFault] = field(default_factory=list)
    fault_ctx: FaultContext | None = None
    visitors: VisitorProbe | None = None
    started: float | None = None

    def _say(self, message: str) -> None:
        if self.started is not None:
            message = f"{time.monotonic() - self.started:7.1f}s  {message}"
        self.progress(message)

    async def play(self) -> None:
        """Run probes and the timeline; returns when the scenario's duration has elapsed."""
        scenario = self.scenario
        endpoints = self.stack.endpoints()
        tunnels = {t["name"]: t for t in endpoints["tunnels"]}
        self.journal.run(
            scenario=scenario.name,
            seed=scenario.seed,
            time_scale=scenario.time_scale,
            backend=endpoints.get("backend", "local"),
            pops=tuple(scenario.stack.pops),
            tunnels={
                name: TunnelInfo(id=t["id"] or "", kind=t["kind"], hostnames=(t["hostname"],))
                for name, t in tunnels.items()
            },
            ha_connections=scenario.stack.ha_connections,
            clock_start=scenario.clock.start.isoformat() if scenario.clock else None,
            meta={
                "startup_seconds": endpoints.get("startup_seconds"),
                "origin": endpoints.get("origin") or {"kind": "reference"},
                "integrity": integrity_plan(scenario),
                "connector": endpoints.get("connector") or {"kind": "reference"},
            },
        )
        async with FaultProxyClient(endpoints["faultproxy"]["url"]) as faultproxy:
            self.fault_ctx = FaultContext(
                stack=self.stack,
                faultproxy=faultproxy,
                api_url=endpoints["api_url"],
                admin_token_file=endpoints["admin_token_file"],
                tunnels={name: t["id"] for name, t in tunnels.items()},
                home=str(Path(endpoints["origincert"]).parent),
                origincert=endpoints["origincert"],
                zone=str(endpoints.get("zone") or scenario.stack.zone),
            )
            stop = asyncio.Event()
            probes = self._probes(endpoints, tunnels)
            probe_tasks = [asyncio.create_task(p.run(stop)) for p in probes]
            fault_tasks: list[asyncio.Task[None]] = []
            try:
                started = self.started = time.monotonic()
                fault_tasks = [
                    asyncio.create_task(self._play_entry(entry, started))
                    for entry in scenario.timeline
                ]
                await self._wait_until(started, scenario.real_duration, fault_tasks)
            finally:
                for task in fault_tasks:
                    task.cancel()
                await asyncio.gather(*fault_tasks, return_exceptions=True)
                await self.heal_all()
                stop.set()
                await asyncio.gather(*probe_tasks, return_exceptions=True)

    async def _wait_until(
        self, started: float, seconds: float, fault_tasks: list[asyncio.Task[None]]
    ) -> None:
        deadline = started + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(STATUS_INTERVAL, remaining))
            for task in fault_tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if self.status is not None:
                self.status(self.run_status(time.monotonic() - started))

    def run_status(self, elapsed: float) -> RunStatus:
        """The run's state after ``elapsed`` real seconds of timeline."""
        scale = self.scenario.time_scale
        planned = tuple(
            (
                float(e.at) * scale,
                float(e.end if e.end is not None else e.at) * scale,
            )
            for e in self.scenario.timeline
        )
        outcomes = self.visitors.outcomes if self.visitors else {"ok": 0, "fail": 0, "info": 0}
        return RunStatus(
            scenario=self.scenario.name,
            elapsed=elapsed,
            total=self.scenario.real_duration,
            active=tuple(a.entry.label() for a in self.active if not a.healed),
            ok=outcomes["ok"],
            fail=outcomes["fail"],
            info=outcomes["info"],
            planned=planned,
        )

    def _probes(self, endpoints: dict[str, Any], tunnels: dict[str, Any]) -> list[Any]:
        traffic = self.scenario.traffic
        hostnames = set(traffic.hostnames or [t["hostname"] for t in tunnels.values()])
        if traffic.entry == "pops":
            pops = traffic.pops or tuple(endpoints["pops"])
            entries = {pop: endpoints["pops"][pop]["visitor_url"] for pop in pops}
        else:
            entries = {ANYCAST: endpoints["visitor_url"]}
        targets = [
            VisitorTarget(t["hostname"], name, t["id"] or "")
            for name, t in sorted(tunnels.items())
            if t["hostname"] in hostnames
        ]
        self.visitors = VisitorProbe(
            self.journal,
            entries=entries,
            targets=targets,
            rate=traffic.rate,
            mix=traffic.mix.model_dump(),
            body_size=traffic.body_size,
            body_sizes=traffic.body_sizes,
            response_sizes=traffic.response_sizes,
            timeout=float(traffic.timeout),
            seed=self.scenario.seed,
            requests=traffic.requests,
        )
        probes: list[Any] = [self.visitors]
        if traffic.dns_interval:
            servers = {}
            dns = {ANYCAST: endpoints["dns"]} | {p: i["dns"] for p, i in endpoints["pops"].items()}
            for name, address in dns.items():
                host, _, port = address.rpartition(":")
                servers[name] = (host, int(port))
            probes.append(
                DnsProbe(self.journal, servers, sorted(hostnames), float(traffic.dns_interval))
            )
        if traffic.metrics_interval:
            scrape = [
                ScrapeTarget(
                    "connector",
                    component,
                    urls["metrics_url"],
                    name,
                    # cloudflared's ha_connections gauge counts connection loops, also those
                    # waiting to redial: its /ready says how many are registered.
                    ready_url=(
                        urls["ready_url"] if t.get("connector_kind") == "cloudflared" else None
                    ),
                )
                for name, t in tunnels.items()
                for component, urls in t["connectors"].items()
            ]
            scrape += [
                ScrapeTarget("edge", f"edge-{pop}", info["metrics_url"], pop)
                for pop, info in endpoints["pops"].items()
            ]
            scrape.append(
                ScrapeTarget("controlplane", "controlplane", f"{endpoints['api_url']}/metrics")
            )
            probes.append(MetricsProbe(self.journal, scrape, float(traffic.metrics_interval)))
            edge_logs = {
                name: Path(info["log"])
                for name, info in (endpoints.get("components") or {}).items()
                if name.startswith("edge-")
                and info.get("log")
                and endpoints.get("backend", "local") == "local"
            }
            if edge_logs:
                probes.append(
                    RegistrationLogProbe(self.journal, edge_logs, float(traffic.metrics_interval))
                )
        if wants_management_probe(self.scenario):
            ctx = self.fault_ctx
            assert ctx is not None
            probes.append(
                ManagementProbe(
                    self.journal,
                    api_url=endpoints["api_url"],
                    origincert=Path(endpoints["origincert"]),
                    fresh_origincert=Path(endpoints["origincert"]).with_name("cert-fresh.pem"),
                    zone=ctx.zone,
                    new_token=lambda: ctx.user_tokens.get(ctx.email),
                    interval=MANAGEMENT_INTERVAL,
                )
            )
        return probes

    async def _play_entry(self, entry: TimelineEntry, started: float) -> None:
        scale = self.scenario.time_scale
        await asyncio.sleep(max(0.0, started + float(entry.at) * scale - time.monotonic()))
        assert self.fault_ctx is not None
        params = entry.params.model_dump(mode="json")
        fault = make_fault(entry.fault, entry.target or _default_target(entry.fault), params)
        label = entry.name or f"{entry.fault} {entry.target or ''}".strip()
        early = entry.fault not in OPENS_AFTER_INJECT
        fid = (
            self.journal.fault_start(entry.fault, entry.target, params, name=entry.name)
            if early
            else None
        )
        try:
            await fault.inject(self.fault_ctx)
        except asyncio.CancelledError:
            if fid is not None:  # cancelled half-way (Ctrl-C, SIGTERM): heal_all undoes it
                self.active.append(_ActiveFault(entry, fault, fid))
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if fid is None:
                fid = self.journal.fault_start(
                    entry.fault, entry.target, params, name=entry.name, error=error
                )
            self.journal.fault_stop(
                fid,
                entry.fault,
                entry.target,
                params,
                name=entry.name,
                error=error if early else None,
            )
            raise
        if fid is None:
            fid = self.journal.fault_start(entry.fault, entry.target, params, name=entry.name)
        await self._note_orchestrator(f"after {label}")
        active = _ActiveFault(entry, fault, fid)
        self.active.append(active)
        self._say(f"fault start: {label}")
        if entry.duration is None:
            if entry.fault in ("restart", "token_rollover", "credential_revocation", "task_kill"):
                await self._heal(active)  # instantaneous: the window is the action itself
            return
        end = started + (float(entry.at) + float(entry.duration)) * scale
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        await self._heal(active)

    async def _heal(self, active: _ActiveFault) -> None:
        if active.healed:
            return
        assert self.fault_ctx is not None
        entry = active.entry
        params = entry.params.model_dump(mode="json")
        error = None
        try:
            await active.fault.heal(self.fault_ctx)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        active.healed = True
        self.journal.fault_stop(
            active.fault_id, entry.fault, entry.target, params, name=entry.name, error=error
        )
        await self._note_orchestrator(f"after healing {entry.label()}")
        self._say(f"fault stop:  {entry.label()}" + (f" (heal failed: {error})" if error else ""))

    async def _note_orchestrator(self, when: str) -> None:
        """Journal what the orchestrator did (Swarm task states), for backends that have one."""
        task_states = getattr(self.fault_ctx.stack if self.fault_ctx else None, "task_states", None)
        if task_states is None:
            return
        try:
            tasks = await asyncio.to_thread(task_states)
        except Exception as exc:  # a diagnostic: never fail the run for it
            self.journal.note(f"swarm tasks {when}: unavailable ({exc})", level="warning")
            return
        self.journal.note(f"swarm tasks {when}", tasks=tasks)

    async def heal_all(self) -> None:
        """Undo every fault still in effect (end of run, failure, or Ctrl-C)."""
        for active in list(self.active):
            with contextlib.suppress(Exception):
                await asyncio.shield(self._heal(active))


MANAGEMENT_INTERVAL = 1.0  # seconds between two rounds of management calls
OPENS_AFTER_INJECT = frozenset({"token_rollover"})
"""A fault's window opens just before ``inject``: its effect starts somewhere inside (a disabled
link closes connections before the proxy API answers; a restart stops the component at once), so
everything it disrupts falls inside the window. The exceptions open once ``inject`` is done,
because checks read their start as "from here on": a rolled token must be refused from then."""


def integrity_plan(scenario: Scenario) -> dict[str, Any]:
    """Which integrity checks the run's traffic can make (the run metadata, for reports)."""
    requests = scenario.traffic.requests
    if not requests:
        return {
            "traffic": "echo",
            "applied": ["status", "request_id_echo", "body_digest", "tunnel", "tunnel_digest"],
            "not_available": {},
        }
    applied = ["status", "tunnel", "tunnel_digest"]
    if any(r.expect_body_contains is not None or r.expect is not None for r in requests):
        applied.append("body")
    if any(r.static for r in requests):
        applied.append("static_digest")
    return {"traffic": "user", "applied": applied, "not_available": dict(NOT_AVAILABLE)}


def wants_management_probe(scenario: Scenario) -> bool:
    """Management calls are probed only when a check reads them (``api_call`` operations):
    they are control-plane requests, which other checks count."""
    return any("api_call" in getattr(check.params, "functions", ()) for check in scenario.checks)


def _default_target(kind: str) -> str:
    return {
        "controlplane_outage": "controlplane",
        "broker_outage": "broker",
        "token_rollover": "user",
    }.get(kind, "")


STACK_UP_ATTEMPTS = 3


def is_port_race(error: BaseException) -> bool:
    """Whether a stack failed to come up only because a port it had picked was taken before its
    component could bind it (other stacks or connections on the machine): worth a new try."""
    return "address already in use" in str(error).lower()


async def _bring_up(scenario: Scenario, options: RunOptions, run_dir: Path, say: Progress) -> Stack:
    """A running stack for the run; a port race gets a fresh stack (and fresh ports)."""
    for attempt in range(1, STACK_UP_ATTEMPTS + 1):
        name = "stack" if attempt == 1 else f"stack-{attempt}"
        stack = make_stack(scenario, options, run_dir / name)
        try:
            await stack.up()
            return stack
        except BaseException as exc:  # also Ctrl-C: whatever started is stopped
            with contextlib.suppress(Exception):
                await asyncio.shield(stack.down())
            if attempt == STACK_UP_ATTEMPTS or not isinstance(exc, Exception):
                raise
            if not is_port_race(exc):
                raise
            say(f"{scenario.name}: a port was taken while the stack started; starting afresh")
    raise AssertionError("unreachable")


async def run_scenario(scenario: Scenario, options: RunOptions | None = None) -> RunReport:
    """Run ``scenario`` and write its report directory; returns the computed report."""
    options = options or RunOptions()
    scenario = effective_scenario(scenario, options)
    say = options.progress or (lambda _message: None)
    for state_dir, killed in reap_abandoned_stacks(options.report_dir):
        say(f"stopped a stack left by a killed run in {state_dir}: {', '.join(killed) or 'none'}")
    run_dir = new_run_dir(options.report_dir, scenario)
    save_scenario(scenario, run_dir / "scenario.yaml")
    journal = Journal(run_dir / "journal.jsonl")
    stack: Stack | None = None
    status, error = "completed", None
    say(f"{scenario.name}: starting the {options.backend} stack")
    try:
        try:
            stack = await _bring_up(scenario, options, run_dir, say)
        except Exception as exc:
            status, error = "error", f"stack did not come up: {exc}"
            journal.run(
                scenario=scenario.name,
                seed=scenario.seed,
                time_scale=scenario.time_scale,
                backend=options.backend,
            )
            raise
        say(
            f"{scenario.name}: stack up in {stack.endpoints().get('startup_seconds')} s; "
            f"playing {scenario.real_duration:.0f} s of timeline (time scale "
            f"{scenario.time_scale:g})"
        )
        run = ScenarioRun(scenario, stack, journal, say, options.status)
        await run.play()
    except asyncio.CancelledError:
        status, error = "aborted", "interrupted"
        raise
    except Exception as exc:
        if status == "completed":
            status, error = "error", f"{type(exc).__name__}: {exc}"
        say(f"{scenario.name}: run error: {error}")
    finally:
        if stack is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(stack.down())
        for state_dir in sorted(run_dir.glob("stack*")):  # the report dir is safe to publish
            for left in remove_secrets(state_dir):
                say(f"{scenario.name}: could not remove {left} (it may hold credentials)")
        journal.close(status, error)  # type: ignore[arg-type]
        report = write_report(run_dir)
    return report
