"""``summary.json``: the verdict, every check and the SLA of one run, from its journal alone.

The summary is deterministic: the same journal and scenario always give byte-identical JSON
(sorted keys, rounded numbers, no "generated at" time), so ``outlast report`` can reproduce it.
"""

from __future__ import annotations

import json
from typing import Any

from harness.checks.registry import run_checks
from harness.checks.result import exit_code, verdict
from harness.journal.history import History
from harness.report.connector import connector_summary
from harness.report.sla import compute_sla
from harness.scenario.schema import Scenario

SUMMARY_FORMAT = 1


def _faults(history: History) -> list[dict[str, Any]]:
    rows = []
    for fault in history.faults:
        scenario_start = (fault.start_t - history.start_t) / 1e9 / history.time_scale
        rows.append(
            {
                "fault_id": fault.fault_id,
                "fault": fault.fault,
                "target": fault.target,
                "name": fault.name,
                "start_s": round(history.seconds(fault.start_t), 3),
                "stop_s": None if fault.stop_t is None else round(history.seconds(fault.stop_t), 3),
                "scenario_at_s": round(scenario_start, 3),
                "error": fault.error,
            }
        )
    return rows


def compute_summary(history: History, scenario: Scenario | None) -> dict[str, Any]:
    """The summary of a run: ``scenario`` supplies the checks and SLO (``None``: SLA only,
    verdict ``unknown``)."""
    run = history.run
    results = run_checks(history, scenario.checks) if scenario is not None else []
    value = verdict(results, run_completed=history.completed)
    checks = []
    for spec, result in zip(scenario.checks if scenario else (), results, strict=True):
        checks.append(
            {
                "name": result.name,
                "check": spec.name,
                "expect": spec.expect,
                "passed": result.passed,
                "detail": result.detail,
                "data": result.data,
            }
        )
    end = history.end
    # Which origin served and which integrity checks its traffic made (journals before these
    # were recorded have neither, and their summaries stay as they were).
    extra: dict[str, Any] = {
        key: run.meta[key] for key in ("origin", "integrity") if run and key in run.meta
    }
    connector = connector_summary(history)
    if connector is not None:
        extra["connector"] = connector
    return {
        **extra,
        "summary_format": SUMMARY_FORMAT,
        "scenario": run.scenario if run else (scenario.name if scenario else None),
        "description": scenario.summary if scenario else None,
        "seed": run.seed if run else (scenario.seed if scenario else None),
        "time_scale": run.time_scale if run else (scenario.time_scale if scenario else None),
        "backend": run.backend if run else None,
        "started_at": run.started_at if run else None,
        "clock_start": run.clock_start if run else None,
        "verdict": value,
        "exit_code": exit_code(value),
        "run": {
            "status": end.status if end else "incomplete",
            "error": end.error if end else "journal has no end record (the run was cut short)",
            "duration_s": round(history.seconds(history.end_t), 3),
            "records": len(history.records),
            "anomalies": list(history.anomalies[:20]),
            "scenario_file": scenario is not None,
        },
        "checks": checks,
        "faults": _faults(history),
        "sla": compute_sla(
            history,
            scenario.slo.availability if scenario else None,
            scenario.slo.latency_p99_ms if scenario else None,
            scenario.slo.exclude_faults if scenario else (),
        ),
    }


def summary_json(summary: dict[str, Any]) -> str:
    """Canonical JSON text of a summary (sorted keys, 2-space indent, trailing newline)."""
    return json.dumps(summary, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
