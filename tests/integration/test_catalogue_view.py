"""What a catalogue run shows: the live progress view (terminal and plain) and the catalogue page
written from stored runs (the stored first-scenario run in tests/data, copied twice)."""

from __future__ import annotations

import io
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.report.run_dir import build_report
from harness.run_catalogue import write_catalogue
from harness.run_progress import CLEAR_LINE, ProgressView, timeline_bar
from harness.runner import RunStatus
from harness.scenario import load_scenario

STORED_RUN = Path(__file__).resolve().parents[1] / "data" / "journals" / "run-cp-outage"


def status(elapsed: float, active: tuple[str, ...] = ()) -> RunStatus:
    return RunStatus(
        scenario="demo",
        elapsed=elapsed,
        total=20.0,
        active=active,
        ok=97,
        fail=3,
        info=1,
        planned=((5.0, 10.0),),
    )


def test_timeline_bar_marks_played_now_and_fault_windows() -> None:
    # 20 s in 8 cells of 2.5 s; the fault window 5-10 s covers cells 2 and 3
    assert timeline_bar(status(0.0), width=8) == "[>.**....]"
    assert timeline_bar(status(12.5), width=8) == "[==##=>..]"
    assert timeline_bar(status(25.0), width=4) == "[=#=>]"


def test_live_view_redraws_one_line_and_scrolls_events_above_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out = io.StringIO()
    view = ProgressView(out, live=True)
    view.begin(2, 9, "link-flap")
    view.status(status(6.0, ("conn-ams flap 2",)))
    view.event("   6.1s  fault stop:  conn-ams flap 2")
    view.clear()
    text = out.getvalue()
    bar = "[======#>****............]"  # 24 cells; the fault covers cells 6-11
    line = f"[2/9] link-flap    6.0/20.0s {bar} 97.0% (ok 97 fail 3 info 1)  conn-ams flap 2"
    assert text == (
        CLEAR_LINE
        + line
        + CLEAR_LINE
        + "   6.1s  fault stop:  conn-ams flap 2\n"
        + CLEAR_LINE
        + line
        + CLEAR_LINE
    )


def test_plain_view_prints_lines_and_a_status_every_few_seconds() -> None:
    out = io.StringIO()
    now = [100.0]
    view = ProgressView(out, live=False, plain_interval=5.0, clock=lambda: now[0])
    view.begin(1, 1, "demo")
    view.status(status(1.0))
    now[0] += 2
    view.status(status(3.0))  # too soon: not printed
    now[0] += 4
    view.status(status(7.0, ("broker down",)))
    view.event("   7.2s  fault start: broker down")
    lines = out.getvalue().splitlines()
    assert lines == [
        "    1.0/20.0s  visitors 97.0% (ok 97 fail 3 info 1)  active: no fault",
        "    7.0/20.0s  visitors 97.0% (ok 97 fail 3 info 1)  active: broker down",
        "   7.2s  fault start: broker down",
    ]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_catalogue_page_has_the_sla_table_links_and_what_failed(tmp_path: Path) -> None:
    reports_dir = tmp_path / "reports"
    runs = []
    for name in ("20260101T000000Z-one", "20260101T000100Z-two"):
        run_dir = reports_dir / name
        shutil.copytree(STORED_RUN, run_dir)
        runs.append(build_report(run_dir))
    scenario = load_scenario(STORED_RUN / "scenario.yaml")
    md, html = write_catalogue(
        reports_dir, runs, [scenario], now=datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    )
    assert md.name == "catalogue-20260101T000500Z.md" and html.suffix == ".html"
    markdown = md.read_text()
    summary = json.loads((STORED_RUN / "summary.json").read_text())
    name, verdict = summary["scenario"], summary["verdict"]
    assert "| scenario | verdict | availability % |" in markdown
    assert "error budget" in markdown and "worst TTR s" in markdown
    assert markdown.count(f"| {name} | {verdict} |") == 2
    assert "[report](20260101T000000Z-one/report.html)" in markdown
    assert f"**{name}** ({verdict}): {scenario.summary}" in markdown
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and '<table class="sla">' in page
    assert page.count('href="20260101T000100Z-two/report.html"') == 1
    assert f'<td class="{verdict}">{verdict}</td>' in page


def test_catalogue_of_both_connectors_shows_them_side_by_side(tmp_path: Path) -> None:
    reports_dir = tmp_path / "reports"
    runs = []
    for name in ("20260101T000000Z-ref", "20260101T000100Z-cfd"):
        run_dir = reports_dir / name
        shutil.copytree(STORED_RUN, run_dir)
        runs.append(build_report(run_dir))
    # The same journal, as if cloudflared had run it and failed its first check.
    cfd = runs[1].summary
    cfd["connector"] = {"kind": "cloudflared", "version": "2026.8.2", "reconnects": 3}
    first = cfd["checks"][0] = {**cfd["checks"][0], "passed": False, "detail": "late by 9 s"}
    scenario = load_scenario(STORED_RUN / "scenario.yaml")
    md, html = write_catalogue(reports_dir, runs, [scenario])
    markdown = md.read_text()
    name = cfd["scenario"]
    assert f"| {name} (reference) |" in markdown and f"| {name} (cloudflared) |" in markdown
    assert "## Reference connector vs cloudflared" in markdown
    assert "cloudflared 2026.8.2" in markdown
    assert (
        f"- **{name}**: {first['name']} fails with cloudflared (reference: passes): late by 9 s"
        in markdown
    )
    assert "Reference connector vs cloudflared</h2>" in html.read_text()
