"""``ha_restored``: at the end, every tunnel has its HA connections, spread over PoPs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from harness.checks.params import FaultScopedParams, scoped_tunnels, selected_faults
from harness.checks.registry import register
from harness.checks.result import CheckResult
from harness.checks.samples import (
    connector_samples,
    connector_sources,
    edge_connections,
    ha_connections,
    locations,
)
from harness.journal.history import History


class HaRestoredParams(FaultScopedParams):
    connections: int | None = Field(default=None, ge=1, description="default: run metadata")
    min_pops: int | None = Field(default=None, ge=1, description="default: min(2, PoPs)")
    source: Literal["connector", "edge"] = Field(
        default="connector", description="judge from connector metrics or edge metrics"
    )


@register("ha_restored", HaRestoredParams)
def ha_restored(history: History, params: HaRestoredParams) -> CheckResult:
    """The last sample after the last heal shows full HA connections spread over PoPs.

    From the connector samples of every replica (``ha_connections``, ``locations``) or, with
    ``source: edge``, from the last sample of every edge (registered connections per tunnel,
    all replicas together). Undecided when a selected fault was never undone or no sample
    follows the last heal.
    """
    name = "ha_restored"
    run = history.run
    pops = list(run.pops) if run and run.pops else []
    wanted = params.connections or (run.ha_connections if run else 4)
    min_pops = params.min_pops or max(1, min(2, len(pops) or 2))
    faults = selected_faults(history, params)
    unhealed = [w.label() for w in faults if w.stop_t is None]
    if unhealed:
        return CheckResult(name, None, f"fault(s) never undone: {', '.join(unhealed)}")
    last_heal = max((w.stop_t or 0 for w in faults), default=0)
    tunnels = scoped_tunnels(history, params)
    if not tunnels:
        return CheckResult(name, None, "no tunnels in scope")
    rows: list[dict[str, Any]] = []
    subjects = [
        (tunnel, source)
        for tunnel in tunnels
        for source in (
            connector_sources(history, tunnel) if params.source == "connector" else [None]
        )
    ]
    replicated = len(subjects) > len(tunnels)
    for tunnel, source in subjects:
        row: dict[str, Any] = {"tunnel": tunnel}
        if source is not None and replicated:
            row["tunnel"] = f"{tunnel} ({source})"
        if source is not None:
            samples = [s for s in connector_samples(history, tunnel, source) if s.t >= last_heal]
            if not samples:
                row["state"] = "undecided"
                rows.append(row)
                continue
            last = samples[-1]
            row["connections"] = ha_connections(last)
            row["pops"] = sorted(set(locations(last)))
            row["at_s"] = round(history.seconds(last.t), 3)
        else:
            per_pop: dict[str, int] = {}
            for pop in pops:
                samples = [
                    s
                    for s in history.samples_of("edge")
                    if (s.value.get("pop") == pop or s.source == f"edge-{pop}") and s.t >= last_heal
                ]
                if samples:
                    per_pop[pop] = edge_connections(samples[-1], tunnel, history.tunnel_id(tunnel))
            if not pops or len(per_pop) < len(pops):
                row["state"] = "undecided"
                rows.append(row)
                continue
            row["connections"] = sum(per_pop.values())
            row["pops"] = sorted(p for p, n in per_pop.items() if n > 0)
        ok = row["connections"] >= wanted and len(row["pops"]) >= min_pops
        row["state"] = "ok" if ok else "short"
        rows.append(row)
    data: dict[str, Any] = {"tunnels": rows, "connections": wanted, "min_pops": min_pops}
    short = [r for r in rows if r["state"] == "short"]
    if short:
        return CheckResult(
            name,
            False,
            "; ".join(
                f"{r['tunnel']}: {r['connections']}/{wanted} connections over "
                f"{len(r['pops'])} PoP(s) ({', '.join(r['pops']) or 'none'}; need {min_pops})"
                for r in short
            ),
            data,
        )
    undecided = [r["tunnel"] for r in rows if r["state"] == "undecided"]
    if undecided:
        return CheckResult(
            name,
            None,
            f"no {params.source} sample after the last heal for: " + ", ".join(undecided),
            data,
        )
    return CheckResult(
        name,
        True,
        "; ".join(
            f"{r['tunnel']}: {r['connections']} connections over {', '.join(r['pops'])}"
            for r in rows
        ),
        data,
    )
