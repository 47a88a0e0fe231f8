"""Our fault proxy against the real Toxiproxy 2.12, side by side in one run: every toxic's timings
and byte counts, bulk and many-connection traffic, with tolerances for a shared 2-core machine.

Both servers run as processes on 127.0.0.1; the measurements are those of
``bench/faultproxy_vs_toxiproxy.py --short`` (``harness.faultproxy.sidebyside``), run once for
the module. Each check bounds *both* servers, so a regression on either side shows. The bounds
are loose, but the old bandwidth (-40 % at 50 MB/s), latency-throughput (0.07x at 100 ms) and
half-close (never closed) behaviour all fail them.

Skipped only when the real server binary is absent: ``$TOXIPROXY_SERVER`` or
``../shared/toxiproxy/toxiproxy-server`` next to the project (CI has it).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path

import pytest

from harness.faultproxy.locate import FaultProxyChoice
from harness.faultproxy.sidebyside import (
    Metrics,
    Profile,
    compare,
    find_real_server,
    running_server,
)

REPO = Path(__file__).resolve().parents[2]
REAL = find_real_server(REPO)
PROFILE = Profile.short()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        REAL is None,
        reason="the real Toxiproxy server is not there: set TOXIPROXY_SERVER=path or put "
        "toxiproxy-server in ../shared/toxiproxy/ next to the project",
    ),
]


async def _both() -> dict[str, Metrics]:
    assert REAL is not None
    with tempfile.TemporaryDirectory(prefix="fp-compat-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            real = await stack.enter_async_context(
                running_server(FaultProxyChoice("binary", binary=str(REAL)), Path(tmp) / "real")
            )
            ours = await stack.enter_async_context(
                running_server(FaultProxyChoice("embedded"), Path(tmp) / "ours")
            )
            return await asyncio.wait_for(compare({"real": real, "ours": ours}, PROFILE), 100)


@pytest.fixture(scope="module")
def results() -> dict[str, Metrics]:
    return asyncio.run(_both())


def _both_within(results: dict[str, Metrics], metric: str, low: float, high: float) -> None:
    for server in ("real", "ours"):
        value = results[server][metric]
        assert low <= value <= high, f"{server} {metric} = {value:.3f}, not in [{low}, {high}]"


@pytest.mark.parametrize("rate", PROFILE.bandwidth_rates)
def test_bandwidth_rate(results: dict[str, Metrics], rate: int) -> None:
    metric = f"bandwidth_{rate}_kbs"
    ours, real = results["ours"][metric], results["real"][metric]
    assert 0.95 * rate <= ours <= 1.03 * rate, f"ours {ours:.0f} KB/s for a {rate} KB/s toxic"
    assert 0.80 * rate <= real <= 1.03 * rate, f"real {real:.0f} KB/s for a {rate} KB/s toxic"


def test_bandwidth_is_per_connection(results: dict[str, Metrics]) -> None:
    n, rate = PROFILE.parallel_connections, PROFILE.parallel_rate
    # The floor is the CPU's, not the shaper's: with the suite's other workers on the same two
    # cores a connection's writer is sometimes scheduled late (seen: 474 of 500 KB/s), and the
    # real server needs the same margin.
    for server, tolerance in (("ours", 0.10), ("real", 0.10)):
        low = results[server][f"parallel_{n}x_bandwidth_{rate}_kbs_min"]
        high = results[server][f"parallel_{n}x_bandwidth_{rate}_kbs_max"]
        assert (1 - tolerance) * rate <= low <= high <= 1.03 * rate, (server, low, high)


@pytest.mark.parametrize("latency", PROFILE.latency_bulk_ms)
def test_latency_delays_a_stream_without_throttling_it(
    results: dict[str, Metrics], latency: int
) -> None:
    throughput = f"latency_{latency}ms_bulk_mb_s"
    ours, real = results["ours"][throughput], results["real"][throughput]
    assert ours >= 0.5 * real, f"ours {ours:.0f} MB/s, real {real:.0f} MB/s"
    # 20 MiB in well under 2 latency periods + 1 s on either server
    size_mb = PROFILE.latency_bulk_bytes / 1e6
    assert real >= size_mb / (2 * latency / 1000 + 1.0)
    _both_within(results, f"latency_{latency}ms_first_byte_ms", latency * 0.95, latency + 250)


def test_latency_round_trips(results: dict[str, Metrics]) -> None:
    """The tail is compared at p95 (p99 of 150 samples is the second-worst one: on a busy
    shared machine that is the scheduler's figure, not the proxy's)."""
    _both_within(results, "rtt_10ms_p50_ms", 9.9, 13.0)
    n = PROFILE.parallel_connections
    _both_within(results, f"parallel_{n}x_rtt_10ms_p50_ms", 9.9, 14.0)
    # The slack is the scheduler's: the two servers are measured one after the other, with the
    # suite's other workers on the same two cores (seen: 8 parallel connections, ours 18.1 ms
    # against real 11.9 ms at p95 while the catalogue ran beside it).
    for metric, slack in (("rtt_10ms_p95_ms", 5.0), (f"parallel_{n}x_rtt_10ms_p95_ms", 10.0)):
        ours, real = results["ours"][metric], results["real"][metric]
        assert ours <= real + slack, f"{metric}: ours {ours:.2f} ms, real {real:.2f} ms"


def test_jitter_spreads_the_delay_alike(results: dict[str, Metrics]) -> None:
    # latency 10 +- 5 ms: Go's and our draws are uniform in [-5, 5) ms
    _both_within(results, "rtt_10ms_jitter5_mean_ms", 8.0, 13.0)
    _both_within(results, "rtt_10ms_jitter5_stdev_ms", 1.8, 8.0)  # uniform: 2.9 ms
    ours, real = (
        results["ours"]["rtt_10ms_jitter5_mean_ms"],
        results["real"]["rtt_10ms_jitter5_mean_ms"],
    )
    assert abs(ours - real) <= 2.0


def test_half_close_closes_the_connection(results: dict[str, Metrics]) -> None:
    _both_within(results, "half_close_eof_s", 0.0, 1.0)


def test_close_toxics_timings_and_byte_counts(results: dict[str, Metrics]) -> None:
    for server in ("real", "ours"):
        got = results[server]
        assert got["slow_close_bytes"] == 10_000, server
        assert got["timeout_bytes"] == 0 and got["reset_peer_bytes"] == 0, server
        assert got["limit_data_bytes"] == 100_000, server
        assert got["slicer_bytes"] == 500_000, server
        assert got["down_refused"] == 1.0, server
    for metric in ("timeout_end", "limit_data_end", "reset_peer_end"):
        assert results["ours"][metric] == results["real"][metric], metric
    assert results["ours"]["reset_peer_end"] == 2.0  # connection reset
    _both_within(results, "slow_close_300ms_eof_ms", 290, 600)
    _both_within(results, "timeout_300ms_end_ms", 290, 600)
    _both_within(results, "reset_peer_200ms_end_ms", 190, 500)
    _both_within(results, "down_close_ms", 0, 1000)
    ours, real = results["ours"]["slicer_500kb_ms"], results["real"]["slicer_500kb_ms"]
    assert 0.33 * real <= ours <= 3 * real, f"slicer: ours {ours:.0f} ms, real {real:.0f} ms"
