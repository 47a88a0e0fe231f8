"""Reconnect storm: N named tunnels x 4 HA connections; both edges restart while the control
plane and the broker are down. How long until the tunnels serve again, and what it costs.

    python bench/reconnect_storm.py [--tunnels 10,100,1000] [--processes 4] [--timeout 120]
                                    [--max-minutes 40] [--seed 1]

One embedded stack (broker, control plane, 2 edges, origin). The tunnels are created and routed
through the control plane API with real secrets (``sN.example.com``); the edges learn them over
MQTT and persist them. Then the control plane and the broker are stopped for the rest of the
run. Per step (N tunnels):

1. ``bench/storm_connectors.py`` processes run the reference connector's HA machinery for the N
   tunnels (several tunnels per process; see that file for what is shared) until all 4N
   connections are registered;
2. both edges are restarted together (SIGTERM, then started again: they load their
   configuration from disk, with neither control plane nor broker to ask);
3. from the moment the edges were stopped, we record every (re-)registration, poll every
   (tunnel, PoP) pair with visitor requests until it is served, and sample the edges' CPU and
   memory, until every tunnel is back on 4 connections (bounded by ``--timeout``).

Reported per step: time until 50/90/99/100% of tunnels serve (>= 1 PoP, both PoPs, all 4
connections, and as visitors saw it), the registration histogram (does jitter spread the
reconnects?), peak CPU of each edge, CPU per registration and per connection-second, and memory
per connection. Target: 1000 tunnels, 99% serving within 30 s. Traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    WHAT_IF,
    Run,
    enable_what_if,
    print_table,
    run_async,
    tcp_listen_overflows,
)
from bench.observe import ProcessWatcher, sample_process
from harness.stack.local import LocalStack
from harness.stack.process import ManagedProcess
from harness.stack.readiness import wait_tcp
from harness.stack.topology import Topology
from reference.edge.peers import FORWARDED_FROM_HEADER

TARGET_TUNNELS = 1000
TARGET_P99_S = 30.0
HISTOGRAM_BIN_S = 0.5
MAX_TUNNELS = 1000  # the control plane's default per-account tunnel limit
STORM_SCRIPT = Path(__file__).resolve().parent / "storm_connectors.py"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------- set-up


async def create_tunnels(
    stack: LocalStack, count: int, concurrency: int = 8
) -> list[dict[str, str]]:
    """Create and route ``count`` tunnels through the control plane API (as ``tunnel create`` and
    ``tunnel route dns`` do); return id, account tag, secret (base64) and hostname of each."""
    base = f"{stack.api_url}/client/v4"
    headers = {"Authorization": f"Bearer {stack.api_token}"}
    gate = asyncio.Semaphore(concurrency)
    out: list[dict[str, str]] = [{} for _ in range(count)]
    async with httpx.AsyncClient(headers=headers, timeout=30.0, trust_env=False) as client:

        async def one(i: int) -> None:
            secret = base64.b64encode(secrets.token_bytes(32)).decode()
            hostname = f"s{i}.{stack.topology.zone}"
            async with gate:
                created = await client.post(
                    f"{base}/accounts/{stack.account_id}/cfd_tunnel",
                    json={"name": f"storm-{i}", "tunnel_secret": secret},
                )
                created.raise_for_status()
                tunnel = created.json()["result"]
                routed = await client.put(
                    f"{base}/zones/{stack.zone_id}/tunnels/{tunnel['id']}/routes",
                    json={"type": "dns", "user_hostname": hostname, "overwrite_existing": False},
                )
                routed.raise_for_status()
            out[i] = {
                "id": tunnel["id"],
                "account_tag": str(stack.account_id),
                "secret": secret,
                "hostname": hostname,
            }

        await asyncio.gather(*(one(i) for i in range(count)))
    return out


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def wait_propagated(stack: LocalStack, timeout: float) -> None:
    """Until both edges hold (and persisted) the control plane's latest configuration."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            wanted = (await client.get(f"{stack.api_url}/health")).json()["config_version"]
            held = []
            for pop in stack.topology.pops:
                url = f"http://127.0.0.1:{stack.ports[f'edge-{pop}-metrics']}/metrics"
                held.append(
                    metric((await client.get(url)).text, "outlast_edge_config_persisted_version")
                )
            if all(h is not None and h >= wanted for h in held):
                return
            await asyncio.sleep(0.5)
    raise TimeoutError(f"the edges did not persist configuration version {wanted} in {timeout} s")


# ----------------------------------------------------------------------------- events


class Events:
    """Tails the connectors' event files and keeps every tunnel's connection table."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.offsets = {p: 0 for p in paths}
        self.state: dict[tuple[int, int], str | None] = {}
        self.records: list[dict[str, Any]] = []

    def poll(self) -> None:
        for path in self.paths:
            if not path.exists():
                continue
            with path.open("rb") as f:
                f.seek(self.offsets[path])
                chunk = f.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self.offsets[path] += len(complete)
            for line in complete.splitlines():
                record = json.loads(line)
                self.records.append(record)
                key = (record["tunnel"], record["conn"])
                if record["kind"] == "registered":
                    self.state[key] = record["pop"]
                elif record["kind"] == "lost":
                    self.state[key] = None

    def registered(self) -> int:
        return sum(1 for pop in self.state.values() if pop)


async def wait_registered(
    events: Events, want: int, timeout: float, procs: list[ManagedProcess]
) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        for proc in procs:
            proc.check_running()
        events.poll()
        if events.registered() >= want:
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    raise TimeoutError(
        f"only {events.registered()} of {want} connections registered within {timeout:.0f} s"
    )


# ----------------------------------------------------------------------------- one step


class VisitorChecker:
    """Polls every (tunnel, PoP) pair not yet served, until each answers 200 (bounded)."""

    def __init__(self, stack: LocalStack, tunnels: list[dict[str, str]], concurrency: int = 32):
        self.stack = stack
        self.pending = {(i, pop) for i in range(len(tunnels)) for pop in stack.topology.pops}
        self.hostnames = [t["hostname"] for t in tunnels]
        self.peer_urls = {
            pop: f"http://{info['peer']}" for pop, info in stack.endpoints()["pops"].items()
        }
        self.served: dict[tuple[int, str], float] = {}
        self.concurrency = concurrency
        self.requests = 0

    async def run(self, deadline: float) -> None:
        async with aiohttp.ClientSession(
            trust_env=False, connector=aiohttp.TCPConnector(limit=self.concurrency)
        ) as session:
            queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()

            async def worker() -> None:
                while time.monotonic() < deadline and self.pending:
                    try:
                        pair = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        await asyncio.sleep(0.05)
                        continue
                    if await self.check(session, pair):
                        self.served[pair] = time.monotonic()
                        self.pending.discard(pair)
                    else:
                        queue.put_nowait(pair)

            order = list(self.pending)
            random.Random(0).shuffle(order)
            for pair in order:
                queue.put_nowait(pair)
            await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def check(self, session: aiohttp.ClientSession, pair: tuple[int, str]) -> bool:
        index, pop = pair
        self.requests += 1
        try:
            # Served by a connection *at* this PoP. Asked on the PoP's peer listener as a
            # forwarded request, the PoP answers from its own connections only (530 at once when
            # it has none): through its visitor address it would forward to the other PoP, so a
            # 200 would say little, and 32 pollers would load both edges with forwarded requests
            # during the very storm being measured.
            async with session.get(
                f"{self.peer_urls[pop]}/storm",
                headers={"Host": self.hostnames[index], FORWARDED_FROM_HEADER: "bench"},
                timeout=aiohttp.ClientTimeout(total=5),
            ) as response:
                await response.read()
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            await asyncio.sleep(0.05)  # the edge is not listening yet
            return False


def curve(times: Sequence[float | None], total: int) -> dict[str, float | None]:
    """Seconds until 50/90/99/100% of ``total`` items happened (None: never within the run)."""
    done = sorted(t for t in times if t is not None)
    out: dict[str, float | None] = {}
    for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p100", 1.0)):
        need = max(1, math.ceil(q * total))
        out[label] = round(done[need - 1], 3) if len(done) >= need else None
    return out


async def storm_step(
    stack: LocalStack,
    tunnels: list[dict[str, str]],
    tunnels_file: Path,
    workdir: Path,
    args: argparse.Namespace,
    baseline: dict[str, dict[str, float]],
) -> dict[str, Any]:
    count = len(tunnels)
    pops = list(stack.topology.pops)
    processes = max(1, min(args.processes, count))
    per = math.ceil(count / processes)
    events_files = [workdir / f"events-{count}-{p}.jsonl" for p in range(processes)]
    procs = []
    for p in range(processes):
        first, n = p * per, min(per, count - p * per)
        if n <= 0:
            continue
        argv = [
            sys.executable, str(STORM_SCRIPT), "--tunnels", str(tunnels_file),
            "--first", str(first), "--count", str(n),
            "--edge-ca", str(stack.edge_ca_file),
            "--origin", f"http://127.0.0.1:{stack.ports['origin']}",
            "--events", str(events_files[p]), "--seed", str(args.seed * 1000 + p),
        ]  # fmt: skip
        for pop in pops:
            argv += ["--edge", f"127.0.0.1:{stack.ports[f'edge-{pop}-tunnel']}"]
        procs.append(ManagedProcess(f"storm-{count}-{p}", argv, workdir / f"storm-{count}-{p}.log"))
    events = Events(events_files)
    edges = {pop: stack.processes[f"edge-{pop}"] for pop in pops}
    watched = {f"edge-{pop}": e.pid or 0 for pop, e in edges.items()}
    try:
        async with ProcessWatcher(watched, interval=0.25) as watcher:
            overflows = tcp_listen_overflows()
            for proc in procs:
                await proc.start()
                watcher.set_pid(proc.name, proc.pid or 0)
            t_start = time.monotonic()
            try:
                connect_s = await wait_registered(events, 4 * count, args.timeout, procs)
            except TimeoutError as exc:
                log(f"{count} tunnels: no steady state: {exc}")
                step = no_steady_state(count, pops, procs, events, watcher, t_start, args)
                step["listen_overflows"] = difference(tcp_listen_overflows(), overflows)
                return step
            connect_overflows = difference(tcp_listen_overflows(), overflows)
            log(f"{count} tunnels: {4 * count} connections registered in {connect_s:.1f} s")
            await asyncio.sleep(2.0)  # let the registration burst settle
            t_steady = time.monotonic()
            await asyncio.sleep(5.0)
            events.poll()
            steady_cpu = {name: watcher.cpu_rate(name, t_steady) for name in watcher.pids}
            per_edge_conns = Counter(pop for pop in events.state.values() if pop)
            records_before = len(events.records)
            overflows = tcp_listen_overflows()
            t_stop = time.monotonic()
            await asyncio.gather(*(e.stop() for e in edges.values()))
            t_stopped = time.monotonic()
            await asyncio.gather(*(e.start() for e in edges.values()))
            for pop, e in edges.items():
                watcher.set_pid(f"edge-{pop}", e.pid or 0)
            deadline = t_stopped + args.timeout
            checker = VisitorChecker(stack, tunnels)
            checking = asyncio.create_task(checker.run(deadline))
            await asyncio.gather(
                *(
                    wait_tcp("127.0.0.1", stack.ports[f"edge-{pop}-tunnel"], timeout=60)
                    for pop in pops
                )
            )
            t_listening = time.monotonic()
            while time.monotonic() < deadline:
                events.poll()
                if events.registered() >= 4 * count and not checker.pending:
                    break
                await asyncio.sleep(0.25)
            t_done = time.monotonic()
            recovery_overflows = difference(tcp_listen_overflows(), overflows)
            checker_deadline_hit = bool(checker.pending)
            checking.cancel()
            await asyncio.gather(checking, return_exceptions=True)
            # The connectors flush their event logs every 0.2 s: the registrations that made
            # the last visitor checks succeed may still be on their way.
            await asyncio.sleep(1.0)
            events.poll()
            rss_after = {pop: watcher.peak_rss(f"edge-{pop}", since=t_stopped) for pop in pops}
            edge_cpu = {}
            for pop in pops:
                # The restarted process's own counter: everything since it started, minus what
                # an idle edge needs to start (imports, loading the cache).
                series = [s for s in watcher.samples[f"edge-{pop}"] if s.at >= t_stopped]
                edge_cpu[pop] = {
                    "peak_percent": watcher.peak_cpu_percent(f"edge-{pop}", since=t_listening),
                    "cpu_seconds_in_recovery": series[-1].cpu_seconds if series else None,
                }
            storm_peak = max(
                (watcher.peak_cpu_percent(p.name, since=t_stopped) or 0.0) for p in procs
            )
    finally:
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
        await asyncio.sleep(1.0)
    return analyse_step(
        count=count,
        pops=pops,
        records=events.records[records_before:],
        t_stop=t_stop,
        t_stopped=t_stopped,
        t_listening=t_listening,
        t_done=t_done,
        checker=checker,
        checker_timed_out=checker_deadline_hit,
        connect_s=connect_s,
        steady_cpu=steady_cpu,
        per_edge_conns=dict(per_edge_conns),
        edge_cpu=edge_cpu,
        rss_after=rss_after,
        baseline=baseline,
        storm_peak=storm_peak,
        processes=len(procs),
        listen_overflows={"connect": connect_overflows, "recovery": recovery_overflows},
    )


def difference(after: int | None, before: int | None) -> int | None:
    return after - before if after is not None and before is not None else None


def no_steady_state(
    count: int,
    pops: list[str],
    procs: list[ManagedProcess],
    events: Events,
    watcher: ProcessWatcher,
    since: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """What a step that never held all 4N connections looked like (no restart is measured)."""
    events.poll()
    kinds = Counter(r["kind"] for r in events.records)
    reasons = Counter(r.get("reason", "?") for r in events.records if r["kind"] == "failed")
    registered_over_time = []
    table: dict[tuple[int, int], bool] = {}
    next_mark = since + 5.0
    for r in sorted(events.records, key=lambda r: r["t"]):
        while r["t"] >= next_mark:
            registered_over_time.append(sum(table.values()))
            next_mark += 5.0
        if r["kind"] in ("registered", "lost"):
            table[(r["tunnel"], r["conn"])] = r["kind"] == "registered"
    return {
        "tunnels": count,
        "connections": 4 * count,
        "connector_processes": len(procs),
        "steady_state": False,
        "timeout_s": args.timeout,
        "registered_at_timeout": events.registered(),
        "registered_every_5s": registered_over_time,
        "events": dict(kinds),
        "failed_attempts_by_reason": dict(reasons),
        "edges_cpu_percent": {pop: watcher.cpu_rate(f"edge-{pop}", since) * 100 for pop in pops},
        "edges_peak_cpu_percent": {
            pop: watcher.peak_cpu_percent(f"edge-{pop}", since) for pop in pops
        },
        "connector_processes_cpu_percent": [watcher.cpu_rate(p.name, since) * 100 for p in procs],
    }


def analyse_step(**m: Any) -> dict[str, Any]:
    count, pops, t_stop = m["count"], m["pops"], m["t_stop"]
    steady: dict[str, float] = m["steady_cpu"]
    storm_steady = sum(v for k, v in steady.items() if k.startswith("storm-"))
    after = [r for r in m["records"] if r["t"] >= m["t_stopped"]]
    first_any: dict[int, float] = {}
    per_pop: dict[tuple[int, str], float] = {}
    full: dict[int, float] = {}
    table: dict[tuple[int, int], str | None] = {}
    for r in sorted(after, key=lambda r: r["t"]):
        key = (r["tunnel"], r["conn"])
        if r["kind"] == "registered":
            table[key] = r["pop"]
            first_any.setdefault(r["tunnel"], r["t"] - t_stop)
            per_pop.setdefault((r["tunnel"], r["pop"]), r["t"] - t_stop)
            if sum(1 for c in range(4) if table.get((r["tunnel"], c))) == 4:
                full.setdefault(r["tunnel"], r["t"] - t_stop)
        elif r["kind"] == "lost":
            table[key] = None
    tunnel_ids = sorted({r["tunnel"] for r in m["records"]} | set(first_any))
    both = [
        max(per_pop[(t, p)] for p in pops) if all((t, p) in per_pop for p in pops) else None
        for t in tunnel_ids
    ]
    served = m["checker"].served
    visitor_both = []
    for t in range(count):
        times = [served.get((t, p)) for p in pops]
        visitor_both.append(max(x for x in times if x is not None) - t_stop if all(times) else None)
    registrations = [r["t"] - t_stop for r in after if r["kind"] == "registered"]
    failures = [r["t"] - t_stop for r in after if r["kind"] == "failed"]
    bins = int(max(registrations + failures + [1.0]) / HISTOGRAM_BIN_S) + 1
    histogram = [0] * bins
    failed_histogram = [0] * bins
    for t in registrations:
        histogram[int(t / HISTOGRAM_BIN_S)] += 1
    for t in failures:
        failed_histogram[int(t / HISTOGRAM_BIN_S)] += 1
    regs_per_pop = Counter(r["pop"] for r in after if r["kind"] == "registered")
    edge = {}
    for pop in pops:
        cpu = m["edge_cpu"][pop]
        conns = m["per_edge_conns"].get(pop, 0)
        rss = m["rss_after"].get(pop)
        base = m["baseline"][pop]["rss_bytes"]
        startup = m["baseline"][pop]["startup_cpu_seconds"]
        idle = m["baseline"][pop]["idle_cpu"]
        recovery = cpu["cpu_seconds_in_recovery"]
        recovery_net = recovery - startup if recovery is not None else None
        edge[pop] = {
            "connections": conns,
            "peak_cpu_percent": cpu["peak_percent"],
            "cpu_seconds_in_recovery": recovery,
            "startup_cpu_seconds": startup,
            "cpu_ms_per_registration": (
                recovery_net * 1e3 / regs_per_pop[pop]
                if recovery_net is not None and regs_per_pop[pop]
                else None
            ),
            "steady_cpu_percent": steady.get(f"edge-{pop}", 0.0) * 100,
            "idle_cpu_percent": idle * 100,
            "steady_cpu_us_per_connection_second": (
                (steady.get(f"edge-{pop}", 0.0) - idle) * 1e6 / conns if conns else None
            ),
            "rss_mib": rss / 2**20 if rss else None,
            "rss_kib_per_connection": (rss - base) / 1024 / conns
            if rss and base and conns
            else None,
        }
    return {
        "tunnels": count,
        "connections": 4 * count,
        "connector_processes": m["processes"],
        "steady_state": True,
        "connector_side_steady_cpu_percent": storm_steady * 100,
        "connector_side_cpu_us_per_connection_second": storm_steady * 1e6 / (4 * count),
        "initial_connect_s": round(m["connect_s"], 2),
        "edges_stopped_after_s": round(m["t_stopped"] - t_stop, 3),
        "edges_listening_after_s": round(m["t_listening"] - t_stop, 3),
        "measured_for_s": round(m["t_done"] - t_stop, 2),
        "serving_any_pop_s": curve([first_any.get(t) for t in range(count)], count),
        "serving_both_pops_s": curve(both, count),
        "all_4_connections_s": curve([full.get(t) for t in range(count)], count),
        "visitor_served_both_pops_s": curve(visitor_both, count),
        "visitor_requests": m["checker"].requests,
        "visitor_check_timed_out": m["checker_timed_out"],
        "registrations": len(registrations),
        "failed_attempts": len(failures),
        "histogram_bin_s": HISTOGRAM_BIN_S,
        "registrations_histogram": histogram,
        "failed_attempts_histogram": failed_histogram,
        "edges": edge,
        "connector_processes_peak_cpu_percent": m["storm_peak"],
        "listen_overflows": m["listen_overflows"],
    }


# ----------------------------------------------------------------------------- main


async def measure(args: argparse.Namespace, run: Run) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    deadline = time.monotonic() + args.max_minutes * 60
    most = max(args.tunnels)
    with tempfile.TemporaryDirectory(prefix="outlast-bench-storm-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        stack = LocalStack(workdir / "stack", Topology(tunnels=()), seed=args.seed)
        try:
            await stack.up()
            started = time.monotonic()
            tunnels = await create_tunnels(stack, most)
            create_s = time.monotonic() - started
            log(f"created and routed {most} tunnels through the API in {create_s:.1f} s")
            await wait_propagated(stack, timeout=120)
            log("both edges hold and persisted the configuration")
            tunnels_file = workdir / "tunnels.json"
            tunnels_file.touch(mode=0o600)
            tunnels_file.write_text(json.dumps(tunnels))
            await stack.stop("controlplane")
            await stack.stop("broker")
            log("control plane and broker stopped (for the rest of the run)")
            edges = [stack.processes[f"edge-{pop}"] for pop in stack.topology.pops]
            await asyncio.gather(*(e.stop() for e in edges))
            await asyncio.gather(*(e.start() for e in edges))
            for pop in stack.topology.pops:
                await wait_tcp("127.0.0.1", stack.ports[f"edge-{pop}-tunnel"], timeout=60)
            await asyncio.sleep(2.0)
            baseline: dict[str, dict[str, float]] = {}
            for pop, edge in zip(stack.topology.pops, edges, strict=True):
                first = sample_process(edge.pid or 0)
                await asyncio.sleep(3.0)
                second = sample_process(edge.pid or 0)
                if first is None or second is None:
                    raise RuntimeError(f"edge {pop} exited after its restart; see its log")
                baseline[pop] = {
                    "rss_bytes": second.rss_bytes,
                    "startup_cpu_seconds": first.cpu_seconds,
                    "idle_cpu": (second.cpu_seconds - first.cpu_seconds) / (second.at - first.at),
                }
            log(f"edges restarted from their disk cache, idle: {baseline}")
            for count in args.tunnels:
                if time.monotonic() > deadline:
                    log(f"stopping: --max-minutes {args.max_minutes} reached")
                    break
                log(f"step: {count} tunnels (load average {os.getloadavg()[0]:.2f})")
                step = await storm_step(
                    stack, tunnels[:count], tunnels_file, workdir, args, baseline
                )
                steps.append(step)
                print_step(step)
        finally:
            await stack.down()
    return {"tunnels_created": most, "create_seconds": round(create_s, 1), "steps": steps}


def print_step(step: dict[str, Any]) -> None:
    if not step["steady_state"]:
        print(
            f"\n{step['tunnels']} tunnels x 4: never held all {step['connections']} connections "
            f"within {step['timeout_s']:g} s (registered every 5 s: "
            f"{step['registered_every_5s']}); events {step['events']}; failed attempts "
            f"{step['failed_attempts_by_reason']}; edge CPU {step['edges_cpu_percent']} %, "
            f"connector processes {[round(c) for c in step['connector_processes_cpu_percent']]} %;"
            f" listen queue overflows {step['listen_overflows']}"
        )
        return
    rows = []
    for label, key in (
        ("serving (any PoP)", "serving_any_pop_s"),
        ("serving (both PoPs)", "serving_both_pops_s"),
        ("all 4 connections", "all_4_connections_s"),
        ("visitors served (both)", "visitor_served_both_pops_s"),
    ):
        c = step[key]
        rows.append([label, c["p50"], c["p90"], c["p99"], c["p100"]])
    print(
        f"\n{step['tunnels']} tunnels x 4: seconds after both edges were stopped "
        f"(edges listening again at {step['edges_listening_after_s']:.2f} s)"
    )
    print_table(["tunnels ...", "50%", "90%", "99%", "100%"], rows, digits=2)
    for pop, e in step["edges"].items():
        print(
            f"edge {pop}: {e['connections']} conns; peak CPU {e['peak_cpu_percent'] or 0:.0f}%; "
            f"{e['cpu_ms_per_registration'] or 0:.2f} CPU ms/registration; steady "
            f"{e['steady_cpu_us_per_connection_second'] or 0:.0f} CPU us per connection-second; "
            f"RSS {e['rss_mib'] or 0:.0f} MiB ({e['rss_kib_per_connection'] or 0:.0f} KiB/conn)"
        )
    print(
        f"listen queue overflows (kernel, system-wide): {step['listen_overflows']}; "
        f"connector side steady {step['connector_side_cpu_us_per_connection_second']:.0f} CPU us "
        "per connection-second"
    )
    hist = step["registrations_histogram"]
    print(
        f"registrations per {step['histogram_bin_s']} s after the stop: "
        + " ".join(str(n) for n in hist[:80])
    )
    failed = step["failed_attempts_histogram"]
    print(f"failed attempts per bin: {' '.join(str(n) for n in failed[:80])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunnels", default="10,100,1000", help="comma-separated step sizes")
    parser.add_argument("--processes", type=int, default=4, help="connector host processes")
    parser.add_argument("--timeout", type=float, default=120.0, help="per step, seconds")
    parser.add_argument("--max-minutes", type=float, default=40.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--what-if",
        action="append",
        default=[],
        choices=WHAT_IF,
        help="run every process with an experiment from bench/whatif/ (repeatable)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep logs and events in DIR")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.tunnels = [int(x) for x in args.tunnels.split(",") if x.strip()]
    if not args.tunnels or not all(1 <= n <= MAX_TUNNELS for n in args.tunnels):
        parser.error(f"--tunnels: sizes between 1 and {MAX_TUNNELS}")
    if not 1 <= args.processes <= 16 or not 5 <= args.timeout <= 600:
        parser.error("--processes must be 1..16 and --timeout 5..600")
    enable_what_if(args.what_if)
    run = Run("-".join(["reconnect_storm", *args.what_if]))
    result = run_async(measure(args, run))
    print()
    print("curve (seconds after both edges stopped until X% of tunnels serve at both PoPs):")
    print_table(
        ["tunnels", "50%", "90%", "99%", "100%", "visitors 99%", "peak edge CPU %"],
        [
            [
                s["tunnels"],
                *s["serving_both_pops_s"].values(),
                s["visitor_served_both_pops_s"]["p99"],
                max((e["peak_cpu_percent"] or 0.0) for e in s["edges"].values()),
            ]
            if s["steady_state"]
            else [s["tunnels"], "no steady state", "-", "-", "-", "-", "-"]
            for s in result["steps"]
        ],
        digits=2,
    )
    print(f"target: {TARGET_TUNNELS} tunnels, 99% serving within {TARGET_P99_S:g} s")
    print(run.footer())
    path = run.write(
        {
            "settings": {
                "tunnels": args.tunnels,
                "processes": args.processes,
                "timeout_s": args.timeout,
                "seed": args.seed,
                "what_if": args.what_if,
            },
            "target": {"tunnels": TARGET_TUNNELS, "p99_serving_s": TARGET_P99_S},
            **result,
        },
        args.json,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
