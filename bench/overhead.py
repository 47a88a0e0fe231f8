"""Tunnel overhead: requests/s and latency through edge + tunnel + connector vs the origin.

    python bench/overhead.py [--client auto|wrk|aiohttp] [--connections 16] [--seconds 5]
                             [--rounds 3] [--profile]

One embedded stack with two named tunnels. Three paths, same client, same run, in alternating
rounds (so drift on a shared machine hits all alike):

* ``direct``          the client -> the origin;
* ``tunnel``          the client -> edge ams -> tunnel -> connector -> origin, the connector
                      dialling the edge directly (tunnel ``t2``, its connector restarted with
                      ``--edge`` = the edges' own tunnel ports);
* ``tunnel+proxy``    the same through the stack's fault proxy on the tunnel link (tunnel ``t1``,
                      as every scenario runs it).

The load generator is ``wrk`` (C, one thread, keep-alive connections) when it is on PATH
(``apt-get install wrk``), else a closed-loop aiohttp client in this process (which itself
needs a large share of a core: the tunnel/direct ratio is then conservative). ``--profile``
samples the edge, connector and origin with py-spy (``pip install py-spy``) during one more
tunnel round and prints where each spends its time. Target: tunnel >= 0.5x direct throughput.
Bounded: --seconds (max 60) x --rounds (max 10); traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    WHAT_IF,
    Run,
    enable_what_if,
    loadavg,
    percentile,
    print_table,
    run_async,
)
from bench.observe import sample_process
from harness.stack.local import LocalStack
from harness.stack.ports import free_port
from harness.stack.process import ManagedProcess, outlast_argv
from harness.stack.readiness import wait_http
from harness.stack.topology import Topology

TARGET_RATIO = 0.5
PATHS = ("direct", "tunnel", "tunnel+proxy")
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_wrk(output: str) -> dict[str, Any]:
    """requests/s, p50 and p99 (seconds) and error counts from ``wrk --latency`` output."""

    def duration(text: str) -> float:
        match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
        if not match:
            raise ValueError(f"cannot read wrk duration {text!r}")
        return float(match.group(1)) * UNITS[match.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    total = re.search(r"(\d+) requests in", output)
    if not (rps and p50 and p99 and total):
        raise ValueError(f"unexpected wrk output:\n{output}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return {
        "rps": float(rps.group(1)),
        "p50_s": duration(p50.group(1)),
        "p99_s": duration(p99.group(1)),
        "requests": float(total.group(1)),
        "errors": float(
            (int(non2xx.group(1)) if non2xx else 0)
            + (sum(int(g) for g in errors.groups()) if errors else 0)
        ),
    }


async def run_wrk(url: str, host: str, connections: int, seconds: float) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "-H",
        f"Host: {host}",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), seconds + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out.decode(errors='replace')}")
    return parse_wrk(out.decode())


async def run_aiohttp(url: str, host: str, connections: int, seconds: float) -> dict[str, Any]:
    """Closed loop: ``connections`` workers, each one request after another, keep-alive."""
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    async with session.get(
                        url, headers={"Host": host}, timeout=aiohttp.ClientTimeout(total=10)
                    ) as response:
                        await response.read()
                        ok = response.status == 200
                except (aiohttp.ClientError, TimeoutError, OSError):
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += 0 if ok else 1

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - began
    return {
        "rps": len(latencies) / elapsed,
        "p50_s": percentile(latencies, 0.50),
        "p99_s": percentile(latencies, 0.99),
        "requests": float(len(latencies)),
        "errors": float(errors),
    }


class Paths:
    """The stack and the URL + Host of each path."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.direct_connector: ManagedProcess | None = None

    async def start_direct_connector(self) -> None:
        """Re-run tunnel t2's connector with the edges' own tunnel ports (no fault proxy)."""
        stack = self.stack
        tunnel = stack.topology.tunnels[1]
        await stack.stop(tunnel.connector)
        port = free_port()
        argv = [
            "tunnel", "--origincert", str(stack.origincert), "run", stack.tunnel_ids[tunnel.name],
            "--credentials-file", str(stack.credentials_files[tunnel.name]),
            "--url", f"http://127.0.0.1:{stack.ports['origin']}",
            "--edge-ca", str(stack.edge_ca_file),
            "--metrics", f"127.0.0.1:{port}",
            "--loglevel", "warning",
        ]  # fmt: skip
        for pop in stack.topology.pops:
            argv += ["--edge", f"127.0.0.1:{stack.ports[f'edge-{pop}-tunnel']}"]
        env = dict(os.environ, OUTLAST_HOME=str(stack.home))
        self.direct_connector = ManagedProcess(
            "connector-direct",
            outlast_argv(*argv),
            stack.state_dir / "logs" / "direct.log",
            env=env,
        )
        await self.direct_connector.start()
        await wait_http(f"http://127.0.0.1:{port}/ready", timeout=30, process=self.direct_connector)
        await wait_http(
            f"{stack.visitor_url('ams')}/",
            timeout=30,
            headers={"Host": tunnel.hostname},
        )

    def target(self, path: str) -> tuple[str, str]:
        stack = self.stack
        if path == "direct":
            return f"http://127.0.0.1:{stack.ports['origin']}/bench", "origin.local"
        tunnel = stack.topology.tunnels[1 if path == "tunnel" else 0]
        return f"{stack.visitor_url('ams')}/bench", tunnel.hostname

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each process on the paths, and by the load generator
        (wrk: reaped children of this process; aiohttp: this process)."""
        pids = {
            "edge": self.stack.processes["edge-ams"].pid,
            "connector (tunnel)": self.direct_connector.pid if self.direct_connector else None,
            "connector (tunnel+proxy)": self.stack.processes["connector-t1"].pid,
            "fault proxy": self.stack.processes["faultproxy"].pid,
            "origin": self.stack.processes["origin"].pid,
        }
        out = {}
        for name, pid in pids.items():
            sample = sample_process(pid) if pid is not None else None
            if sample is not None:
                out[name] = sample.cpu_seconds
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        out["client (wrk)"] = children.ru_utime + children.ru_stime
        out["client (aiohttp, this process)"] = me.ru_utime + me.ru_stime
        return out

    def pids(self) -> dict[str, int]:
        procs = {
            "edge": self.stack.processes["edge-ams"],
            "connector": self.direct_connector,
            "origin": self.stack.processes["origin"],
        }
        return {name: p.pid for name, p in procs.items() if p is not None and p.pid is not None}


def find_py_spy() -> str | None:
    """py-spy on PATH or next to this interpreter (the virtualenv), else None."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


async def profile(paths: Paths, client: Any, args: argparse.Namespace) -> dict[str, Any]:
    """py-spy on edge, connector and origin during one tunnel round: top self-time frames."""
    py_spy = find_py_spy()
    if py_spy is None:
        return {"skipped": "py-spy not found: pip install py-spy"}
    outdir = paths.stack.state_dir / "profiles"
    outdir.mkdir(exist_ok=True)
    procs = {}
    for name, pid in paths.pids().items():
        procs[name] = await asyncio.create_subprocess_exec(
            py_spy, "record", "--pid", str(pid), "--duration", str(int(args.seconds) + 1),
            "--rate", "200", "--format", "raw", "--nonblocking",
            "--output", str(outdir / f"{name}.txt"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    url, host = paths.target("tunnel")
    await asyncio.sleep(0.5)
    load = await client(url, host, args.connections, args.seconds)
    report: dict[str, Any] = {"round": load}
    for name, proc in procs.items():
        await asyncio.wait_for(proc.wait(), args.seconds + 30)
        report[name] = top_frames(outdir / f"{name}.txt")
    return report


def _module_of(frame: str) -> str:
    """The package (or stdlib module) a py-spy frame ``func (path/file.py:line)`` belongs to."""
    match = re.search(r"\(([^()]*?):\d+\)$", frame)
    path = match.group(1) if match else "?"
    parts = [p for p in path.split("/") if p]
    if "reference" in parts:
        i = parts.index("reference")
        return "/".join(parts[i : i + 2]).removesuffix(".py")
    return parts[0].removesuffix(".py") if parts else "?"


def top_frames(path: Path, count: int = 12) -> dict[str, Any]:
    """Where a process spent its busy samples (waiting in ``select`` left out), from a py-spy
    ``raw`` (collapsed stacks) file: the busiest frames by self time, self time per package,
    and the inclusive share of Outlast's own functions."""
    if not path.exists():
        return {"error": f"no profile written at {path}"}
    own: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        frames = stack.split(";")
        if frames[-1].startswith("select (") or ".select (selectors" in frames[-1]:
            idle += n
            continue
        total += n
        own[frames[-1]] += n
        modules[_module_of(frames[-1])] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return {"samples": 0, "idle_samples": idle}
    return {
        "samples": total,
        "idle_samples": idle,
        "self": [(f, round(n / total, 3)) for f, n in own.most_common(count)],
        "self_by_package": [(m, round(n / total, 3)) for m, n in modules.most_common(count)],
        "inclusive": [
            (f, round(n / total, 3))
            for f, n in inclusive.most_common(count * 4)
            if "reference/" in f
        ][:count],
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    client = run_wrk if args.client == "wrk" else run_aiohttp
    rounds: dict[str, list[dict[str, Any]]] = {p: [] for p in PATHS}
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="outlast-bench-overhead-") as tmp:
        topology = Topology.numbered(("ams", "fra"), 2)
        stack = LocalStack(Path(tmp) / "stack", topology, connector_args=("--loglevel", "warning"))
        paths = Paths(stack)
        try:
            await stack.up()
            await paths.start_direct_connector()
            for path in PATHS:  # warm-up: connections, caches, the interpreter's specialisation
                url, host = paths.target(path)
                await client(url, host, args.connections, 1.0)
            for i in range(args.rounds):
                for path in PATHS:
                    url, host = paths.target(path)
                    before = paths.cpu_seconds()
                    sample = await client(url, host, args.connections, args.seconds)
                    after = paths.cpu_seconds()
                    sample["loadavg_1m"] = (loadavg() or [0.0])[0]
                    sample["cpu_ms_per_request"] = {
                        name: round((after[name] - before[name]) * 1e3 / sample["requests"], 4)
                        for name in after
                        if name in before and sample["requests"]
                    }
                    rounds[path].append(sample)
                    print(
                        f"round {i + 1}/{args.rounds} {path:<13} {sample['rps']:8.0f} req/s  "
                        f"p50 {sample['p50_s'] * 1e3:6.2f} ms  p99 {sample['p99_s'] * 1e3:6.2f} ms"
                        f"  errors {sample['errors']:.0f}",
                        flush=True,
                    )
            if args.profile:
                result["profile"] = await profile(paths, client, args)
        finally:
            if paths.direct_connector is not None:
                await paths.direct_connector.stop()
            await stack.down()
    result["rounds"] = rounds
    return result


def cpu_table(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Median CPU ms per request of every process on every path; idle processes left out."""
    table: dict[str, dict[str, float]] = {}
    for path, samples in rounds.items():
        names = {n for s in samples for n in s.get("cpu_ms_per_request", {})}
        for name in sorted(names):
            values = [
                s["cpu_ms_per_request"][name] for s in samples if name in s["cpu_ms_per_request"]
            ]
            value = statistics.median(values)
            if value >= 0.005:
                table.setdefault(name, {})[path] = round(value, 3)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", choices=("auto", "wrk", "aiohttp"), default="auto")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=5.0, help="per path per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="py-spy the tunnel path")
    parser.add_argument(
        "--what-if",
        action="append",
        default=[],
        choices=WHAT_IF,
        help="run every stack process with an experiment from bench/whatif/ (repeatable)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    enable_what_if(args.what_if)
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "aiohttp"
    if not 1 <= args.connections <= 256 or not 1 <= args.seconds <= 60:
        parser.error("--connections must be 1..256 and --seconds 1..60")
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be 1..10")
    run = Run("-".join(["overhead", *args.what_if]))
    measured = run_async(measure(args))
    rounds = measured["rounds"]
    summary: dict[str, dict[str, float]] = {}
    for path in PATHS:
        samples = rounds[path]
        summary[path] = {
            "rps": statistics.median(s["rps"] for s in samples),
            "p50_ms": statistics.median(s["p50_s"] for s in samples) * 1e3,
            "p99_ms": statistics.median(s["p99_s"] for s in samples) * 1e3,
            "errors": sum(s["errors"] for s in samples),
        }
    direct = summary["direct"]
    for path in PATHS[1:]:
        summary[path]["throughput_ratio"] = summary[path]["rps"] / direct["rps"]
        summary[path]["p50_ratio"] = summary[path]["p50_ms"] / direct["p50_ms"]
        summary[path]["p99_ratio"] = summary[path]["p99_ms"] / direct["p99_ms"]
    print()
    print(
        f"overhead, client {args.client} with {args.connections} connections, {args.rounds} "
        f"rounds x {args.seconds:g} s per path (median of rounds)"
        + (f"; what-if: {', '.join(args.what_if)}" if args.what_if else "")
    )
    print_table(
        ["path", "req/s", "x direct", "p50 ms", "p99 ms", "errors"],
        [
            [
                path,
                round(s["rps"]),
                s.get("throughput_ratio", 1.0),
                s["p50_ms"],
                s["p99_ms"],
                int(s["errors"]),
            ]
            for path, s in summary.items()
        ],
        digits=2,
    )
    print(f"target: tunnel >= {TARGET_RATIO}x direct throughput")
    cpu = cpu_table(rounds)
    summary["cpu_ms_per_request"] = cpu  # type: ignore[assignment]
    print("\nCPU milliseconds per request (median of rounds; who pays for each path)")
    print_table(
        ["process", *PATHS],
        [[name, *(cpu[name].get(p) for p in PATHS)] for name in cpu],
        digits=3,
    )
    if "profile" in measured:
        for name in ("edge", "connector", "origin"):
            frames = measured["profile"].get(name, {})
            if "self" in frames:
                busy = frames["samples"] / max(frames["samples"] + frames["idle_samples"], 1)
                print(f"\n{name}: busy {busy:.0%} of samples; self time by package:")
                print("  " + ", ".join(f"{m} {v:.0%}" for m, v in frames["self_by_package"][:8]))
                print("  Outlast functions, inclusive share of busy time:")
                for frame, share in frames["inclusive"][:8]:
                    print(f"  {share:6.1%}  {frame[:110]}")
    print(run.footer())
    written = run.write(
        {
            "settings": {
                "client": args.client,
                "connections": args.connections,
                "seconds": args.seconds,
                "rounds": args.rounds,
                "what_if": args.what_if,
            },
            "target_ratio": TARGET_RATIO,
            "summary": summary,
            **measured,
        },
        args.json,
    )
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
