"""Stack start-up: time until visitors are served through every PoP, and teardown time.

    python bench/stack_startup.py [--runs 5] [--backend local|compose|swarm]

Each run starts a fresh stack in a temporary directory — ``local``: the embedded stack
(broker, control plane, 2 edges, origin, fault proxy, one connector as processes on 127.0.0.1);
``compose``: the Docker Compose project (needs a running Docker engine, ``DOCKER_HOST``, and the
images built: see docs/compose.md); ``swarm``: the Swarm stack over the nodes of
``outlast swarm up`` (docs/distributed.md) — bootstraps account, zone, tunnel and route, and
stops the clock when a visitor request has been served through every PoP
(``up()`` returns). Targets:
local <= 3 s, Compose (images built) <= 20 s, Swarm <= 60 s. Bounded: --runs (max 10).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Run, loadavg, print_table, run_async
from harness.stack.local import LocalStack

TARGET_S = {"local": 3.0, "compose": 20.0, "swarm": 60.0}


def make_stack(backend: str, state_dir: Path) -> Any:
    if backend == "swarm":
        from harness.stack.swarm import SwarmStack

        return SwarmStack(state_dir)
    if backend == "compose":
        from harness.stack.compose import ComposeStack

        return ComposeStack(state_dir)
    return LocalStack(state_dir)


async def one_run(backend: str, base: Path, index: int) -> dict[str, float]:
    stack = make_stack(backend, base / f"run{index}")
    load = (loadavg() or [0.0])[0]
    started = time.monotonic()
    await stack.up()
    up_s = time.monotonic() - started
    started = time.monotonic()
    await stack.down()
    return {"up_s": up_s, "down_s": time.monotonic() - started, "loadavg_1m": load}


async def main_async(args: argparse.Namespace) -> list[dict[str, float]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="outlast-bench-startup-") as tmp:
        for i in range(args.runs):
            results.append(await one_run(args.backend, Path(tmp), i))
            r = results[-1]
            print(
                f"run {i + 1}/{args.runs}: up {r['up_s']:.2f} s, down {r['down_s']:.2f} s "
                f"(load {r['loadavg_1m']:.2f})",
                flush=True,
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backend", choices=("local", "compose", "swarm"), default="local")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not 1 <= args.runs <= 10:
        parser.error("--runs must be 1..10")
    run = Run("stack_startup" if args.backend == "local" else f"stack_startup-{args.backend}")
    results = run_async(main_async(args))
    ups = [r["up_s"] for r in results]
    target = TARGET_S[args.backend]
    summary = {
        "backend": args.backend,
        "runs": args.runs,
        "up_median_s": round(statistics.median(ups), 3),
        "up_min_s": round(min(ups), 3),
        "up_max_s": round(max(ups), 3),
        "down_median_s": round(statistics.median(r["down_s"] for r in results), 3),
        "target_s": target,
        "median_vs_target": round(statistics.median(ups) / target, 2),
    }
    print()
    print_table(["metric", "value"], list(summary.items()))
    print(run.footer())
    path = run.write({"summary": summary, "runs": results}, args.json)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
