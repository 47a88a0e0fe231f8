"""Failover: visitor requests failed while one PoP's tunnel link is reset, black-holed or down.

    python bench/failover.py [--rate 40] [--trials 3] [--fault-seconds 8] [--kinds ...]

One embedded stack (2 PoPs, one named tunnel, 4 HA connections). Visitors send requests at a
fixed rate (open loop), round robin over three entries — the edge network's anycast address
(what visitors use), and each PoP's own address — alternating GET (idempotent) and POST with a
1 KiB body (not idempotent), each on a new connection. Each trial: 3 s of traffic, the
connector's link to PoP ``ams`` broken for ``--fault-seconds``, then 8 s more. Every answer is
checked (the origin echoes the request id and the body's SHA-256).

The views, measured side by side on the same run:

* **anycast**: the visitor's view. Each connection lands on a PoP by region; a PoP without a
  connection of the tunnel forwards to one that has it.
* **ams address** / **fra address**: requests sent to one PoP's own address; ams serves them
  through fra (forwarding) while its link is broken.

Target: 0 failed requests for reset and down (anycast); for a black hole, failures only for
requests started within the heartbeat timeout after the fault began (they were on a silent
connection). Bounded: --trials (max 20), --rate (max 500), 5 s per request; 127.0.0.1 only.
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
    entry: str  # "anycast", or the PoP whose own address it was sent to
    method: str
    result: str  # "ok", or why it failed: "530/1033", "502/1035", "timeout", ...
    latency_s: float
    served_via: str | None = None  # "ams->fra": the PoP reached -> the PoP whose link served

    @property
    def idempotent(self) -> bool:
        return self.method == "GET"

    @property
    def failed(self) -> bool:
        return self.result != "ok"


class Visitors:
    """Open-loop visitors at a fixed rate over every PoP of one stack."""

    def __init__(self, stack: LocalStack, rate: float, seed: int) -> None:
        self.stack = stack
        self.pops = list(stack.topology.pops)
        self.entries = {"anycast": stack.anycast_url} | {p: stack.visitor_url(p) for p in self.pops}
        self.hostname = stack.topology.tunnels[0].hostname
        self.interval = 1.0 / rate
        self.random = random.Random(seed)

    async def attempt(
        self, session: aiohttp.ClientSession, entry: str, method: str, body: bytes
    ) -> tuple[str, str | None]:
        request_id = uuid.uuid4().hex
        try:
            async with session.request(
                method,
                f"{self.entries[entry]}/probe/{request_id}",
                data=body if method == "POST" else None,
                headers={"Host": self.hostname, "X-Request-Id": request_id},
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            ) as response:
                payload = await response.json(content_type=None)
                status = response.status
                via = f"{response.headers.get('X-Outlast-Pop')}->" + str(
                    response.headers.get("X-Outlast-Tunnel-Pop")
                )
        except TimeoutError:
            return "timeout", None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return type(exc).__name__, None
        if status != 200:
            code = payload.get("error_code") if isinstance(payload, dict) else None
            return f"{status}/{code}", via
        digest = hashlib.sha256(body if method == "POST" else b"").hexdigest()
        if not isinstance(payload, dict) or (
            payload.get("request_id") != request_id or payload.get("body_sha256") != digest
        ):
            return "wrong answer", via
        return "ok", via

    async def one(
        self, session: aiohttp.ClientSession, entry: str, method: str, fault_at: float
    ) -> Outcome:
        body = self.random.randbytes(BODY) if method == "POST" else b""
        started = time.monotonic()
        result, via = await self.attempt(session, entry, method, body)
        return Outcome(
            round(started - fault_at, 4),
            entry,
            method,
            result,
            round(time.monotonic() - started, 4),
            via,
        )

    async def run(
        self, session: aiohttp.ClientSession, seconds: float, fault_at: float
    ) -> list[Outcome]:
        tasks: list[asyncio.Task[Outcome]] = []
        started = time.monotonic()
        count = int(seconds / self.interval)
        names = list(self.entries)
        for i in range(count):
            entry = names[i % len(names)]
            method = "GET" if (i // len(names)) % 2 == 0 else "POST"
            tasks.append(asyncio.create_task(self.one(session, entry, method, fault_at)))
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
    def view(sent: list[Outcome]) -> dict[str, Any]:
        failed = [o for o in sent if o.failed]
        starts = [o.at for o in failed]
        reasons: dict[str, int] = {}
        for o in failed:
            reasons[o.result] = reasons.get(o.result, 0) + 1
        return {
            "requests": len(sent),
            "forwarded": sum(
                1
                for o in sent
                if o.served_via and o.served_via.split("->")[0] != o.served_via.split("->")[1]
            ),
            "failed": len(failed),
            "failed_idempotent": sum(1 for o in failed if o.idempotent),
            "failed_not_idempotent": sum(1 for o in failed if not o.idempotent),
            "first_failure_s": min(starts) if starts else None,
            "last_failure_s": max(starts) if starts else None,
            "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        }

    in_window = [o for o in outcomes if -1.0 <= o.at <= fault_s + AFTER_S]
    entries = sorted({o.entry for o in outcomes}, key=lambda e: (e != "anycast", e))
    return {
        "requests": len(outcomes),
        "views": {e: view([o for o in outcomes if o.entry == e]) for e in entries},
        "latency_s": summarize(
            [o.latency_s for o in in_window if o.entry == "anycast" and not o.failed]
        ),
    }


async def measure(args: argparse.Namespace) -> dict[str, list[Outcome]]:
    results: dict[str, list[Outcome]] = {k: [] for k in args.kinds}
    with tempfile.TemporaryDirectory(prefix="outlast-bench-failover-") as tmp:
        async with (
            LocalStack(Path(tmp) / "stack", seed=args.seed) as stack,
            FaultProxyClient(stack.faultproxy_url) as client,
            aiohttp.ClientSession(
                trust_env=False, connector=aiohttp.TCPConnector(limit=0, force_close=True)
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
                        f"trial {i + 1}/{args.trials} {kind:<9} {s['requests']} requests: failed "
                        + ", ".join(f"{e} {v['failed']}" for e, v in s["views"].items()),
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
        f"the anycast entry and each PoP's own address; link to ams broken "
        f"{args.fault_seconds:g} s (GET = idempotent, POST = not)"
    )
    rows = []
    for kind, r in result.items():
        for entry, v in r["views"].items():
            rows.append(
                [
                    f"{kind} via {entry if entry == 'anycast' else entry + ' address'}",
                    v["requests"],
                    v["forwarded"],
                    v["failed_idempotent"],
                    v["failed_not_idempotent"],
                    v["first_failure_s"],
                    v["last_failure_s"],
                ]
            )
    print_table(
        [
            "fault / view",
            "requests",
            "forwarded",
            "failed GET",
            "failed POST",
            "first at s",
            "last at s",
        ],
        rows,
        digits=2,
    )
    print(
        "first/last at: start of the failed request, seconds after the fault began. Target: 0 "
        f"failed for reset and down (anycast); black hole failures within "
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
                kind: [asdict(o) for o in outcomes if o.failed] for kind, outcomes in raw.items()
            },
        },
        args.json,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
