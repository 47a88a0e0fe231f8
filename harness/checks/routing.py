"""``no_misroute``: every response came through the tunnel its hostname is routed to."""

from __future__ import annotations

from typing import Any

from harness.checks.params import CheckParams, scoped_operations
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.journal.history import History


@register("no_misroute", CheckParams)
def no_misroute(history: History, params: CheckParams) -> CheckResult:
    """No visitor response was served by another tunnel or origin than the hostname's.

    Looks at completed requests that carry ``served_tunnel`` (tunnel name or id the response
    names: the echo origin's, or for the user's service the edge's ``X-Outlast-Tunnel-Id``) or
    ``origin`` with ``expected_origin``; ``info`` requests have no response. With nothing to
    look at the check is undecided and says so.
    """
    name = "no_misroute"
    verified = 0
    sources: set[str] = set()
    bad: list[dict[str, Any]] = []
    for op in scoped_operations(history, params):
        if op.phase == "info":
            continue
        served = op.value.get("served_tunnel")
        origin = op.value.get("origin")
        expected_origin = op.value.get("expected_origin")
        if served is None and (origin is None or expected_origin is None):
            continue
        verified += 1
        sources.add("edge" if "request" in op.value else "origin echo")
        expected = (history.tunnel_for_hostname(op.hostname) if op.hostname else None) or op.tunnel
        if served is not None and expected is not None:
            accepted = {expected, history.tunnel_id(expected)} - {None}
            if served not in accepted:
                bad.append(
                    {
                        "t_s": round(history.seconds(op.invoke_t), 3),
                        "op_id": op.op_id,
                        "hostname": op.hostname,
                        "expected": expected,
                        "served": served,
                    }
                )
                continue
        if origin is not None and expected_origin is not None and origin != expected_origin:
            bad.append(
                {
                    "t_s": round(history.seconds(op.invoke_t), 3),
                    "op_id": op.op_id,
                    "hostname": op.hostname,
                    "expected": expected_origin,
                    "served": origin,
                }
            )
    data: dict[str, Any] = {"verified": verified, "misrouted": len(bad), "examples": bad[:10]}
    if "edge" in sources:
        data["sources"] = sorted(sources)
    if verified == 0:
        return CheckResult(
            name, None, "not applicable: no responses carried routing information", data
        )
    if bad:
        first = bad[0]
        return CheckResult(
            name,
            False,
            f"{len(bad)} of {verified} responses misrouted; first at {first['t_s']}s: "
            f"{first['hostname']} served by {first['served']}, expected {first['expected']}",
            data,
        )
    named_by = " (as the edge names it)" if sources == {"edge"} else ""
    return CheckResult(
        name, True, f"{verified} responses, all from the right tunnel{named_by}", data
    )
