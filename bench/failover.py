"""Failover: visitor requests failed while one PoP's tunnel link is reset, black-holed or down.

    python bench/failover.py [--rate 40] [--trials 3] [--fault-seconds 8] [--kinds ...]

One embedded stack (2 PoPs, one named tunnel, 4 HA connections). Visitors send requests at a
fixed rate (open loop), round robin over both PoPs, alternating GET (idempotent) and POST with a
1 KiB body (not idempotent). Each trial: 3 s of traffic, the connector's link to PoP ``ams``
broken for ``--fault-seconds``, then 8 s more. Every answer is checked (the origin echoes the
request id and the body's SHA-256).

Two views of "failed", both measured on the same requests:

* **per PoP** (as the reference edge is): a request fails unless the PoP it was sent to serves
  it. The reference edge does not forward between PoPs, so while the tunnel has no connection at
  ``ams`` every request sent there gets 530 / error 1033.
* **edge network**: the visitor's request is re-sent once to the other PoP when the first PoP
  answered 530/1033 (nothing was forwarded, so this is safe for any method), or 502/1035 / no
  answer and the method is idempotent — the edge's own retry rule, extended across PoPs, as an
  anycast edge that forwards between PoPs would apply it. A request fails if that fails too.

Target: 0 failed idempotent requests for reset and down (edge-network view); for a black hole,
failures only for requests started within the heartbeat timeout after the fault began.
Bounded: --trials (max 20), --rate (max 500), 5 s per request; traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Run, print_table, run_async, summarize
from bench.reconnect import FAULT_KINDS, Trials
from harness.faultproxy import FaultProxyClient
from harness.faults.base import make_fault
from harness.stack.local import LocalStack
from reference.wire import HeartbeatConfig

WARMUP_S = 3.0
AFTER_S = 8.0
REQUEST_TIMEOUT = 5.0
BODY = 1024


@dataclass
class Outcome:
    """One visitor request and what each view made of it."""

    at: float  # start, seconds after the fault began (negative: before)
    pop: str
    method: str
    first: str  # "ok", or why the first PoP failed: "530/1033", "502/1035", "timeout", ...
    second: str | None  # the other PoP's answer when the edge-network view re-sent it
    latency_s: float

    @property
    def idempotent(self) -> bool:
        return self.method == "GET"

    @property
    def per_pop_failed(self) -> bool:
        return self.first != "ok"

    @property
    def network_failed(self) -> bool:
        return self.first != "ok" and self.second != "ok"


def resend(first: str, method: str) -> bool:
    """May the edge network send this request to another PoP after ``first`` happened?"""
    if first == "530/1033":
        return True  # the PoP had no connection: nothing was forwarded
    return method == "GET" and first != "ok"


class Visitors:
    """Open-loop visitors at a fixed rate over every PoP of one stack."""

    def __init__(self, stack: LocalStack, rate: float, seed: int) -> None:
        self.stack = stack
        self.pops = list(stack.topology.pops)
        self.hostname = stack.topology.tunnels[0].hostname
        self.interval = 1.0 / rate
        self.random = random.Random(seed)

    async def attempt(
        self, session: aiohttp.ClientSession, pop: str, method: str, body: bytes
    ) -> str:
        request_id = uuid.uuid4().hex
        try:
            async with session.request(
                method,
                f"{self.stack.visitor_url(pop)}/probe/{request_id}",
                data=body if method == "POST" else None,
                headers={"Host": self.hostname, "X-Request-Id": request_id},
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            ) as response:
                payload = await response.json(content_type=None)
                status = response.status
        except TimeoutError:
            return "timeout"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return type(exc).__name__
        if status != 200:
            code = payload.get("error_code") if isinstance(payload, dict) else None
            return f"{status}/{code}"
        digest = hashlib.sha256(body if method == "POST" else b"").hexdigest()
        if payload.get("request_id") != request_id or payload.get("body_sha256") != digest:
            return "wrong answer"
        return "ok"

    async def one(
        self, session: aiohttp.ClientSession, pop: str, method: str, fault_at: float
    ) -> Outcome:
        body = self.random.randbytes(BODY) if method == "POST" else b""
        started = time.monotonic()
        first = await self.attempt(session, pop, method, body)
        second = None
        if first != "ok" and resend(first, method):
            other = next(p for p in self.pops if p != pop)
            second = await self.attempt(session, other, method, body)
        return Outcome(
            round(started - fault_at, 4),
            pop,
            method,
            first,
            second,
            round(time.monotonic() - started, 4),
        )

    async def run(
        self, session: aiohttp.ClientSession, seconds: float, fault_at: float
    ) -> list[Outcome]:
        tasks: list[asyncio.Task[Outcome]] = []
        started = time.monotonic()
        count = int(seconds / self.interval)
        for i in range(count):
            pop = self.pops[i % len(self.pops)]
            method = "GET" if (i // len(self.pops)) % 2 == 0 else "POST"
            tasks.append(asyncio.create_task(self.one(session, pop, method, fault_at)))
            delay = started + (i + 1) * self.interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        return list(await asyncio.gather(*tasks))


async def trial(
    runner: Trials,
    visitors: Visitors,
    session: aiohttp.ClientSession,
    kind: str,
    fault_s: float,
) -> list[Outcome]:
    if not await runner.wait_steady(session):
        raise RuntimeError("the stack did not return to 2+2 connections; see its logs")
    fault = make_fault(FAULT_KINDS[kind], f"conn-{runner.pops[0]}")
    fault_at = time.monotonic() + WARMUP_S
    traffic = asyncio.create_task(visitors.run(session, WARMUP_S + fault_s + AFTER_S, fault_at))
    await asyncio.sleep(max(0.0, fault_at - time.monotonic()))
    await fault.inject(runner.ctx)
    await asyncio.sleep(max(0.0, fault_at + fault_s - time.monotonic()))
    await fault.heal(runner.ctx)
    return await traffic


def analyse(outcomes: list[Outcome], fault_s: float) -> dict[str, Any]:
    def view(failed: list[Outcome]) -> dict[str, Any]:
        starts = [o.at for o in failed]
        reasons: dict[str, int] = {}
        for o in failed:
            key = o.first if o.second is None else f"{o.first} then {o.second}"
            reasons[key] = reasons.get(key, 0) + 1
        return {
            "failed": len(failed),
            "failed_idempotent": sum(1 for o in failed if o.idempotent),
            "failed_not_idempotent": sum(1 for o in failed if not o.idempotent),
            "first_failure_s": min(starts) if starts else None,
            "last_failure_s": max(starts) if starts else None,
            "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        }

    in_window = [o for o in outcomes if -1.0 <= o.at <= fault_s + AFTER_S]
    return {
        "requests": len(outcomes),
        "requests_to_faulted_pop": sum(1 for o in outcomes if o.pop == "ams"),
        "per_pop": view([o for o in outcomes if o.per_pop_failed]),
        "edge_network": view([o for o in outcomes if o.network_failed]),
        "latency_s": summarize([o.latency_s for o in in_window if not o.network_failed]),
    }


async def measure(args: argparse.Namespace) -> dict[str, list[Outcome]]:
    results: dict[str, list[Outcome]] = {k: [] for k in args.kinds}
    with tempfile.TemporaryDirectory(prefix="outlast-bench-failover-") as tmp:
        async with (
            LocalStack(Path(tmp) / "stack", seed=args.seed) as stack,
            FaultProxyClient(stack.faultproxy_url) as client,
            aiohttp.ClientSession(
                trust_env=False, connector=aiohttp.TCPConnector(limit=0)
            ) as session,
        ):
            runner = Trials(stack, client, "one")
            visitors = Visitors(stack, args.rate, args.seed)
            for i in range(args.trials):
                for kind in args.kinds:
                    outcomes = await trial(runner, visitors, session, kind, args.fault_seconds)
                    results[kind] += outcomes
                    s = analyse(outcomes, args.fault_seconds)
                    print(
                        f"trial {i + 1}/{args.trials} {kind:<9} {s['requests']} requests: "
                        f"failed per PoP {s['per_pop']['failed']} "
                        f"(idempotent {s['per_pop']['failed_idempotent']}), edge network "
                        f"{s['edge_network']['failed']} "
                        f"(idempotent {s['edge_network']['failed_idempotent']})",
                        flush=True,
                    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second, all PoPs")
    parser.add_argument("--trials", type=int, default=3, help="trials per fault kind")
    parser.add_argument("--fault-seconds", type=float, default=8.0)
    parser.add_argument("--kinds", default="reset,blackhole,down")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if unknown := [k for k in args.kinds if k not in FAULT_KINDS]:
        parser.error(f"unknown fault kinds {unknown}; choose from {sorted(FAULT_KINDS)}")
    if not 1 <= args.trials <= 20 or not 1 <= args.rate <= 500:
        parser.error("--trials must be 1..20 and --rate 1..500")
    if not 1 <= args.fault_seconds <= 60:
        parser.error("--fault-seconds must be 1..60")
    run = Run("failover")
    raw = run_async(measure(args))
    heartbeat = HeartbeatConfig().timeout
    result = {kind: analyse(outcomes, args.fault_seconds) for kind, outcomes in raw.items()}
    print()
    print(
        f"failed visitor requests, {args.trials} trial(s) per fault at {args.rate:g} req/s over "
        f"both PoPs; link to ams broken {args.fault_seconds:g} s (GET = idempotent, POST = not)"
    )
    rows = []
    for kind, r in result.items():
        for label, key in (("per PoP", "per_pop"), ("edge network", "edge_network")):
            v = r[key]
            rows.append(
                [
                    f"{kind} {label}",
                    r["requests"],
                    v["failed_idempotent"],
                    v["failed_not_idempotent"],
                    v["first_failure_s"],
                    v["last_failure_s"],
                ]
            )
    print_table(
        ["fault / view", "requests", "failed GET", "failed POST", "first at s", "last at s"],
        rows,
        digits=2,
    )
    print(
        "first/last at: start of the failed request, seconds after the fault began. Target: 0 "
        f"failed GET for reset and down (edge network); black hole failures within "
        f"{heartbeat:g} s (heartbeat timeout)"
    )
    print(run.footer())
    path = run.write(
        {
            "settings": {
                "rate": args.rate,
                "trials": args.trials,
                "fault_seconds": args.fault_seconds,
                "warmup_s": WARMUP_S,
                "after_s": AFTER_S,
                "heartbeat_timeout_s": heartbeat,
                "request_timeout_s": REQUEST_TIMEOUT,
            },
            "results": result,
            "failures": {
                kind: [asdict(o) for o in outcomes if o.per_pop_failed]
                for kind, outcomes in raw.items()
            },
        },
        args.json,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
