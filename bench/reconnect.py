"""Reconnect: time from a link heal to the first served request and to full HA connections.

    python bench/reconnect.py [--trials 30] [--kinds reset,blackhole,down] [--links one|both]
                              [--fault-min 4] [--fault-max 6] [--seed 1] [--max-minutes 40]

One embedded stack (LocalStack: 2 PoPs, one named tunnel, 4 HA connections). Each trial waits
for the steady state (2 connections per PoP, visitors served), breaks the connector's link to
PoP ``ams`` (``--links both``: to every PoP) through the fault proxy for a duration drawn from
U(fault-min, fault-max) s, heals it, and measures from the heal call:

* **served**: the first visitor GET through the broken PoP answered 200 by the origin
  (``--links both``: through any PoP), polled every 20 ms;
* **full HA**: the connector's ``/connections`` shows 2 connections on every PoP again.

Beside it, what the peer connector's policy (cloudflared: full-jitter backoff 1 s doubling to
32 s, plus the 10 s supervisor layer) predicts for the same trials, from
:mod:`bench.peer_policy`. Bounded: --trials (max 200) and --max-minutes; traffic to 127.0.0.1.
Target: heal -> served p99 <= 1.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Run, print_table, run_async, summarize
from bench.observe import connection_spread, poll_until, visit
from bench.peer_policy import PEER_DIAL_TIMEOUT, LinkFault, predict
from harness.faultproxy import FaultProxyClient
from harness.faults.base import FaultContext, make_fault
from harness.stack.local import LocalStack
from reference.wire import HeartbeatConfig

TARGET_SERVED_P99_S = 1.5
FAULT_KINDS = {"reset": "link_reset", "blackhole": "link_blackhole", "down": "link_down"}
RECOVERY_TIMEOUT = 60.0
STEADY_TIMEOUT = 60.0
CONNECTOR_DIAL_TIMEOUT = 2.0  # reference connector default (--dial-timeout)


def model_fault(kind: str, duration: float) -> LinkFault:
    """The same trial for the peer policy. A black hole is detected after the same heartbeat
    timeout as ours (so only the retry policy differs) and swallows each dial for the peer's
    15 s dial timeout; a reset or a link taken down is seen at once and refuses every dial."""
    if kind == "blackhole":
        return LinkFault(duration, HeartbeatConfig().timeout, PEER_DIAL_TIMEOUT)
    return LinkFault(duration)


class Trials:
    """The trial loop on one running stack."""

    def __init__(self, stack: LocalStack, client: FaultProxyClient, links: str) -> None:
        self.stack = stack
        self.client = client
        self.pops = list(stack.topology.pops)
        self.broken = self.pops[:1] if links == "one" else list(self.pops)
        self.tunnel = stack.topology.tunnels[0]
        self.metrics_url = stack.connector_metrics_url(self.tunnel.name)
        self.ctx = FaultContext(
            stack=stack,
            faultproxy=client,
            api_url=stack.api_url,
            admin_token_file=str(stack.admin_token_file),
        )
        self.per_pop = 4 // len(self.pops)  # the connector's 4 HA connections, spread

    async def steady(self, session: aiohttp.ClientSession) -> bool:
        spread = await connection_spread(session, self.metrics_url)
        if any(spread.get(pop, 0) != self.per_pop for pop in self.pops):
            return False
        statuses = await asyncio.gather(
            *(visit(session, self.stack.visitor_url(p), self.tunnel.hostname) for p in self.pops)
        )
        return all(s == 200 for s in statuses)

    async def wait_steady(self, session: aiohttp.ClientSession) -> bool:
        """Wait (bounded) for 2 connections per PoP and visitors served through every PoP."""
        steady_at = await poll_until(
            lambda: self.steady(session), timeout=STEADY_TIMEOUT, interval=0.1
        )
        return steady_at is not None

    async def one(
        self, session: aiohttp.ClientSession, kind: str, duration: float
    ) -> dict[str, Any]:
        if not await self.wait_steady(session):
            raise RuntimeError(
                f"the stack did not return to 2+2 connections within {STEADY_TIMEOUT:.0f} s; see "
                f"the connector log in {self.stack.state_dir / 'logs'}"
            )
        faults = [make_fault(FAULT_KINDS[kind], f"conn-{pop}") for pop in self.broken]
        injected = time.monotonic()
        for fault in faults:
            await fault.inject(self.ctx)
        await asyncio.sleep(max(0.0, injected + duration - time.monotonic()))
        healed = time.monotonic()
        for fault in faults:
            await fault.heal(self.ctx)

        async def served() -> bool:
            statuses = await asyncio.gather(
                *(
                    visit(session, self.stack.visitor_url(p), self.tunnel.hostname, timeout=1.0)
                    for p in self.broken
                )
            )
            return any(s == 200 for s in statuses)

        async def full() -> bool:
            spread = await connection_spread(session, self.metrics_url)
            return all(spread.get(pop, 0) == self.per_pop for pop in self.pops)

        served_at, full_at = await asyncio.gather(
            poll_until(served, timeout=RECOVERY_TIMEOUT),
            poll_until(full, timeout=RECOVERY_TIMEOUT),
        )
        return {
            "kind": kind,
            "fault_s": round(healed - injected, 3),
            "served_s": None if served_at is None else round(served_at - healed, 4),
            "full_ha_s": None if full_at is None else round(full_at - healed, 4),
        }


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.max_minutes * 60
    trials: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="outlast-bench-reconnect-") as tmp:
        async with (
            LocalStack(
                Path(tmp) / "stack", seed=args.seed, connector_args=tuple(args.connector_arg)
            ) as stack,
            FaultProxyClient(stack.faultproxy_url) as client,
            aiohttp.ClientSession(trust_env=False) as session,
        ):
            runner = Trials(stack, client, args.links)
            for i in range(args.trials):
                for kind in args.kinds:  # interleaved, so load drift hits every kind alike
                    if time.monotonic() > deadline:
                        print(f"stopping: --max-minutes {args.max_minutes} reached", flush=True)
                        return trials
                    duration = rng.uniform(args.fault_min, args.fault_max)
                    trial = await runner.one(session, kind, duration)
                    trials.append(trial)
                    print(
                        f"trial {i + 1:>3}/{args.trials} {kind:<9} fault {trial['fault_s']:5.2f} s"
                        f"  served {trial['served_s']} s  full HA {trial['full_ha_s']} s",
                        flush=True,
                    )
    return trials


def analyse(
    trials: list[dict[str, Any]], kinds: list[str], links: str, seed: int
) -> dict[str, Any]:
    connections = 2 if links == "one" else 4
    out: dict[str, Any] = {}
    for kind in kinds:
        mine = [t for t in trials if t["kind"] == kind]
        predicted = predict([model_fault(kind, t["fault_s"]) for t in mine], connections, seed=seed)
        out[kind] = {
            "trials": len(mine),
            "served_s": summarize([t["served_s"] for t in mine if t["served_s"] is not None]),
            "full_ha_s": summarize([t["full_ha_s"] for t in mine if t["full_ha_s"] is not None]),
            "not_recovered": sum(
                1 for t in mine if t["served_s"] is None or t["full_ha_s"] is None
            ),
            "peer_policy_served_s": summarize([p.first for p in predicted]),
            "peer_policy_full_ha_s": summarize([p.last for p in predicted]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30, help="trials per fault kind")
    parser.add_argument("--kinds", default="reset,blackhole,down")
    parser.add_argument("--links", choices=("one", "both"), default="one")
    parser.add_argument("--fault-min", type=float, default=4.0, help="shortest fault, seconds")
    parser.add_argument("--fault-max", type=float, default=6.0, help="longest fault, seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-minutes", type=float, default=40.0)
    parser.add_argument(
        "--connector-arg",
        action="append",
        default=[],
        help="extra `outlast tunnel run` argument, e.g. --connector-arg=--rebalance-interval=0.5",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="result file (default bench/results/reconnect[-both].json)",
    )
    args = parser.parse_args()
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if unknown := [k for k in args.kinds if k not in FAULT_KINDS]:
        parser.error(f"unknown fault kinds {unknown}; choose from {sorted(FAULT_KINDS)}")
    if not 1 <= args.trials <= 200:
        parser.error("--trials must be 1..200")
    if not 0 < args.fault_min <= args.fault_max <= 120:
        parser.error("need 0 < --fault-min <= --fault-max <= 120")
    name = "reconnect" if args.links == "one" else "reconnect-both"
    run = Run(name + ("-tuned" if args.connector_arg else ""))
    trials = run_async(measure(args))
    result = analyse(trials, args.kinds, args.links, args.seed)
    print()
    print(
        f"heal -> served / full HA, seconds ("
        f"{'link to one PoP' if args.links == 'one' else 'links to every PoP'}; "
        f"faults {args.fault_min:g}-{args.fault_max:g} s). peer = cloudflared's policy, modelled"
    )
    rows = []
    for kind, r in result.items():
        for label, key in (
            ("served", "served_s"),
            ("full HA", "full_ha_s"),
            ("peer served", "peer_policy_served_s"),
            ("peer full HA", "peer_policy_full_ha_s"),
        ):
            s = r[key]
            rows.append([f"{kind} {label}", s["n"], s["p50"], s["p95"], s["p99"], s["max"]])
    print_table(["measure", "n", "p50", "p95", "p99", "max"], rows, digits=2)
    print(f"target: heal -> served p99 <= {TARGET_SERVED_P99_S} s")
    print(run.footer())
    path = run.write(
        {
            "settings": {
                "trials": args.trials,
                "kinds": args.kinds,
                "links": args.links,
                "fault_s": [args.fault_min, args.fault_max],
                "seed": args.seed,
                "poll_interval_s": 0.02,
                "connector_args": args.connector_arg,
            },
            "target_served_p99_s": TARGET_SERVED_P99_S,
            "results": result,
            "trials": trials,
        },
        args.json,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
