"""``report.html``: one self-contained page (inline CSS and SVG, no scripts, no external links)."""

from __future__ import annotations

from html import escape
from typing import Any

from harness.journal.history import History
from harness.report.plot import timeline_svg
from harness.report.tables import STATUS_WORD, budget_text, fmt, html_table

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
        f'<p class="meta">Availability: {escape(sla["availability_method"])}. Latency: '
        f"{escape(latency['method'])} over {latency['count']} successful requests.</p>"
    )
    if len(sla["tunnels"]) > 1:
        parts.append("<h2>Per tunnel</h2>")
        parts.append(
            html_table(
                [
                    "tunnel",
                    "kind",
                    "availability %",
                    "requests",
                    "failed",
                    "indeterminate",
                    "downtime s",
                    "error budget used",
                ],
                [
                    [
                        name,
                        fmt(t["kind"]),
                        fmt(t["availability"], 4),
                        fmt(t["requests"]),
                        fmt(t["failed"]),
                        fmt(t["indeterminate"]),
                        fmt(t["downtime_s"]),
                        budget_text(t["error_budget_consumed"]),
                    ]
                    for name, t in sla["tunnels"].items()
                ],
            )
        )
    parts.append("<h2>Faults</h2>")
    ttr = {r["fault_id"]: r["ttr_s"] for r in sla["recoveries"]}
    parts.append(
        html_table(
            ["fault", "target", "start s", "stop s", "scenario at s", "time to recover s", "error"],
            [
                [
                    f["name"] or f["fault"],
                    fmt(f["target"]),
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
            ["tunnel", "from s", "to s", "duration s", "failed requests"],
            [
                [
                    w["tunnel"],
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
        "journal was opened); the plot's axis is scenario time.</p>"
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)
