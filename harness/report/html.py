"""``report.html``: one self-contained page (inline CSS and SVG, no scripts, no external links)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from harness.journal.history import NS_PER_S, History
from harness.report.plot import timeline_svg
from harness.report.tables import (
    PER_POP_COLUMNS,
    PER_TUNNEL_COLUMNS,
    STATUS_WORD,
    budget_text,
    fmt,
    html_table,
    integrity_text,
    per_pop_rows,
    per_tunnel_rows,
    run_problem,
    view_text,
)
from harness.scenario.durations import format_duration

#: Fault kinds whose windows get the per-tunnel "during the outage" table (the contrast a
#: postmortem replay is about: which tunnel kept serving while the control plane was away).
OUTAGE_KINDS = frozenset({"controlplane_outage", "broker_outage"})

CSS = """
body { font-family: sans-serif; margin: 24px auto; max-width: 1000px; color: #212529; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
.verdict { padding: 2px 10px; border-radius: 4px; color: #fff; }
.pass { background: #2b8a3e; } .fail { background: #c92a2a; } .unknown { background: #868e96; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #dee2e6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f1f3f5; }
td.PASS { color: #2b8a3e; font-weight: bold; } td.FAIL { color: #c92a2a; font-weight: bold; }
td.UNKNOWN { color: #868e96; font-weight: bold; }
.meta { color: #495057; font-size: 13px; }
svg.timeline { border: 1px solid #dee2e6; max-width: 100%; height: auto; }
"""


def _checks_table(checks: list[dict[str, Any]]) -> str:
    if not checks:
        return "<p>No checks (no scenario file in the run directory?).</p>"
    rows = []
    for check in checks:
        word = STATUS_WORD[check["passed"]]
        name = check["name"] + (" (expected to fail)" if check["expect"] == "fail" else "")
        rows.append(
            f'<tr><td class="{word}">{word}</td><td>{escape(name)}</td>'
            f"<td>{escape(check['detail'])}</td></tr>"
        )
    return (
        "<table><thead><tr><th>result</th><th>check</th><th>detail</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


class _IncidentClock:
    """Journal seconds -> the incident's wall-clock time, for runs anchored with ``clock.start``
    (postmortem replays): the tables then speak the incident's time, like the plot's axis."""

    def __init__(self, start: datetime, history: History) -> None:
        self.start = start
        self.history = history
        self.scale = history.time_scale or 1.0

    def at(self, journal_s: float) -> str:
        scenario_s = (journal_s * NS_PER_S - self.history.start_t) / NS_PER_S / self.scale
        return (self.start + timedelta(seconds=scenario_s)).astimezone(UTC).strftime("%H:%M:%S")

    def span(self, real_s: float) -> str:
        """A real duration as incident-clock time (``4h1m``)."""
        return format_duration(round(real_s / self.scale))


def _incident_clock(history: History) -> _IncidentClock | None:
    clock = history.run.clock_start if history.run else None
    if not clock:
        return None
    try:
        return _IncidentClock(datetime.fromisoformat(clock.replace("Z", "+00:00")), history)
    except ValueError:
        return None


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _outage_contrast(
    summary: dict[str, Any], history: History, clock: _IncidentClock | None
) -> str:
    """Per tunnel, during each control-plane/broker outage: availability and downtime."""
    tunnels = history.tunnel_names()
    outages = [f for f in history.faults if f.fault in OUTAGE_KINDS]
    if len(tunnels) < 2 or not outages:
        return ""
    ops = history.visitor_ops()
    rows = []
    for fault in outages:
        start, end = fault.start_t, fault.end_or(history.end_t)
        start_s, end_s = history.seconds(start), history.seconds(end)
        when = (
            f"{clock.at(start_s)}-{clock.at(end_s)}"
            if clock
            else f"{fmt(round(start_s, 3))}-{fmt(round(end_s, 3))} s"
        )
        for tunnel in tunnels:
            inside = [
                op
                for op in ops
                if history.tunnel_of(op) == tunnel
                and op.invoke_t < end
                and (op.complete_t or history.end_t) > start
            ]
            ok = sum(op.phase == "ok" for op in inside)
            decided = ok + sum(op.phase == "fail" for op in inside)
            down = sum(
                _overlap(w["start_s"], w["end_s"], start_s, end_s)
                for w in summary["sla"]["downtime_windows"]
                if w["tunnel"] == tunnel
            )
            share = down / (end_s - start_s) if end_s > start_s else 0.0
            rows.append(
                [
                    fault.name or fault.label(),
                    when,
                    tunnel,
                    history.tunnel_kind(tunnel),
                    fmt(round(100 * ok / decided, 2)) if decided else "-",
                    f"{ok} / {decided}",
                    fmt(round(down, 3)),
                    *([clock.span(down)] if clock else []),
                    f"{100 * share:.1f}%",
                ]
            )
    header = [
        "outage",
        "window (UTC)" if clock else "window",
        "tunnel",
        "kind",
        "availability %",
        "ok / decided",
        "down s (real)",
        *(["down (incident clock)"] if clock else []),
        "share of outage down",
    ]
    note = (
        '<p class="meta">Requests overlapping the outage window. Downtime is the tunnel\'s '
        "downtime windows (see below) inside the outage; on the incident clock it is real time "
        "divided by the time scale, so a reconnect of a second shows as minutes.</p>"
        if clock
        else ""
    )
    return "<h2>Tunnels during the outage</h2>" + html_table(header, rows) + note


def render_html(summary: dict[str, Any], history: History) -> str:
    """The HTML report of one run (summary tables plus the timeline plot from the journal)."""
    sla = summary["sla"]
    run = summary["run"]
    verdict = summary["verdict"]
    latency = sla["latency_ms"]
    title = f"{summary['scenario']} - {verdict}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(str(summary['scenario']))} "
        f'<span class="verdict {verdict}">{verdict.upper()}</span></h1>',
    ]
    problem = run_problem(summary)
    if problem is not None:
        parts.append(f'<p class="run-error"><strong>Run {escape(problem)}</strong></p>')
    if summary.get("description"):
        parts.append(f"<p>{escape(summary['description'])}</p>")
    parts.append(
        f'<p class="meta">seed {escape(str(summary["seed"]))} &middot; time scale '
        f"{escape(str(summary['time_scale']))} &middot; backend {escape(str(summary['backend']))}"
        f" &middot; started {escape(str(summary['started_at']))} &middot; run "
        f"{escape(run['status'])}{': ' + escape(run['error']) if run.get('error') else ''}"
        f" &middot; exit code {summary['exit_code']}</p>"
    )
    parts.append("<h2>Timeline</h2>")
    parts.append(timeline_svg(history, title=str(summary["scenario"])))
    clock = _incident_clock(history)
    contrast = _outage_contrast(summary, history, clock)
    if contrast:
        parts.append(contrast)
    parts.append("<h2>Checks</h2>")
    parts.append(_checks_table(summary["checks"]))
    parts.append("<h2>SLA</h2>")
    parts.append(
        html_table(
            [
                "availability %",
                "SLO %",
                "error budget used",
                "requests",
                "failed",
                "indeterminate",
                "downtime s",
                "worst TTR s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
            ],
            [
                [
                    fmt(sla["availability"], 4),
                    fmt(sla["slo"]),
                    budget_text(sla["error_budget_consumed"]),
                    fmt(sla["requests"]),
                    fmt(sla["failed"]),
                    fmt(sla["indeterminate"]),
                    fmt(sla["downtime_s"]),
                    fmt(sla["time_to_recover_s"]),
                    fmt(latency["p50"]),
                    fmt(latency["p95"]),
                    fmt(latency["p99"]),
                    fmt(latency["max"]),
                ]
            ],
        )
    )
    parts.append(
        f'<p class="meta">Availability: {escape(sla["availability_method"])}; '
        f"{escape(view_text(sla))}. Latency: "
        f"{escape(latency['method'])} over {latency['count']} successful requests.</p>"
    )
    if integrity := integrity_text(summary):
        parts.append(f'<p class="meta">{escape(integrity)}</p>')
    if len(sla["tunnels"]) > 1:
        parts.append("<h2>Per tunnel</h2>")
        parts.append(html_table(PER_TUNNEL_COLUMNS, per_tunnel_rows(sla)))
    if sla.get("pops"):
        parts.append("<h2>Per PoP (diagnostic)</h2>")
        parts.append(
            '<p class="meta">The same requests by the PoP that answered them; a PoP with no '
            "connection of the tunnel forwards to a peer that has one.</p>"
        )
        parts.append(html_table(PER_POP_COLUMNS, per_pop_rows(sla)))
    parts.append("<h2>Faults</h2>")
    ttr = {r["fault_id"]: r["ttr_s"] for r in sla["recoveries"]}
    parts.append(
        html_table(
            [
                "fault",
                "target",
                *(["clock (UTC)"] if clock else []),
                "start s",
                "stop s",
                "scenario at s",
                "time to recover s",
                "error",
            ],
            [
                [
                    f["name"] or f["fault"],
                    fmt(f["target"]),
                    *(
                        [
                            clock.at(f["start_s"])
                            + ("-" + clock.at(f["stop_s"]) if f["stop_s"] is not None else "")
                        ]
                        if clock
                        else []
                    ),
                    fmt(f["start_s"]),
                    fmt(f["stop_s"]),
                    fmt(f["scenario_at_s"]),
                    fmt(ttr.get(f["fault_id"])),
                    fmt(f["error"]),
                ]
                for f in summary["faults"]
            ],
        )
        if summary["faults"]
        else "<p>No faults.</p>"
    )
    parts.append("<h2>Downtime windows</h2>")
    parts.append(
        html_table(
            [
                "tunnel",
                *(["clock (UTC)", "incident time"] if clock else []),
                "from s",
                "to s",
                "duration s",
                "failed requests",
            ],
            [
                [
                    w["tunnel"],
                    *(
                        [
                            f"{clock.at(w['start_s'])}-{clock.at(w['end_s'])}",
                            clock.span(w["duration_s"]),
                        ]
                        if clock
                        else []
                    ),
                    fmt(w["start_s"]),
                    fmt(w["end_s"]),
                    fmt(w["duration_s"]),
                    fmt(w["failed"]),
                ]
                for w in sla["downtime_windows"]
            ],
        )
        if sla["downtime_windows"]
        else "<p>None: no visitor request failed.</p>"
    )
    parts.append(
        '<p class="meta">Times in tables are seconds of the journal clock (real time since the '
        "journal was opened)"
        + (
            "; the clock columns and the plot's axis are the incident's wall-clock time (UTC)."
            if clock
            else "; the plot's axis is scenario time."
        )
        + "</p>"
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)
