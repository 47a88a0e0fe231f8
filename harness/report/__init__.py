"""Reports computed from a run's journal alone: summary.json, report.md, report.html, junit.xml.

See ``docs/reports.md``.
"""

from harness.report.html import render_html
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.plot import timeline_svg
from harness.report.run_dir import (
    JOURNAL,
    JUNIT,
    REPORT_HTML,
    REPORT_MD,
    SCENARIO,
    SUMMARY,
    RunReport,
    build_report,
    write_report,
)
from harness.report.sla import compute_sla
from harness.report.summary import compute_summary, summary_json
from harness.report.tables import sla_table_html, sla_table_markdown, sla_table_text

__all__ = [
    "JOURNAL",
    "JUNIT",
    "REPORT_HTML",
    "REPORT_MD",
    "SCENARIO",
    "SUMMARY",
    "RunReport",
    "build_report",
    "compute_sla",
    "compute_summary",
    "render_html",
    "render_junit",
    "render_markdown",
    "sla_table_html",
    "sla_table_markdown",
    "sla_table_text",
    "summary_json",
    "timeline_svg",
    "write_report",
]
