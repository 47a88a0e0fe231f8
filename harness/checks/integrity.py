"""``no_corruption``: every response echoed its request id and body digest intact, every
static body of the user's service stayed the same, and no body failed the tunnel's digest.

What is checked depends on the traffic (the run's ``integrity`` metadata): the reference echo
origin echoes each request's id and body digest; the user's service echoes nothing, so only
``static: true`` GETs (a body that must not change) can be verified per request. Whatever the
origin, the edges check every response body against the connector's SHA-256 of it (the tunnel
digest, reference/wire/body_digest.py) and count the verdicts; the edges' metrics samples give
how many bodies were verified and how many mismatched (each of those was aborted, never shown
to the visitor as complete). With nothing verifiable the check is undecided and says why —
never a pass."""

from __future__ import annotations

from typing import Any

from harness.checks.params import CheckParams, scoped_operations
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.checks.samples import tunnel_digest_counts
from harness.journal.history import History

FLAGS = ("request_id_echo_ok", "digest_ok", "response_digest_ok")


@register("no_corruption", CheckParams)
def no_corruption(history: History, params: CheckParams) -> CheckResult:
    """No response had a wrong request-id echo, body digest or changed static body.

    Completed requests (``ok`` or ``fail``) carrying ``request_id_echo_ok``/``digest_ok``
    (echo) or ``response_digest_ok`` (static body) are verified; ``info`` requests (no
    response) are not.
    """
    name = "no_corruption"
    verified = 0
    applied: set[str] = set()
    bad: list[dict[str, Any]] = []
    for op in scoped_operations(history, params):
        if op.phase == "info":
            continue
        flags = {flag: op.value.get(flag) for flag in FLAGS if op.value.get(flag) is not None}
        if not flags:
            continue
        verified += 1
        applied.update(flags)
        broken = sorted(flag for flag, ok in flags.items() if ok is not True)
        if broken:
            bad.append(
                {
                    "t_s": round(history.seconds(op.invoke_t), 3),
                    "op_id": op.op_id,
                    "f": op.f,
                    "hostname": op.hostname,
                    "failed": broken,
                }
            )
    plan = (history.run.meta.get("integrity") if history.run else None) or {}
    missing = plan.get("not_available") or {}
    counted = tunnel_digest_counts(history)
    data: dict[str, Any] = {"verified": verified, "corrupted": len(bad), "examples": bad[:10]}
    if counted is not None:  # journals from before the digest are re-analysed as they were
        data.update(tunnel_digest=counted, basis=_basis(applied, counted))
    if plan.get("traffic") == "user":
        data.update(applied=sorted(applied), not_available=sorted(missing))
    tunnel = counted or dict.fromkeys(("verified", "absent", "mismatch"), 0)
    tunnel_text = (
        f"; {tunnel['verified']} response bodies verified by the tunnel digest "
        "(connector -> edge SHA-256)"
        if counted is not None
        else ""
    )
    if tunnel["mismatch"]:
        return CheckResult(
            name,
            False,
            f"{tunnel['mismatch']} response bodies did not match the tunnel digest at the edges "
            f"(the visitors' responses were aborted){tunnel_text}"
            + (f"; {len(bad)} of {verified} responses corrupted" if bad else ""),
            data,
        )
    if verified == 0 and tunnel["verified"] == 0:
        if plan.get("traffic") == "user":
            return CheckResult(
                name,
                None,
                "not applicable: the user's service echoes nothing to verify, no request "
                "is `static: true` (a body that must not change) and the edges verified no "
                "body by the tunnel digest; not available: " + "; ".join(missing.values()),
                data,
            )
        return CheckResult(
            name, None, "no responses carried echo/digest results or tunnel digests", data
        )
    if bad:
        first = bad[0]
        return CheckResult(
            name,
            False,
            f"{len(bad)} of {verified} responses corrupted; first at {first['t_s']}s: "
            f"{first['f']} {first['hostname']} failed {', '.join(first['failed'])}",
            data,
        )
    if verified == 0:
        detail = tunnel_text.removeprefix("; ")
    elif applied == {"response_digest_ok"}:
        detail = f"{verified} responses of static paths, bodies unchanged (SHA-256){tunnel_text}"
    else:
        detail = f"{verified} responses, ids and digests all intact{tunnel_text}"
    if missing:
        detail += "; not checked: " + "; ".join(missing.values())
    return CheckResult(name, True, detail, data)


def _basis(applied: set[str], tunnel: dict[str, int]) -> list[str]:
    """What the verdict rests on: ``echo``, ``static_digest``, ``tunnel_digest``."""
    basis = []
    if applied & {"request_id_echo_ok", "digest_ok"}:
        basis.append("echo")
    if "response_digest_ok" in applied:
        basis.append("static_digest")
    if tunnel["verified"] or tunnel["mismatch"]:
        basis.append("tunnel_digest")
    return basis
