"""``report.md``: the summary as Markdown."""

from __future__ import annotations

from typing import Any

from harness.report.tables import (
    PER_POP_COLUMNS,
    PER_TUNNEL_COLUMNS,
    STATUS_WORD,
    budget_text,
    fmt,
    integrity_text,
    markdown_table,
    per_pop_rows,
    per_tunnel_rows,
    run_problem,
    undecided_by_run,
    view_text,
)


def render_markdown(summary: dict[str, Any]) -> str:
    """Markdown report of one run, from its summary."""
    sla = summary["sla"]
    run = summary["run"]
    lines = [
        f"# {summary['scenario']}: {summary['verdict'].upper()}",
        "",
    ]
    problem = run_problem(summary)
    if problem is not None:
        first, *more = problem.splitlines()
        lines += [f"**Run {first}**", ""] + (["```", *more, "```", ""] if more else [])
    if summary.get("description"):
        lines += [summary["description"], ""]
    lines += [
        f"- seed `{summary['seed']}`, time scale `{summary['time_scale']}`, backend "
        f"`{summary['backend']}`, started {summary['started_at']}",
        f"- run status `{run['status']}`"
        + (f": {run['error']}" if run.get("error") else "")
        + f", {fmt(run['duration_s'])} s, {run['records']} journal records",
        f"- exit code {summary['exit_code']} (0 pass, 1 a check failed, 2 undecided)",
        "",
        "## Checks",
        "",
    ]
    if summary["checks"] and undecided_by_run(summary):
        names = ", ".join(c["name"] for c in summary["checks"])
        lines += [
            f"None of the {len(summary['checks'])} checks was decided ({names}): {problem}",
            "",
        ]
    elif summary["checks"]:
        rows = [
            [
                STATUS_WORD[c["passed"]],
                c["name"] + (" (expected to fail)" if c["expect"] == "fail" else ""),
                c["detail"],
            ]
            for c in summary["checks"]
        ]
        lines.append(markdown_table(["result", "check", "detail"], rows))
    else:
        lines += ["No checks (no scenario file in the run directory?).", ""]
    latency = sla["latency_ms"]
    lines += [
        "## SLA",
        "",
        markdown_table(
            [
                "availability %",
                "SLO %",
                "error budget used",
                "requests",
                "failed",
                "indeterminate",
                "downtime s",
                "worst TTR s",
                "unrecovered faults",
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
                    fmt(sla["unrecovered_faults"]),
                ]
            ],
        ),
        f"Latency ({latency['method']}, {latency['count']} successful requests): "
        f"p50 {fmt(latency['p50'])} ms, p95 {fmt(latency['p95'])} ms, "
        f"p99 {fmt(latency['p99'])} ms, max {fmt(latency['max'])} ms."
        + (
            f" SLO p99 {fmt(sla['latency_p99_slo_ms'])} ms: "
            + {True: "met", False: "missed", None: "no data"}[sla["latency_p99_within_slo"]]
            + "."
            if sla.get("latency_p99_slo_ms") is not None
            else ""
        ),
        "",
        f"Availability: {sla['availability_method']}; {view_text(sla)}.",
        "",
    ]
    if integrity := integrity_text(summary):
        lines += [integrity, ""]
    if len(sla["tunnels"]) > 1:
        lines += ["### Per tunnel", "", markdown_table(PER_TUNNEL_COLUMNS, per_tunnel_rows(sla))]
    if sla.get("pops"):
        lines += [
            "### Per PoP (diagnostic)",
            "",
            "The same requests by the PoP that answered them; a PoP with no connection of the "
            "tunnel forwards to a peer that has one.",
            "",
            markdown_table(PER_POP_COLUMNS, per_pop_rows(sla)),
        ]
    lines += ["## Fault timeline", ""]
    if summary["faults"]:
        ttr = {r["fault_id"]: r["ttr_s"] for r in sla["recoveries"]}
        lines.append(
            markdown_table(
                [
                    "fault",
                    "target",
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
                        fmt(f["start_s"]),
                        fmt(f["stop_s"]),
                        fmt(f["scenario_at_s"]),
                        fmt(ttr.get(f["fault_id"])),
                        fmt(f["error"]),
                    ]
                    for f in summary["faults"]
                ],
            )
        )
    else:
        lines += ["No faults.", ""]
    lines += ["## Downtime windows", ""]
    if sla["downtime_windows"]:
        lines.append(
            markdown_table(
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
        )
        if sla["downtime_window_count"] > len(sla["downtime_windows"]):
            lines += [f"({sla['downtime_window_count']} windows in all; first ones shown.)", ""]
    else:
        lines += ["None: no visitor request failed.", ""]
    lines += [
        "Times are seconds of the journal clock (real time since the journal was opened).",
        "",
    ]
    return "\n".join(lines)
