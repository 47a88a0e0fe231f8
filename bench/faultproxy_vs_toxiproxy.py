"""Our fault proxy next to the real Toxiproxy: what each toxic does to bulk and many-connection
traffic, measured the same way against both servers in one run (127.0.0.1 only).

Both servers run as child processes; the upstream servers and the client run here. The real
server is ``$TOXIPROXY_SERVER`` or ``../shared/toxiproxy/toxiproxy-server`` next to the project;
without one the script says so and exits 0. Prints a table (real, ours, ratio, the issue-15
target where there is one) and writes ``bench/results/faultproxy_vs_toxiproxy.json``.
Each measurement alternates between the servers; the default run takes about a minute.

    python bench/faultproxy_vs_toxiproxy.py [--short] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, Run, print_table, run_async
from harness.faultproxy.locate import FaultProxyChoice
from harness.faultproxy.sidebyside import (
    Metrics,
    Profile,
    compare,
    find_real_server,
    running_server,
)

RESULTS = Path(__file__).resolve().parent / "results" / "faultproxy_vs_toxiproxy.json"
TIME_LIMIT = 600.0


def targets(real: Metrics, profile: Profile) -> dict[str, tuple[str, bool | None]]:
    """Issue 15's targets: metric -> (what is required, met?) given ours (filled in later)."""
    rules: dict[str, str] = {}
    for rate in profile.bandwidth_rates:
        rules[f"bandwidth_{rate}_kbs"] = f"within 2 % of {rate}"
    for latency in profile.latency_bulk_ms:
        rules[f"latency_{latency}ms_bulk_mb_s"] = ">= 0.8x real"
    rules["rtt_10ms_p99_ms"] = "within 1 ms of real"
    rules["half_close_eof_s"] = "EOF like real (< 1 s)"
    return {k: (v, None) for k, v in rules.items() if k in real}


def check(metric: str, real: float, ours: float, profile: Profile) -> bool | None:
    if metric.startswith("bandwidth_") and metric.endswith("_kbs"):
        rate = float(metric.split("_")[1])
        return abs(ours - rate) <= 0.02 * rate
    if metric.startswith("latency_") and metric.endswith("_bulk_mb_s"):
        return ours >= 0.8 * real
    if metric == "rtt_10ms_p99_ms":
        return abs(ours - real) <= 1.0
    if metric == "half_close_eof_s":
        return ours < 1.0 and real < 1.0
    return None


def merge_rounds(rounds: list[dict[str, Metrics]]) -> dict[str, Metrics]:
    """Median of each metric over the rounds."""
    merged: dict[str, Metrics] = {}
    for server in rounds[0]:
        merged[server] = {
            metric: statistics.median(r[server][metric] for r in rounds)
            for metric in rounds[0][server]
        }
    return merged


async def measure(binary: Path, profile: Profile, rounds: int, only: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fp-vs-") as tmp:
        async with (
            running_server(
                FaultProxyChoice("binary", binary=str(binary)), Path(tmp) / "real.log"
            ) as real_url,
            running_server(FaultProxyChoice("embedded"), Path(tmp) / "ours.log") as ours_url,
        ):
            done = []
            for index in range(rounds):
                done.append(
                    await compare(
                        {"real": real_url, "ours": ours_url},
                        profile,
                        only=only,
                        progress=lambda s, i=index: print(f"  [{i + 1}/{rounds}] {s}", flush=True),
                    )
                )
    merged = merge_rounds(done)
    rows = []
    for metric, real in merged["real"].items():
        ours = merged["ours"][metric]
        ok = check(metric, real, ours, profile)
        rows.append(
            {
                "metric": metric,
                "real": real,
                "ours": ours,
                "ratio": ours / real if real else None,
                "target": targets(merged["real"], profile).get(metric, ("", None))[0],
                "met": ok,
            }
        )
    return {
        "real_server": str(binary),
        "profile": profile.__dict__,
        "rounds": rounds,
        "rows": rows,
        "all_targets_met": all(r["met"] for r in rows if r["met"] is not None),
        "raw_rounds": done,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the compatibility test's profile")
    parser.add_argument("--rounds", type=int, default=1, help="repeat and take medians (1..5)")
    parser.add_argument(
        "--only", default="", help="run only the measurements whose label contains this"
    )
    args = parser.parse_args()
    if not 1 <= args.rounds <= 5:
        parser.error("--rounds must be 1..5")
    binary = find_real_server(REPO)
    if binary is None:
        print(
            "faultproxy_vs_toxiproxy: no real Toxiproxy server (set TOXIPROXY_SERVER=path, or "
            "put it at ../shared/toxiproxy/toxiproxy-server); nothing measured"
        )
        return
    profile = Profile.short() if args.short else Profile()
    run = Run("faultproxy_vs_toxiproxy")
    print(f"real server: {binary}")
    result = run_async(
        asyncio.wait_for(measure(binary, profile, args.rounds, args.only), TIME_LIMIT)
    )
    print_table(
        ["metric", "real", "ours", "ours/real", "target", "met"],
        [
            [
                r["metric"],
                r["real"],
                r["ours"],
                r["ratio"],
                r["target"] or "-",
                {True: "yes", False: "NO", None: "-"}[r["met"]],
            ]
            for r in result["rows"]
        ],
        digits=2,
    )
    print(f"all issue-15 targets met: {'yes' if result['all_targets_met'] else 'NO'}")
    print(run.footer())
    print(f"wrote {run.write(result, RESULTS)}")


if __name__ == "__main__":
    main()
