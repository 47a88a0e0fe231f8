"""The catalogue page of a multi-scenario ``outlast run``: one SLA table across the scenarios.

``outlast run scenarios/`` writes ``<report-dir>/catalogue-<timestamp>.md`` and ``.html``: per
scenario its verdict, availability, error budget consumed (against the scenario's SLO), worst
time to recover, what it proves (the first sentence of its description), the checks that did
not pass, and a link to its own report. When named tunnels ran on the real cloudflared, each row
names its connector; scenarios played by both (``--connector both``) also get the side-by-side
table and findings of ``harness.report.connector_comparison``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from harness.report import connector_comparison as comparison
from harness.report.run_dir import REPORT_HTML, RunReport
from harness.report.tables import SLA_COLUMNS, html_table, markdown_table, sla_row
from harness.scenario import Scenario
from reference.files import atomic_write

COLUMNS = (*SLA_COLUMNS, "report")
NOTE = (
    "Availability is each run's SLA headline: its visitor requests, except those to a tunnel "
    "after its deliberate revocation and those during a scenario's declared planned downtime "
    "(`slo.exclude_faults`), each run's report says how many; the checks decide the verdict."
)


def _link(report_dir: Path, report: RunReport) -> str:
    return Path(os.path.relpath(report.run_dir / REPORT_HTML, report_dir)).as_posix()


def _not_passed(summary: dict[str, Any]) -> list[str]:
    return [
        f"{c['name']} ({'failed' if c['passed'] is False else 'undecided'}): {c['detail']}"
        for c in summary.get("checks", [])
        if c["passed"] is not True
    ]


def _proves(scenarios: dict[str, Scenario], summary: dict[str, Any]) -> str:
    scenario = scenarios.get(str(summary.get("scenario")))
    return scenario.summary if scenario is not None else ""


def _name(reports: Sequence[RunReport], summary: dict[str, Any]) -> str:
    """The scenario's name, with its connector when some run of the catalogue used cloudflared."""
    if all(comparison.played_by(r.summary) == "reference" for r in reports):
        return str(summary.get("scenario"))
    return f"{summary.get('scenario')} ({comparison.played_by(summary)})"


def _sla_cells(reports: Sequence[RunReport]) -> list[list[str]]:
    """SLA rows; the scenario cell names the connector when some run used cloudflared."""
    rows = []
    for report in reports:
        cells = sla_row(report.summary)
        cells[0] = _name(reports, report.summary)
        rows.append(cells)
    return rows


def _comparison(
    reports: Sequence[RunReport],
) -> tuple[list[list[str]], list[tuple[str, list[str]]]]:
    """The side-by-side rows and, per scenario, its findings (empty lists when no pair)."""
    summaries = [r.summary for r in reports]
    rows = comparison.comparison_rows(summaries)
    found = [
        (name, comparison.findings(ref, cfd)) for name, ref, cfd in comparison.pairs(summaries)
    ]
    return rows, found


def _comparison_intro(reports: Sequence[RunReport]) -> str:
    version = comparison.cloudflared_version([r.summary for r in reports]) or "unknown"
    return (
        f"Named tunnels on the reference connector vs the real cloudflared {version} "
        "(HTTP/2 transport). Reconnects: registrations made while the scenario played; in "
        "brackets the control-plane requests counted meanwhile. A finding is a check whose "
        "outcome differs between the two, with cloudflared's figure."
    )


def _headline(reports: Sequence[RunReport]) -> str:
    verdicts: list[str] = [r.verdict for r in reports]
    counts = ", ".join(
        f"{verdicts.count(v)} {word}"
        for v, word in (("pass", "passed"), ("fail", "failed"), ("unknown", "undecided"))
        if verdicts.count(v)
    )
    return f"{len(reports)} scenarios: {counts}."


def catalogue_markdown(
    reports: Sequence[RunReport], report_dir: Path, scenarios: Sequence[Scenario], when: str
) -> str:
    """The catalogue page as Markdown."""
    by_name = {s.name: s for s in scenarios}
    rows = [
        [*cells, f"[report]({_link(report_dir, r)})"]
        for cells, r in zip(_sla_cells(reports), reports, strict=True)
    ]
    lines = [f"# Catalogue run {when}", "", _headline(reports), "", NOTE, ""]
    lines.append(markdown_table(COLUMNS, rows))
    side, found = _comparison(reports)
    if side:
        lines += ["## Reference connector vs cloudflared", "", _comparison_intro(reports), ""]
        lines.append(markdown_table(comparison.COLUMNS, side))
        lines += ["### Findings", ""]
        for name, items in found:
            lines += [f"- **{name}**: {item}" for item in items] or [
                f"- **{name}**: every check has the same outcome"
            ]
        lines.append("")
    lines += ["## What each scenario proves", ""]
    for report in reports:
        summary = report.summary
        lines.append(
            f"- **{_name(reports, summary)}** ({summary['verdict']}): {_proves(by_name, summary)}"
        )
        lines += [f"  - {problem}" for problem in _not_passed(summary)]
    return "\n".join(lines).rstrip() + "\n"


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:80em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em}
th{background:#f3f3f3;text-align:left}td.pass{color:#176f2c;font-weight:bold}
td.fail{color:#b00020;font-weight:bold}td.unknown{color:#8a6d00;font-weight:bold}
li{margin:.3em 0}.note{color:#555}
"""


def catalogue_html(
    reports: Sequence[RunReport], report_dir: Path, scenarios: Sequence[Scenario], when: str
) -> str:
    """The catalogue page as a self-contained HTML document."""
    by_name = {s.name: s for s in scenarios}
    head = "".join(f"<th>{escape(h)}</th>" for h in COLUMNS)
    body = []
    for cells, report in zip(_sla_cells(reports), reports, strict=True):
        tds = "".join(
            f'<td class="{escape(c)}">{escape(c)}</td>' if i == 1 else f"<td>{escape(c)}</td>"
            for i, c in enumerate(cells)
        )
        link = escape(_link(report_dir, report))
        body.append(f'<tr>{tds}<td><a href="{link}">report</a></td></tr>')
    side, found = _comparison(reports)
    compared = ""
    if side:
        finding_items = "".join(
            f"<li><b>{escape(name)}</b>: {escape(item)}</li>"
            for name, items in found
            for item in (items or ["every check has the same outcome"])
        )
        compared = (
            f"<h2>Reference connector vs cloudflared</h2><p>{escape(_comparison_intro(reports))}"
            f"</p>{html_table(comparison.COLUMNS, side)}<h3>Findings</h3><ul>{finding_items}</ul>"
        )
    items = []
    for report in reports:
        summary = report.summary
        problems = "".join(f"<li>{escape(p)}</li>" for p in _not_passed(summary))
        items.append(
            f"<li><b>{escape(_name(reports, summary))}</b> ({escape(summary['verdict'])}): "
            f"{escape(_proves(by_name, summary))}"
            + (f"<ul>{problems}</ul>" if problems else "")
            + "</li>"
        )
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>Outlast catalogue run {escape(when)}</title><style>{STYLE}</style></head><body>"
        f"<h1>Catalogue run {escape(when)}</h1><p>{escape(_headline(reports))}</p>"
        f'<p class="note">{escape(NOTE)}</p>'
        f'<table class="sla"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
        f"{compared}"
        f"<h2>What each scenario proves</h2><ul>{''.join(items)}</ul></body></html>\n"
    )


def write_catalogue(
    report_dir: Path,
    reports: Sequence[RunReport],
    scenarios: Sequence[Scenario],
    now: datetime | None = None,
) -> tuple[Path, Path]:
    """Write ``catalogue-<timestamp>.md`` and ``.html`` into ``report_dir``; return both."""
    now = now or datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    when = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    report_dir.mkdir(parents=True, exist_ok=True)
    md = report_dir / f"catalogue-{stamp}.md"
    html = report_dir / f"catalogue-{stamp}.html"
    atomic_write(md, catalogue_markdown(reports, report_dir, scenarios, when).encode(), mode=0o644)
    atomic_write(html, catalogue_html(reports, report_dir, scenarios, when).encode(), mode=0o644)
    return md, html
