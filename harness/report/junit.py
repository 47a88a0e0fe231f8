"""``junit.xml``: one ``<testsuite>`` per scenario run, one ``<testcase>`` per check.

A failed check is a ``<failure>``; an undecided one (or a run that did not complete) is an
``<error>``. Seed, time scale, backend, verdict and the fault timeline are suite properties.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from harness.report.tables import run_problem


def _timestamp(started_at: str | None) -> str | None:
    if not started_at:
        return None
    return started_at.replace("Z", "").split(".")[0].split("+")[0]


def _suite(summary: dict[str, Any]) -> ET.Element:
    name = str(summary.get("scenario"))
    checks = summary.get("checks", [])
    run = summary.get("run", {})
    incomplete = run.get("status") != "completed"
    failures = sum(c["passed"] is False for c in checks)
    errors = sum(c["passed"] is None for c in checks) + (1 if incomplete else 0)
    suite = ET.Element(
        "testsuite",
        {
            "name": name,
            "tests": str(len(checks) + (1 if incomplete else 0)),
            "failures": str(failures),
            "errors": str(errors),
            "skipped": "0",
            "time": f"{run.get('duration_s', 0):.3f}",
        },
    )
    stamp = _timestamp(summary.get("started_at"))
    if stamp:
        suite.set("timestamp", stamp)
    properties = ET.SubElement(suite, "properties")
    for key in ("seed", "time_scale", "backend", "verdict", "clock_start"):
        if summary.get(key) is not None:
            ET.SubElement(properties, "property", {"name": key, "value": str(summary[key])})
    for index, fault in enumerate(summary.get("faults", []), start=1):
        stop = "never" if fault["stop_s"] is None else f"{fault['stop_s']}s"
        target = f" {fault['target']}" if fault.get("target") else ""
        ET.SubElement(
            properties,
            "property",
            {
                "name": f"fault.{index}",
                "value": f"{fault['fault']}{target} {fault['start_s']}s-{stop}",
            },
        )
    classname = f"outlast.{name}"
    problem = run_problem(summary)
    if problem is not None:  # first: the reason the checks below are undecided
        case = ET.SubElement(
            suite, "testcase", {"classname": classname, "name": "run", "time": "0"}
        )
        detail = f"run {problem}"
        ET.SubElement(
            case, "error", {"message": detail[:500], "type": "run_incomplete"}
        ).text = detail
    for check in checks:
        case = ET.SubElement(
            suite, "testcase", {"classname": classname, "name": check["name"], "time": "0"}
        )
        if check["passed"] is False:
            failure = ET.SubElement(
                case, "failure", {"message": check["detail"][:500], "type": "check_failed"}
            )
            failure.text = check["detail"]
        elif check["passed"] is None:
            message = check["detail"] if problem is None else f"run {problem} ({check['detail']})"
            error = ET.SubElement(case, "error", {"message": message[:500], "type": "undecided"})
            error.text = message
        else:
            ET.SubElement(case, "system-out").text = check["detail"]
    return suite


def render_junit(summaries: Sequence[dict[str, Any]]) -> str:
    """JUnit XML for one or more runs (``<testsuites>`` with a suite per run)."""
    suites = [_suite(s) for s in summaries]
    root = ET.Element(
        "testsuites",
        {
            "name": "outlast",
            "tests": str(sum(int(s.get("tests", "0")) for s in suites)),
            "failures": str(sum(int(s.get("failures", "0")) for s in suites)),
            "errors": str(sum(int(s.get("errors", "0")) for s in suites)),
        },
    )
    root.extend(suites)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
