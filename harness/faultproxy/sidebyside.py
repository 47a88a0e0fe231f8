"""Measure what each toxic does to real traffic, the same way against any Toxiproxy-compatible
server, so our fault proxy and the real Toxiproxy can be compared in one run (127.0.0.1 only).

Used by ``bench/faultproxy_vs_toxiproxy.py`` (figures and ratios) and by
``tests/integration/test_toxiproxy_compat.py`` (the same figures asserted with tolerances).
Every measurement creates its own proxy on the server, drives traffic through it from this
process, deletes the proxy again and returns a flat ``{metric: value}`` dict. Timings are taken
on the client side, so the upstream servers here only answer requests:

- ``source``: reads one line ``<n> <hold|close>`` and sends ``n`` bytes, then holds the
  connection open (until the client goes) or closes it;
- ``echo``: echoes everything;
- ``hold``: reads to end of stream, then holds the connection open for a while without
  answering (a server that ignores a client's half-close).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from harness.faultproxy.client import FaultProxyClient, FaultProxyError, Proxy
from harness.faultproxy.locate import FaultProxyChoice
from harness.faultproxy.testing import echo_server
from harness.stack.ports import free_port
from harness.stack.process import ManagedProcess
from harness.stack.readiness import wait_http

TOXIPROXY_SERVER_ENV = "TOXIPROXY_SERVER"
BLOCK = 256 * 1024
IO_TIMEOUT = 20.0
HOLD_SECONDS = 30.0

Metrics = dict[str, float]


def find_real_server(project_root: Path) -> Path | None:
    """``$TOXIPROXY_SERVER``, else ``../shared/toxiproxy/toxiproxy-server`` next to the project;
    None when neither is an executable file."""
    configured = os.environ.get(TOXIPROXY_SERVER_ENV, "").strip()
    candidate = (
        Path(configured)
        if configured
        else project_root.resolve().parent / "shared" / "toxiproxy" / "toxiproxy-server"
    )
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    return None


@contextlib.asynccontextmanager
async def running_server(choice: FaultProxyChoice, log_path: Path) -> AsyncIterator[str]:
    """Start a fault proxy server (``binary`` or ``embedded``) on 127.0.0.1; yield its API URL."""
    port = free_port()
    argv = choice.server_argv("127.0.0.1", port)
    if choice.kind == "embedded":
        argv += ["--log-level", "warning"]
    env = {**os.environ, "LOG_LEVEL": "warn"}
    async with ManagedProcess(choice.kind, argv, log_path, env=env) as proc:
        url = f"http://127.0.0.1:{port}"
        await wait_http(f"{url}/version", timeout=30, process=proc)
        yield url


# -- upstream servers ----------------------------------------------------------------------------


async def _source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError, ValueError, asyncio.IncompleteReadError):
        count_text, _, mode = (await reader.readline()).decode().strip().partition(" ")
        remaining = int(count_text)
        block = b"\0" * BLOCK
        while remaining > 0:
            part = block[: min(remaining, BLOCK)]
            writer.write(part)
            await writer.drain()
            remaining -= len(part)
        if mode == "close":
            writer.close()
            return
        await reader.read()  # until the client (or the proxy) closes
    writer.close()


async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while await reader.read(BLOCK):
            pass
        await asyncio.sleep(HOLD_SECONDS)
    writer.close()


@dataclass(frozen=True)
class Upstreams:
    """Ports of the upstream servers of one run."""

    source: int
    echo: int
    hold: int


@contextlib.asynccontextmanager
async def upstreams() -> AsyncIterator[Upstreams]:
    """The source, echo and hold servers, on 127.0.0.1."""
    source = await asyncio.start_server(_source, "127.0.0.1", 0)
    hold = await asyncio.start_server(_hold, "127.0.0.1", 0)
    try:
        async with echo_server() as echo_port:
            yield Upstreams(
                source=int(source.sockets[0].getsockname()[1]),
                echo=echo_port,
                hold=int(hold.sockets[0].getsockname()[1]),
            )
    finally:
        source.close()
        hold.close()


# -- measuring helpers ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def proxy_with(
    client: FaultProxyClient,
    name: str,
    upstream_port: int,
    toxics: list[tuple[str, dict[str, int], str]],
) -> AsyncIterator[Proxy]:
    """A fresh proxy to ``upstream_port`` with ``toxics`` (type, attributes, stream); deleted
    on exit."""
    with contextlib.suppress(FaultProxyError):
        await client.delete_proxy(name)
    proxy = await client.create_proxy(name, "127.0.0.1:0", f"127.0.0.1:{upstream_port}")
    try:
        for index, (kind, attributes, stream) in enumerate(toxics):
            await proxy.add_toxic(kind, attributes, stream=stream, name=f"{kind}{index}")
        yield proxy
    finally:
        with contextlib.suppress(FaultProxyError):
            await client.delete_proxy(name)


async def fetch(port: int, size: int, mode: str = "hold") -> tuple[float, float, int, str]:
    """Ask the source for ``size`` bytes through ``port``: (seconds to the first byte, seconds
    to the last byte or the end of the stream, bytes received, how it ended)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received, first, ended = 0, float("nan"), "complete"
    started = time.perf_counter()
    try:
        writer.write(f"{size} {mode}\n".encode())
        await writer.drain()
        while received < size or mode == "close":
            data = await asyncio.wait_for(reader.read(BLOCK), IO_TIMEOUT)
            if not data:
                ended = "eof"
                break
            if not received:
                first = time.perf_counter() - started
            received += len(data)
    except ConnectionResetError:
        ended = "reset"
    except TimeoutError:
        ended = "timeout"
    finally:
        writer.close()
    return first, time.perf_counter() - started, received, ended


async def round_trips(port: int, count: int, size: int = 64) -> list[float]:
    """``count`` sequential echo round trips of ``size`` bytes on one connection (seconds)."""
    message = b"x" * size
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            writer.write(message)
            await reader.readexactly(size)
            samples.append(time.perf_counter() - started)
    finally:
        writer.close()
    return samples


def percentile(samples: list[float], q: float) -> float:
    """Nearest rank: the smallest sample with at least ``q`` of the samples at or below it."""
    ordered = sorted(samples)
    rank = max(1, -int(-q * len(ordered) // 1))
    return ordered[min(rank, len(ordered)) - 1]


def rtt_metrics(prefix: str, samples: list[float]) -> Metrics:
    ms = [s * 1000 for s in samples]
    return {
        f"{prefix}_p50_ms": percentile(ms, 0.50),
        f"{prefix}_p95_ms": percentile(ms, 0.95),
        f"{prefix}_p99_ms": percentile(ms, 0.99),
        f"{prefix}_mean_ms": statistics.fmean(ms),
        f"{prefix}_stdev_ms": statistics.pstdev(ms),
    }


# -- measurements ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """How much traffic each measurement uses (the bench's defaults, or a short one for CI)."""

    bandwidth_rates: tuple[int, ...] = (100, 1_000, 10_000, 50_000, 100_000)  # KB/s
    bandwidth_seconds: float = 1.5
    latency_bulk_bytes: int = 20 * 1024 * 1024
    latency_bulk_ms: tuple[int, ...] = (10, 100)
    rtt_count: int = 300
    parallel_connections: int = 8
    parallel_rate: int = 1_000
    parallel_rtt: int = 40

    @classmethod
    def short(cls) -> Profile:
        return cls(
            bandwidth_rates=(100, 5_000, 50_000),
            bandwidth_seconds=1.0,
            latency_bulk_bytes=20 * 1024 * 1024,
            latency_bulk_ms=(10, 100),
            rtt_count=150,
            parallel_connections=8,
            parallel_rate=1_000,
            parallel_rtt=25,
        )


async def measure_bandwidth(
    client: FaultProxyClient, ups: Upstreams, rate: int, seconds: float
) -> Metrics:
    """Downstream bandwidth toxic at ``rate`` KB/s: the rate a bulk download achieves."""
    size = int(rate * 1000 * seconds)
    toxics = [("bandwidth", {"rate": rate}, "downstream")]
    async with proxy_with(client, "bw", ups.source, toxics) as proxy:
        _, elapsed, received, _ = await fetch(proxy.listen_port, size)
    return {f"bandwidth_{rate}_kbs": received / 1000 / elapsed}


async def measure_latency_bulk(
    client: FaultProxyClient, ups: Upstreams, latency: int, size: int
) -> Metrics:
    """Downstream latency toxic: how fast ``size`` bytes arrive (MB/s, first request to last
    byte), and the time to the first byte."""
    toxics = [("latency", {"latency": latency}, "downstream")]
    async with proxy_with(client, "lat", ups.source, toxics) as proxy:
        first, elapsed, received, _ = await fetch(proxy.listen_port, size)
    return {
        f"latency_{latency}ms_bulk_mb_s": received / 1e6 / elapsed,
        f"latency_{latency}ms_first_byte_ms": first * 1000,
    }


async def measure_latency_rtt(
    client: FaultProxyClient, ups: Upstreams, count: int, latency: int = 10, jitter: int = 0
) -> Metrics:
    """Upstream latency toxic on an echo: round-trip times of small messages."""
    toxics = [("latency", {"latency": latency, "jitter": jitter}, "upstream")]
    async with proxy_with(client, "rtt", ups.echo, toxics) as proxy:
        samples = await round_trips(proxy.listen_port, count)
    suffix = f"_jitter{jitter}" if jitter else ""
    return rtt_metrics(f"rtt_{latency}ms{suffix}", samples)


async def measure_parallel(
    client: FaultProxyClient, ups: Upstreams, connections: int, rate: int, rtt_count: int
) -> Metrics:
    """Many connections at once: a per-connection bandwidth limit (every connection gets the
    rate), and round trips through a 10 ms latency toxic on all of them together."""
    size = int(rate * 1000 * 1.0)
    toxics = [("bandwidth", {"rate": rate}, "downstream")]
    async with proxy_with(client, "many-bw", ups.source, toxics) as proxy:
        results = await asyncio.gather(
            *(fetch(proxy.listen_port, size) for _ in range(connections))
        )
    rates = [received / 1000 / elapsed for _, elapsed, received, _ in results]
    toxics = [("latency", {"latency": 10}, "upstream")]
    async with proxy_with(client, "many-rtt", ups.echo, toxics) as proxy:
        per_conn = await asyncio.gather(
            *(round_trips(proxy.listen_port, rtt_count) for _ in range(connections))
        )
    samples = [s for conn in per_conn for s in conn]
    return {
        f"parallel_{connections}x_bandwidth_{rate}_kbs_min": min(rates),
        f"parallel_{connections}x_bandwidth_{rate}_kbs_max": max(rates),
        **rtt_metrics(f"parallel_{connections}x_rtt_10ms", samples),
    }


async def measure_half_close(client: FaultProxyClient, ups: Upstreams) -> Metrics:
    """The client sends 1 MB and shuts its write side; the server never answers or closes.
    Seconds until the client sees the end of the stream (capped at 5 s)."""
    async with proxy_with(client, "half", ups.hold, []) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listen_port)
        started = time.perf_counter()
        try:
            writer.write(b"\0" * 1_000_000)
            await writer.drain()
            writer.write_eof()
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(reader.read(), 5.0)
        finally:
            writer.close()
    return {"half_close_eof_s": time.perf_counter() - started}


_END_CODES = {"complete": 0.0, "eof": 1.0, "reset": 2.0, "timeout": 3.0}


async def measure_close_toxics(client: FaultProxyClient, ups: Upstreams) -> Metrics:
    """slow_close, timeout, limit_data, reset_peer, slicer and down: timings, byte counts and
    how the stream ended (0 complete, 1 EOF, 2 reset, 3 still open after the I/O timeout)."""
    out: Metrics = {}
    toxics = [("slow_close", {"delay": 300}, "downstream")]
    async with proxy_with(client, "slow", ups.source, toxics) as proxy:
        first, elapsed, received, ended = await fetch(proxy.listen_port, 10_000, "close")
        out["slow_close_300ms_eof_ms"] = (elapsed - first) * 1000
        out["slow_close_bytes"] = received
    toxics = [("timeout", {"timeout": 300}, "downstream")]
    async with proxy_with(client, "timeout", ups.source, toxics) as proxy:
        _, elapsed, received, ended = await fetch(proxy.listen_port, 10_000)
        out["timeout_300ms_end_ms"] = elapsed * 1000
        out["timeout_bytes"] = received
        out["timeout_end"] = _END_CODES[ended]
    toxics = [("limit_data", {"bytes": 100_000}, "downstream")]
    async with proxy_with(client, "limit", ups.source, toxics) as proxy:
        _, elapsed, received, ended = await fetch(proxy.listen_port, 1_000_000)
        out["limit_data_bytes"] = received
        out["limit_data_end"] = _END_CODES[ended]
    toxics = [("reset_peer", {"timeout": 200}, "downstream")]
    async with proxy_with(client, "reset", ups.source, toxics) as proxy:
        _, elapsed, received, ended = await fetch(proxy.listen_port, 10_000)
        out["reset_peer_200ms_end_ms"] = elapsed * 1000
        out["reset_peer_bytes"] = received
        out["reset_peer_end"] = _END_CODES[ended]
    toxics = [("slicer", {"average_size": 1000, "size_variation": 200, "delay": 200}, "downstream")]
    async with proxy_with(client, "slicer", ups.source, toxics) as proxy:
        _, elapsed, received, ended = await fetch(proxy.listen_port, 500_000)
        out["slicer_500kb_ms"] = elapsed * 1000
        out["slicer_bytes"] = received
    async with proxy_with(client, "down", ups.source, []) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listen_port)
        writer.write(b"1000 hold\n")
        await reader.readexactly(1000)
        started = time.perf_counter()
        await proxy.disable()
        try:
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(reader.read(), IO_TIMEOUT)
            out["down_close_ms"] = (time.perf_counter() - started) * 1000
        finally:
            writer.close()
        try:
            _, w2 = await asyncio.open_connection("127.0.0.1", proxy.listen_port)
            w2.close()
            out["down_refused"] = 0.0
        except ConnectionRefusedError:
            out["down_refused"] = 1.0
    return out


Measurement = Callable[[FaultProxyClient, Upstreams], Awaitable[Metrics]]


async def _bandwidth_step(
    client: FaultProxyClient, ups: Upstreams, *, rate: int, seconds: float
) -> Metrics:
    return await measure_bandwidth(client, ups, rate, seconds)


async def _latency_bulk_step(
    client: FaultProxyClient, ups: Upstreams, *, latency: int, size: int
) -> Metrics:
    return await measure_latency_bulk(client, ups, latency, size)


def measurements(profile: Profile) -> list[tuple[str, Measurement]]:
    """The measurements of one run, in order, each as (label, coroutine function)."""
    steps: list[tuple[str, Measurement]] = []
    for rate in profile.bandwidth_rates:
        steps.append(
            (
                f"bandwidth {rate} KB/s",
                functools.partial(_bandwidth_step, rate=rate, seconds=profile.bandwidth_seconds),
            )
        )
    for latency in profile.latency_bulk_ms:
        steps.append(
            (
                f"latency {latency} ms bulk",
                functools.partial(
                    _latency_bulk_step, latency=latency, size=profile.latency_bulk_bytes
                ),
            )
        )
    steps.append(("latency 10 ms rtt", lambda c, u: measure_latency_rtt(c, u, profile.rtt_count)))
    steps.append(
        (
            "latency 10±5 ms rtt",
            lambda c, u: measure_latency_rtt(c, u, profile.rtt_count // 2, 10, 5),
        )
    )
    steps.append(
        (
            "many connections",
            lambda c, u: measure_parallel(
                c, u, profile.parallel_connections, profile.parallel_rate, profile.parallel_rtt
            ),
        )
    )
    steps.append(("half-close", measure_half_close))
    steps.append(("close toxics", measure_close_toxics))
    return steps


async def compare(
    urls: dict[str, str],
    profile: Profile,
    progress: Callable[[str], None] | None = None,
    only: str = "",
) -> dict[str, Metrics]:
    """Run every measurement against each server in ``urls`` (name -> API URL), alternating
    servers per measurement so that drift on a shared machine hits both alike. ``only``: run
    just the measurements whose label contains it."""
    results: dict[str, Metrics] = {name: {} for name in urls}
    async with contextlib.AsyncExitStack() as stack:
        ups = await stack.enter_async_context(upstreams())
        clients = {
            name: await stack.enter_async_context(FaultProxyClient(url, timeout=30))
            for name, url in urls.items()
        }
        for label, step in measurements(profile):
            if only not in label:
                continue
            for name, client in clients.items():
                if progress is not None:
                    progress(f"{label}: {name}")
                results[name].update(await step(client, ups))
    return results


__all__ = [
    "Metrics",
    "Profile",
    "Upstreams",
    "compare",
    "fetch",
    "find_real_server",
    "measurements",
    "running_server",
    "upstreams",
]
