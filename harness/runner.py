"""Plays a scenario: brings up a stack, runs probes, applies the timeline's faults, writes a report.

The run's only output that matters is the journal; the report is computed from it afterwards
(``harness.report``). Whatever happens — a fault that cannot be applied, a stack that does not
come up, Ctrl-C — every fault is undone, the stack is torn down, and the journal is kept.
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
from harness.probes.metrics import MetricsProbe, ScrapeTarget
from harness.probes.visitors import VisitorProbe, VisitorTarget
from harness.report.run_dir import RunReport, write_report
from harness.scenario import Scenario, TimelineEntry, save_scenario
from harness.stack.base import Stack
from harness.stack.local import LocalStack
from harness.stack.topology import Topology, TunnelSpec

Progress = Callable[[str], None]


@dataclass
class RunOptions:
    """How to run a scenario (overrides of the scenario's own seed and time scale)."""

    backend: str = "local"
    seed: int | None = None
    time_scale: float | None = None
    report_dir: Path = Path("reports")
    progress: Progress | None = None
    connector_args: tuple[str, ...] = ()


def topology_of(scenario: Scenario) -> Topology:
    """The stack shape a scenario asks for."""
    spec = scenario.stack
    return Topology(
        pops=tuple(spec.pops),
        tunnels=tuple(TunnelSpec(t.name, t.hostname, t.kind) for t in spec.tunnels),
        zone=spec.zone,
    )


def make_stack(scenario: Scenario, options: RunOptions, state_dir: Path) -> Stack:
    """The stack backend for this run."""
    args = ("--ha-connections", str(scenario.stack.ha_connections), *options.connector_args)
    if options.backend == "local":
        return LocalStack(state_dir, topology_of(scenario), seed=scenario.seed, connector_args=args)
    if options.backend == "compose":
        from harness.stack.compose import ComposeStack

        return ComposeStack(
            state_dir, topology_of(scenario), seed=scenario.seed, connector_args=args
        )
    raise ValueError(f"unknown backend {options.backend!r} (available: local, compose)")


def effective_scenario(scenario: Scenario, options: RunOptions) -> Scenario:
    """The scenario with the command line's overrides applied (what the run really plays)."""
    update: dict[str, Any] = {}
    if options.seed is not None:
        update["seed"] = options.seed
    if options.time_scale is not None:
        update["time_scale"] = options.time_scale
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
    active: list[_ActiveFault] = field(default_factory=list)
    fault_ctx: FaultContext | None = None
    visitors: VisitorProbe | None = None

    def _say(self, message: str) -> None:
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
            meta={"startup_seconds": endpoints.get("startup_seconds")},
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
            )
            stop = asyncio.Event()
            probes = self._probes(endpoints, tunnels)
            probe_tasks = [asyncio.create_task(p.run(stop)) for p in probes]
            fault_tasks: list[asyncio.Task[None]] = []
            try:
                started = time.monotonic()
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
        last_report = 0.0
        while (remaining := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, remaining))
            for task in fault_tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            now = time.monotonic()
            if now - last_report >= 5:
                last_report = now
                self._say(self._status_line(now - started))

    def _status_line(self, elapsed: float) -> str:
        active = [f"{a.entry.fault}({a.entry.target or ''})" for a in self.active if not a.healed]
        total = self.scenario.real_duration
        return (
            f"  {elapsed:6.1f}/{total:.0f} s  {self.journal_summary()}  "
            f"active: {', '.join(active) or 'none'}"
        )

    def journal_summary(self) -> str:
        if self.visitors is None:
            return ""
        c = self.visitors.outcomes
        done = c["ok"] + c["fail"]
        availability = f"{100 * c['ok'] / done:.2f}%" if done else "-"
        return f"visitors ok {c['ok']} fail {c['fail']} info {c['info']} ({availability})"

    def _probes(self, endpoints: dict[str, Any], tunnels: dict[str, Any]) -> list[Any]:
        traffic = self.scenario.traffic
        hostnames = set(traffic.hostnames or [t["hostname"] for t in tunnels.values()])
        pops = traffic.pops or tuple(endpoints["pops"])
        targets = [
            VisitorTarget(t["hostname"], name, t["id"] or "")
            for name, t in sorted(tunnels.items())
            if t["hostname"] in hostnames
        ]
        self.visitors = VisitorProbe(
            self.journal,
            pops={pop: endpoints["pops"][pop]["visitor_url"] for pop in pops},
            targets=targets,
            rate=traffic.rate,
            mix=traffic.mix.model_dump(),
            body_size=traffic.body_size,
            timeout=float(traffic.timeout),
            seed=self.scenario.seed,
        )
        probes: list[Any] = [self.visitors]
        if traffic.dns_interval:
            servers = {}
            for pop, info in endpoints["pops"].items():
                host, _, port = info["dns"].rpartition(":")
                servers[pop] = (host, int(port))
            probes.append(
                DnsProbe(self.journal, servers, sorted(hostnames), float(traffic.dns_interval))
            )
        if traffic.metrics_interval:
            scrape = [
                ScrapeTarget("connector", f"connector-{name}", t["metrics_url"], name)
                for name, t in tunnels.items()
            ]
            scrape += [
                ScrapeTarget("edge", f"edge-{pop}", info["metrics_url"], pop)
                for pop, info in endpoints["pops"].items()
            ]
            scrape.append(
                ScrapeTarget("controlplane", "controlplane", f"{endpoints['api_url']}/metrics")
            )
            probes.append(MetricsProbe(self.journal, scrape, float(traffic.metrics_interval)))
        return probes

    async def _play_entry(self, entry: TimelineEntry, started: float) -> None:
        scale = self.scenario.time_scale
        await asyncio.sleep(max(0.0, started + float(entry.at) * scale - time.monotonic()))
        assert self.fault_ctx is not None
        params = entry.params.model_dump(mode="json")
        fault = make_fault(entry.fault, entry.target or _default_target(entry.fault), params)
        label = entry.name or f"{entry.fault} {entry.target or ''}".strip()
        try:
            await fault.inject(self.fault_ctx)
        except Exception as exc:
            fid = self.journal.fault_start(
                entry.fault,
                entry.target,
                params,
                name=entry.name,
                error=f"{type(exc).__name__}: {exc}",
            )
            self.journal.fault_stop(fid, entry.fault, entry.target, params, name=entry.name)
            raise
        fid = self.journal.fault_start(entry.fault, entry.target, params, name=entry.name)
        active = _ActiveFault(entry, fault, fid)
        self.active.append(active)
        self._say(f"  fault start: {label}")
        if entry.duration is None:
            if entry.fault in ("restart", "token_rollover", "credential_revocation"):
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
        self._say(
            f"  fault stop:  {entry.name or entry.fault}"
            + (f" (heal failed: {error})" if error else "")
        )

    async def heal_all(self) -> None:
        """Undo every fault still in effect (end of run, failure, or Ctrl-C)."""
        for active in list(self.active):
            with contextlib.suppress(Exception):
                await asyncio.shield(self._heal(active))


def _default_target(kind: str) -> str:
    return {
        "controlplane_outage": "controlplane",
        "broker_outage": "broker",
        "token_rollover": "user",
    }.get(kind, "")


async def run_scenario(scenario: Scenario, options: RunOptions | None = None) -> RunReport:
    """Run ``scenario`` and write its report directory; returns the computed report."""
    options = options or RunOptions()
    scenario = effective_scenario(scenario, options)
    say = options.progress or (lambda _message: None)
    run_dir = new_run_dir(options.report_dir, scenario)
    save_scenario(scenario, run_dir / "scenario.yaml")
    journal = Journal(run_dir / "journal.jsonl")
    stack: Stack | None = None
    status, error = "completed", None
    say(f"{scenario.name}: starting the {options.backend} stack")
    try:
        try:
            stack = make_stack(scenario, options, run_dir / "stack")
            await stack.up()
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
        run = ScenarioRun(scenario, stack, journal, say)
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
        journal.close(status, error)  # type: ignore[arg-type]
        report = write_report(run_dir)
    return report
