"""Pure helpers of the benchmarks: reading wrk, recovery curves, the failover views."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.common import tcp_listen_overflows
from bench.failover import Outcome, analyse
from bench.overhead import parse_wrk, top_frames
from bench.reconnect_storm import curve

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:4000/bench
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    14.20ms    5.10ms  60.00ms   80.00%
    Req/Sec     1.10k   100.00     1.30k    70.00%
  Latency Distribution
     50%   13.01ms
     75%   16.00ms
     90%   20.00ms
     99%  870.00us
  5512 requests in 5.01s, 2.10MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:   1100.20
Transfer/sec:    429.00KB
"""


def test_parse_wrk_reads_rate_percentiles_and_errors() -> None:
    parsed = parse_wrk(WRK_OUTPUT)
    assert parsed["rps"] == pytest.approx(1100.2)
    assert parsed["p50_s"] == pytest.approx(0.01301)
    assert parsed["p99_s"] == pytest.approx(0.00087)
    assert parsed["requests"] == 5512
    assert parsed["errors"] == 6


def test_parse_wrk_refuses_output_it_does_not_understand() -> None:
    with pytest.raises(ValueError, match="unexpected wrk output"):
        parse_wrk("wrk: connection refused\n")


def test_curve_reports_when_each_share_was_reached() -> None:
    times = [float(t) for t in range(1, 101)]  # one tunnel back per second
    assert curve(times, 100) == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p100": 100.0}
    missing = [*times[:98], None, None]
    assert curve(missing, 100) == {"p50": 50.0, "p90": 90.0, "p99": None, "p100": None}


def test_failover_views_count_forwarded_and_failed_per_entry() -> None:
    outcomes = [
        Outcome(-1.0, "anycast", "GET", "ok", 0.01, "ams->ams"),
        Outcome(1.0, "anycast", "GET", "ok", 0.01, "ams->fra"),  # forwarded
        Outcome(1.5, "anycast", "POST", "502/1035", 3.1, "ams->ams"),
        Outcome(1.0, "ams", "GET", "ok", 0.01, "ams->fra"),
    ]
    views = analyse(outcomes, fault_s=8.0)["views"]
    assert list(views) == ["anycast", "ams"]  # the visitor's view first
    assert (views["anycast"]["requests"], views["anycast"]["forwarded"]) == (3, 1)
    assert (views["anycast"]["failed_idempotent"], views["anycast"]["failed_not_idempotent"]) == (
        0,
        1,
    )
    assert views["anycast"]["first_failure_s"] == 1.5
    assert views["ams"]["failed"] == 0 and views["ams"]["forwarded"] == 1


def test_top_frames_groups_busy_time_and_leaves_out_waiting(tmp_path: Path) -> None:
    raw = tmp_path / "edge.txt"
    raw.write_text(
        "main (reference/edge/cli.py:1);select (selectors.py:468) 50\n"
        "main (reference/edge/cli.py:1);send (h2/connection.py:10) 30\n"
        "main (reference/edge/cli.py:1);write (asyncio/selector_events.py:1057) 70\n"
    )
    frames = top_frames(raw)
    assert frames["samples"] == 100 and frames["idle_samples"] == 50
    assert frames["self_by_package"][0] == ("asyncio", 0.7)
    assert ("main (reference/edge/cli.py:1)", 1.0) in frames["inclusive"]


def test_listen_overflow_counter_is_read_where_the_kernel_has_it() -> None:
    value = tcp_listen_overflows()
    if Path("/proc/net/netstat").exists():
        assert isinstance(value, int) and value >= 0
    else:
        assert value is None
