"""Reference connector vs cloudflared, per scenario (the catalogue of ``--connector both``).

Each scenario played by both connectors gets one row: verdict, visitor availability, worst time
to recover and reconnects made (with the control-plane requests counted while they were made),
reference first. A **finding** is a check that passed with the reference connector and did not
with cloudflared (or the other way round), quoted with its figure: what the harness exists to
show. Everything is read from the two runs' summaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.report.tables import fmt

CONNECTORS = ("reference", "cloudflared")
COLUMNS = (
    "scenario",
    "verdict ref / cfd",
    "availability % ref / cfd",
    "worst TTR s ref / cfd",
    "reconnects (control-plane requests) ref / cfd",
)


def played_by(summary: dict[str, Any]) -> str:
    """Which connector ran the named tunnels of a run (``reference`` for older summaries)."""
    connector = summary.get("connector") or {}
    return str(connector.get("kind") or "reference")


def pairs(
    summaries: Sequence[dict[str, Any]],
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(scenario, reference summary, cloudflared summary)`` for every scenario both played,
    in the order the scenarios ran (the last run of each wins)."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for summary in summaries:
        found.setdefault(str(summary.get("scenario")), {})[played_by(summary)] = summary
    return [
        (name, runs["reference"], runs["cloudflared"])
        for name, runs in found.items()
        if all(c in runs for c in CONNECTORS)
    ]


def control_plane_requests(summary: dict[str, Any]) -> int | None:
    """Control-plane requests counted by the run's ``control_plane_independent`` checks."""
    total, seen = 0, False
    for check in summary.get("checks", []):
        if check.get("check") != "control_plane_independent":
            continue
        for row in (check.get("data") or {}).get("windows", []):
            if isinstance(row.get("requests"), int):
                total, seen = total + row["requests"], True
    return total if seen else None


def _reconnect_text(summary: dict[str, Any]) -> str:
    count = (summary.get("connector") or {}).get("reconnects")
    requests = control_plane_requests(summary)
    return f"{fmt(count)} ({fmt(requests)})"


def row(name: str, ref: dict[str, Any], cfd: dict[str, Any]) -> list[str]:
    """One comparison row."""

    def both(get: Any) -> str:
        return f"{get(ref)} / {get(cfd)}"

    return [
        name,
        both(lambda s: s.get("verdict")),
        both(lambda s: fmt(s.get("sla", {}).get("availability"), 3)),
        both(lambda s: fmt(s.get("sla", {}).get("time_to_recover_s"))),
        both(_reconnect_text),
    ]


def _label(check: dict[str, Any]) -> str:
    return str(check.get("name") or check.get("check"))


def findings(ref: dict[str, Any], cfd: dict[str, Any]) -> list[str]:
    """Checks whose outcome differs between the connectors, with cloudflared's figure."""
    out = []
    ref_checks = ref.get("checks", [])
    cfd_checks = cfd.get("checks", [])
    for mine, theirs in zip(ref_checks, cfd_checks, strict=False):
        if mine.get("passed") is theirs.get("passed"):
            continue
        word = {True: "passes", False: "fails", None: "is undecided"}
        out.append(
            f"{_label(theirs)} {word[theirs.get('passed')]} with cloudflared "
            f"(reference: {word[mine.get('passed')].split()[-1]}): {theirs.get('detail')}"
        )
    return out


def comparison_rows(summaries: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Every comparison row of a catalogue's runs."""
    return [row(name, ref, cfd) for name, ref, cfd in pairs(summaries)]


def cloudflared_version(summaries: Sequence[dict[str, Any]]) -> str | None:
    """The cloudflared version the runs used (the first one recorded)."""
    for summary in summaries:
        if played_by(summary) == "cloudflared":
            version = (summary.get("connector") or {}).get("version")
            if version:
                return str(version)
    return None
