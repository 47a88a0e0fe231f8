"""Embedded stack start-up: time until the first visitor request is served, and teardown time.

    python bench/stack_startup.py [--runs 3]

Each run starts a fresh LocalStack in a temporary directory (broker, control plane, 2 edges,
origin, fault proxy, one connector), bootstraps account/zone/tunnel/route, and stops the clock
when a visitor request is served through every PoP. Target: <= 3 s. Bounded: --runs (max 10).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from harness.stack.local import LocalStack

TARGET_S = 3.0


async def one_run(base: Path, index: int) -> dict[str, float]:
    stack = LocalStack(base / f"run{index}")
    started = time.monotonic()
    await stack.up()
    up_s = time.monotonic() - started
    started = time.monotonic()
    await stack.down()
    return {"up_s": up_s, "down_s": time.monotonic() - started}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("bench/results/stack_startup.json"))
    args = parser.parse_args()
    runs = max(1, min(args.runs, 10))
    results = []
    with tempfile.TemporaryDirectory(prefix="outlast-bench-") as tmp:
        for i in range(runs):
            results.append(await one_run(Path(tmp), i))
            print(
                f"run {i + 1}/{runs}: up {results[-1]['up_s']:.2f} s, "
                f"down {results[-1]['down_s']:.2f} s",
                flush=True,
            )
    ups = [r["up_s"] for r in results]
    summary = {
        "runs": runs,
        "up_median_s": round(statistics.median(ups), 3),
        "up_max_s": round(max(ups), 3),
        "down_median_s": round(statistics.median(r["down_s"] for r in results), 3),
        "target_s": TARGET_S,
        "median_vs_target": round(statistics.median(ups) / TARGET_S, 2),
    }
    print()
    print(f"{'metric':<28}{'value':>10}")
    for key, value in summary.items():
        print(f"{key:<28}{value:>10}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"summary": summary, "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
