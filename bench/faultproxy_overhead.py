"""Fault proxy overhead: request/response latency and bulk throughput, direct vs proxied.

Runs on 127.0.0.1 only: an echo server and a sink server in this process, the fault proxy as a
separate ``outlast serve faultproxy`` process (as the harness runs it) with one proxy per
upstream and no toxics. Prints a side-by-side table with ratios and writes
``bench/results/faultproxy_overhead.json``. Bounded in count and time.

    python bench/faultproxy_overhead.py [--requests 2000] [--bulk-mb 64] [--embedded]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Run, run_async
from harness.faultproxy import FaultProxyClient, FaultProxyServer
from harness.faultproxy.testing import echo_server, sink_server
from harness.stack.ports import free_port
from harness.stack.process import ManagedProcess, outlast_argv
from harness.stack.readiness import wait_http

RESULTS = Path(__file__).resolve().parent / "results" / "faultproxy_overhead.json"
MESSAGE = b"x" * 64
WARMUP = 100
ROUNDS = 4
BULK_REPEATS = 5
PHASE_TIMEOUT = 60.0
PATHS = ("direct", "proxied", "toxic_path")


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (floor(n*q) on sorted samples, as Jepsen does)."""
    ordered = sorted(samples)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)]


async def ping_pong(port: int, count: int) -> list[float]:
    """``count`` sequential 64-byte request/response round trips on one connection (seconds)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        samples = []
        for i in range(WARMUP + count):
            started = time.perf_counter()
            writer.write(MESSAGE)
            await reader.readexactly(len(MESSAGE))
            if i >= WARMUP:
                samples.append(time.perf_counter() - started)
        return samples
    finally:
        writer.close()


async def bulk(port: int, size: int) -> float:
    """Send ``size`` bytes to the sink, wait for its byte count; MB/s (1 MB = 10**6 bytes)."""
    block = b"\0" * (1024 * 1024)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        started = time.perf_counter()
        sent = 0
        while sent < size:
            writer.write(block)
            await writer.drain()
            sent += len(block)
        writer.write_eof()
        answer = await reader.read()
        elapsed = time.perf_counter() - started
        if int(answer) != sent:
            raise RuntimeError(f"sink got {answer!r} bytes, sent {sent}")
        return sent / elapsed / 1e6
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def fault_proxy(embedded: bool, workdir: Path) -> AsyncIterator[str]:
    """URL of a fault proxy API: a child process (default) or in this process."""
    if embedded:
        async with FaultProxyServer(("127.0.0.1", 0), seed=1) as server:
            yield server.url
        return
    port = free_port()
    argv = outlast_argv(
        "serve",
        "faultproxy",
        "--listen",
        f"127.0.0.1:{port}",
        "--seed",
        "1",
        "--log-level",
        "warning",
    )
    async with ManagedProcess("faultproxy", argv, workdir / "faultproxy.log") as proc:
        url = f"http://127.0.0.1:{port}"
        await wait_http(f"{url}/version", timeout=30, process=proc)
        yield url


async def measure(requests: int, bulk_mb: int, embedded: bool) -> dict[str, Any]:
    per_round = max(requests // ROUNDS, 1)
    latencies: dict[str, list[float]] = {path: [] for path in PATHS}
    throughput: dict[str, list[float]] = {path: [] for path in PATHS}
    with tempfile.TemporaryDirectory(prefix="fp-bench-") as tmp:
        async with (
            echo_server() as echo_port,
            sink_server() as sink_port,
            fault_proxy(embedded, Path(tmp)) as url,
            FaultProxyClient(url) as client,
        ):
            echo = await client.create_proxy("echo", "127.0.0.1:0", f"127.0.0.1:{echo_port}")
            sink = await client.create_proxy("sink", "127.0.0.1:0", f"127.0.0.1:{sink_port}")
            echo_t = await client.create_proxy("echo-t", "127.0.0.1:0", f"127.0.0.1:{echo_port}")
            sink_t = await client.create_proxy("sink-t", "127.0.0.1:0", f"127.0.0.1:{sink_port}")
            for proxy in (echo_t, sink_t):  # a toxic that does nothing: the toxic path's cost
                for stream in ("upstream", "downstream"):
                    await proxy.add_toxic("latency", {"latency": 0}, stream=stream)
            ports = {
                "direct": (echo_port, sink_port),
                "proxied": (echo.listen_port, sink.listen_port),
                "toxic_path": (echo_t.listen_port, sink_t.listen_port),
            }
            for _ in range(ROUNDS):  # alternate, so drift on a shared machine hits both alike
                for path, (echo_p, _) in ports.items():
                    latencies[path] += await asyncio.wait_for(
                        ping_pong(echo_p, per_round), PHASE_TIMEOUT
                    )
            for _ in range(BULK_REPEATS):
                for path, (_, sink_p) in ports.items():
                    throughput[path].append(
                        await asyncio.wait_for(bulk(sink_p, bulk_mb * 1024 * 1024), PHASE_TIMEOUT)
                    )
    result: dict[str, Any] = {"paths": {}}
    for path in PATHS:
        samples = latencies[path]
        result["paths"][path] = {
            "requests": len(samples),
            "latency_p50_us": percentile(samples, 0.50) * 1e6,
            "latency_p99_us": percentile(samples, 0.99) * 1e6,
            "latency_max_us": max(samples) * 1e6,
            "latency_mean_us": statistics.fmean(samples) * 1e6,
            "throughput_mb_s_median": statistics.median(throughput[path]),
            "throughput_mb_s_runs": throughput[path],
        }
    direct = result["paths"]["direct"]
    result["ratios_over_direct"] = {
        path: {
            "latency_p50": result["paths"][path]["latency_p50_us"] / direct["latency_p50_us"],
            "latency_p99": result["paths"][path]["latency_p99_us"] / direct["latency_p99_us"],
            "throughput": result["paths"][path]["throughput_mb_s_median"]
            / direct["throughput_mb_s_median"],
        }
        for path in PATHS[1:]
    }
    result["added_latency_p50_us"] = {
        path: result["paths"][path]["latency_p50_us"] - direct["latency_p50_us"]
        for path in PATHS[1:]
    }
    result["settings"] = {
        "requests": requests,
        "message_bytes": len(MESSAGE),
        "bulk_mb": bulk_mb,
        "bulk_repeats": BULK_REPEATS,
        "fault_proxy": "in-process" if embedded else "process",
        "percentile_method": "nearest rank, floor(n*q)",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return result


def print_table(result: dict[str, Any]) -> None:
    paths, ratios = result["paths"], result["ratios_over_direct"]
    settings = result["settings"]
    print(
        f"fault proxy overhead ({settings['fault_proxy']}; {paths['direct']['requests']} x "
        f"{settings['message_bytes']} B round trips; {settings['bulk_mb']} MiB bulk x "
        f"{settings['bulk_repeats']}, median). proxied = no toxics; toxic_path = a latency 0 "
        "toxic in both directions"
    )
    header = (
        f"{'metric':<19}{'direct':>10}{'proxied':>10}{'ratio':>8}{'toxic_path':>12}{'ratio':>8}"
    )
    print(header)
    for label, key, ratio_key in (
        ("latency p50 (µs)", "latency_p50_us", "latency_p50"),
        ("latency p99 (µs)", "latency_p99_us", "latency_p99"),
        ("throughput (MB/s)", "throughput_mb_s_median", "throughput"),
    ):
        print(
            f"{label:<19}{paths['direct'][key]:>10.1f}"
            f"{paths['proxied'][key]:>10.1f}{ratios['proxied'][ratio_key]:>7.2f}x"
            f"{paths['toxic_path'][key]:>12.1f}{ratios['toxic_path'][ratio_key]:>7.2f}x"
        )
    added = result["added_latency_p50_us"]
    print(
        f"added latency p50: {added['proxied']:.1f} µs (no toxics), "
        f"{added['toxic_path']:.1f} µs (toxic path)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="round trips per path")
    parser.add_argument("--bulk-mb", type=int, default=128, help="MiB per bulk transfer")
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="run the fault proxy in this process instead of a child process",
    )
    args = parser.parse_args()
    if not 1 <= args.requests <= 100_000 or not 1 <= args.bulk_mb <= 1024:
        parser.error("--requests must be 1..100000 and --bulk-mb 1..1024")
    run = Run("faultproxy_overhead")
    result = run_async(asyncio.wait_for(measure(args.requests, args.bulk_mb, args.embedded), 600))
    print_table(result)
    print(run.footer())
    print(f"wrote {run.write(result, RESULTS)}")


if __name__ == "__main__":
    main()
