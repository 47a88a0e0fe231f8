"""Text helpers shared by the Markdown, HTML and terminal reports, and the SLA table across runs."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from harness.report.sla import budget_consumed

STATUS_WORD = {True: "PASS", False: "FAIL", None: "UNKNOWN"}


def run_problem(summary: dict[str, Any]) -> str | None:
    """Why the run did not complete (``"error: stack did not come up: ..."``), or None: shown
    first by every renderer, before the checks it left undecided."""
    run = summary.get("run", {})
    if run.get("status") == "completed":
        return None
    return f"{run.get('status')}: {run.get('error') or 'no reason recorded'}"


def undecided_by_run(summary: dict[str, Any]) -> bool:
    """True when the run did not complete and decided none of its checks (e.g. the stack did
    not come up): the check lines then only repeat "no data" and are summarised instead."""
    checks = summary.get("checks", [])
    return run_problem(summary) is not None and all(c["passed"] is None for c in checks)


SLA_COLUMNS = (
    "scenario",
    "verdict",
    "availability %",
    "requests",
    "failed",
    "indeterminate",
    "error budget",
    "worst TTR s",
    "p99 ms",
)


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: ``-`` for missing, numbers without noise."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return (
            f"{value:.{digits}f}".rstrip("0").rstrip(".")
            if value != int(value)
            else str(int(value))
        )
    return str(value)


def budget_text(consumed: float | None) -> str:
    return "-" if consumed is None else f"{consumed * 100:.1f}%"


def sla_row(summary: dict[str, Any], slo: float | None = None) -> list[str]:
    """One row of the SLA table; ``slo`` overrides the scenario's for the error budget."""
    sla = summary.get("sla", {})
    consumed = (
        budget_consumed(sla.get("availability"), slo)
        if slo is not None
        else sla.get("error_budget_consumed")
    )
    return [
        str(summary.get("scenario")),
        str(summary.get("verdict")),
        fmt(sla.get("availability"), 4),
        fmt(sla.get("requests")),
        fmt(sla.get("failed")),
        fmt(sla.get("indeterminate")),
        budget_text(consumed),
        fmt(sla.get("time_to_recover_s")),
        fmt(sla.get("latency_ms", {}).get("p99")),
    ]


VIEW_TEXT = {
    "anycast": "the visitor's view: every request sent to the edge network's anycast entry",
    "pops": "the per-PoP view: requests sent to each PoP's own address",
    "mixed": "requests to the anycast entry and to PoPs' own addresses together",
}
PER_TUNNEL_COLUMNS = (
    "tunnel",
    "kind",
    "availability %",
    "requests",
    "failed",
    "indeterminate",
    "downtime s",
    "error budget used",
)
PER_POP_COLUMNS = (
    "PoP reached",
    "requests",
    "failed",
    "indeterminate",
    "availability %",
    "forwarded to a peer",
)


def per_tunnel_rows(sla: dict[str, Any]) -> list[list[str]]:
    """Rows of the per-tunnel SLA table (both report formats)."""
    return [
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
    ]


def per_pop_rows(sla: dict[str, Any]) -> list[list[str]]:
    """Rows of the per-PoP diagnostic table (``-``: no PoP answered)."""
    return [
        [
            "(none answered)" if pop == "-" else pop,
            fmt(p["requests"]),
            fmt(p["failed"]),
            fmt(p["indeterminate"]),
            fmt(p["availability"], 4),
            fmt(p["forwarded"]),
        ]
        for pop, p in (sla.get("pops") or {}).items()
    ]


def view_text(sla: dict[str, Any]) -> str:
    """One sentence saying whose view the headline SLA figures are, and what they leave out."""
    text = VIEW_TEXT.get(sla.get("view") or "", "no visitor requests")
    if sla.get("scope") == "named":
        text += "; named tunnels only (the design under test: legacy ones, the baseline, are in "
        text += "the per-tunnel table)"
    if sla.get("after_revocation"):
        text += f"; {sla['after_revocation']} requests to a tunnel after its revocation left out"
    if sla.get("excluded"):
        kinds = ", ".join(sla.get("exclude_faults") or [])
        text += f"; {sla['excluded']} requests during planned downtime ({kinds}) left out"
    return text


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned table for the terminal."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def sla_table_markdown(summaries: Sequence[dict[str, Any]], slo: float | None = None) -> str:
    """SLA table across runs (e.g. a scenario catalogue), Markdown."""
    return markdown_table(SLA_COLUMNS, [sla_row(s, slo) for s in summaries])


def sla_table_html(summaries: Sequence[dict[str, Any]], slo: float | None = None) -> str:
    """SLA table across runs, an HTML ``<table>``."""
    return html_table(SLA_COLUMNS, [sla_row(s, slo) for s in summaries], "sla")


def sla_table_text(summaries: Sequence[dict[str, Any]], slo: float | None = None) -> str:
    """SLA table across runs for the terminal."""
    return text_table(SLA_COLUMNS, [sla_row(s, slo) for s in summaries])


def integrity_text(summary: dict[str, Any]) -> str:
    """Which integrity checks the run's traffic made, and which it could not (user origin)."""
    plan = summary.get("integrity") or {}
    if not plan:
        return ""
    origin = (summary.get("origin") or {}).get("kind", "reference")
    text = f"Integrity ({origin} origin): checked {', '.join(plan.get('applied') or ['nothing'])}"
    missing = plan.get("not_available") or {}
    if missing:
        text += "; not available: " + "; ".join(str(v) for v in missing.values())
    for check in summary.get("checks") or ():
        basis = (
            (check.get("data") or {}).get("basis")
            if check.get("check") == "no_corruption"
            else None
        )
        if basis is not None:
            text += f"; {check['name']} rested on: {', '.join(basis) or 'nothing'}"
    return text + "."
