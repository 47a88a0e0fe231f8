"""``tunnel_revoked``: after a tunnel is deleted, its connections go and its connector stops."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from harness.checks.params import FaultScopedParams
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.checks.samples import edge_connections
from harness.journal.history import NS_PER_S, History
from harness.journal.records import SampleRecord
from harness.scenario.durations import Duration, format_duration


class TunnelRevokedParams(FaultScopedParams):
    """``bound`` is real seconds from the revocation; ``faults`` defaults to revocations."""

    bound: Duration = Field(gt=0, description="revocation -> no connection, connector stopped")
    connector_stopped: bool = Field(
        default=True, description="also require the connector to stop (metrics stop answering)"
    )


def settled_from(samples: Sequence[SampleRecord], good: Any) -> int | None:
    """Time of the first sample from which every later sample satisfies ``good`` (None if the
    last one does not)."""
    settled: int | None = None
    for sample in samples:
        if good(sample):
            settled = sample.t if settled is None else settled
        else:
            settled = None
    return settled


@register("tunnel_revoked", TunnelRevokedParams)
def tunnel_revoked(history: History, params: TunnelRevokedParams) -> CheckResult:
    """Within ``bound`` of the revocation every edge reports no connection of the tunnel, and
    its connector has stopped (its metrics endpoint no longer answers), until the end.

    The tunnel is ``tunnel`` or the revocation's target. A connector that keeps redialling a
    deleted tunnel keeps answering its metrics, and fails this check. Undecided without a
    revocation, or without samples after it.
    """
    name = "tunnel_revoked"
    kinds = params.faults or ("credential_revocation",)
    revocations = [
        w
        for w in history.faults
        if w.fault in kinds and (params.targets is None or w.target in params.targets)
    ]
    if not revocations:
        return CheckResult(name, None, f"no {'/'.join(kinds)} fault in the journal")
    window = revocations[0]
    tunnel = params.tunnel or window.target
    if tunnel is None or tunnel not in history.tunnel_names():
        return CheckResult(name, None, f"revoked tunnel {tunnel!r} is not in the run metadata")
    start = window.start_t
    bound = round(params.bound * NS_PER_S)
    run = history.run
    pops = list(run.pops) if run and run.pops else []
    tunnel_id = history.tunnel_id(tunnel)
    problems: list[str] = []
    undecided: list[str] = []
    data: dict[str, Any] = {"tunnel": tunnel, "bound_s": params.bound, "edges": {}}
    for pop in pops:
        samples = [
            s
            for s in history.samples_of("edge")
            if (s.value.get("pop") == pop or s.source == f"edge-{pop}") and s.t >= start
        ]
        if not samples:
            undecided.append(f"no sample of edge {pop} after the revocation")
            continue
        gone = settled_from(samples, lambda s: edge_connections(s, tunnel, tunnel_id) == 0)
        last = edge_connections(samples[-1], tunnel, tunnel_id)
        gone_s = None if gone is None else round((gone - start) / NS_PER_S, 3)
        data["edges"][pop] = {"gone_s": gone_s, "connections_at_end": last}
        if gone is None:
            problems.append(f"edge {pop} still has {last} connection(s) of {tunnel} at the end")
        elif gone - start > bound:
            problems.append(f"edge {pop} dropped {tunnel}'s connections only after {gone_s}s")
    if params.connector_stopped:
        scrapes = [
            s
            for s in history.samples_of("connector", include_errors=True)
            if (s.value.get("tunnel") == tunnel or s.source == f"connector-{tunnel}")
            and s.t >= start
        ]
        if not scrapes:
            undecided.append("no scrape of the connector after the revocation")
        else:
            stopped = settled_from(scrapes, lambda s: s.error is not None)
            stopped_s = None if stopped is None else round((stopped - start) / NS_PER_S, 3)
            data["connector_stopped_s"] = stopped_s
            if stopped is None:
                problems.append(
                    f"connector-{tunnel} still answers its metrics at the end: it did not stop"
                )
            elif stopped - start > bound:
                problems.append(f"connector-{tunnel} stopped only after {stopped_s}s")
    within = f"within {format_duration(params.bound)}"
    if problems:
        return CheckResult(
            name, False, f"{tunnel} not revoked {within}: " + "; ".join(problems), data
        )
    if undecided:
        return CheckResult(name, None, "; ".join(undecided), data)
    gone_all = max((e["gone_s"] for e in data["edges"].values()), default=None)
    stopped_text = (
        f", connector stopped after {data['connector_stopped_s']}s"
        if params.connector_stopped
        else ""
    )
    return CheckResult(
        name,
        True,
        f"{tunnel} revoked {within}: no connection at any edge after {gone_all}s{stopped_text}",
        data,
    )
