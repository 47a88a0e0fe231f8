"""``dns_unchanged``: every DNS answer for a hostname equals the first one seen."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from harness.checks.params import CheckParams, scoped_operations
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.journal.history import History, Operation

Answer = tuple[str, tuple[str, ...]]


class DnsUnchangedParams(CheckParams):
    per_pop: bool = Field(default=False, description="compare each PoP only with itself")


def dns_answer(op: Operation) -> Answer:
    """``(rcode, sorted answers)`` of a completed ``dns_query``, names lowercased, no final dot."""
    rcode = str(op.value.get("rcode", "NOERROR")).upper()
    raw = op.value.get("answer")
    items: list[Any] = [] if raw is None else [raw] if isinstance(raw, str) else list(raw)
    return rcode, tuple(sorted(str(a).lower().rstrip(".") for a in items))


def _show(answer: Answer) -> str:
    rcode, items = answer
    return f"{rcode} {', '.join(items) or '(empty)'}"


@register("dns_unchanged", DnsUnchangedParams)
def dns_unchanged(history: History, params: DnsUnchangedParams) -> CheckResult:
    """DNS answers for each hostname never change during the run (named tunnels' CNAMEs).

    Only answered queries (``ok``) count; ``fail`` (no answer, e.g. the edge is down) and
    ``info`` queries are ignored. An NXDOMAIN answer is a change.
    """
    name = "dns_unchanged"
    baseline: dict[tuple[str, str], tuple[Answer, float]] = {}
    changes: list[dict[str, Any]] = []
    answered = 0
    for op in scoped_operations(history, params, ("dns_query",)):
        if op.phase != "ok" or op.hostname is None:
            continue
        answered += 1
        key = (op.hostname, (op.pop or "") if params.per_pop else "")
        answer = dns_answer(op)
        seen = history.seconds(op.invoke_t)
        if key not in baseline:
            baseline[key] = (answer, seen)
        elif answer != baseline[key][0]:
            changes.append(
                {
                    "t_s": round(seen, 3),
                    "hostname": op.hostname,
                    "pop": op.pop,
                    "expected": _show(baseline[key][0]),
                    "got": _show(answer),
                }
            )
    hosts = sorted({host for host, _ in baseline})
    data: dict[str, Any] = {
        "answered": answered,
        "hostnames": hosts,
        "changes": changes[:20],
        "change_count": len(changes),
    }
    if answered == 0:
        return CheckResult(name, None, "no answered DNS queries in scope", data)
    if changes:
        first = changes[0]
        return CheckResult(
            name,
            False,
            f"{len(changes)} changed answer(s); first at {first['t_s']}s: {first['hostname']} "
            f"via {first['pop']} answered {first['got']}, was {first['expected']}",
            data,
        )
    return CheckResult(
        name, True, f"{answered} answers for {len(hosts)} hostname(s), all unchanged", data
    )
