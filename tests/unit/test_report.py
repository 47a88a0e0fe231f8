"""Reports from the journal alone: reproduction, verdict/exit codes, JUnit, HTML, SLA maths."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.journal import JournalBuilder
from harness.journal.history import History
from harness.report import (
    JUNIT,
    REPORT_HTML,
    REPORT_MD,
    SUMMARY,
    build_report,
    compute_sla,
    render_junit,
    timeline_svg,
    write_report,
)
from harness.report.tables import view_text

ROOT = Path(__file__).resolve().parents[2]
STORED_RUN = ROOT / "tests" / "data" / "journals" / "run-cp-outage"
OUTPUTS = (SUMMARY, REPORT_MD, REPORT_HTML, JUNIT)

SCENARIO = """
name: demo
description: Two tunnels through a control-plane outage.
duration: 40s
stack:
  tunnels:
    - {name: web, kind: named, hostname: app.example.com}
    - {name: old, kind: legacy, hostname: old.example.com}
timeline:
  - {at: 10s, for: 20s, fault: controlplane_outage}
  - {at: 12s, for: 1s, fault: link_reset, target: conn-ams}
checks:
  - {name: availability, label: named available, params: {tunnel: web, min: 0.99}}
  - name: availability
    label: legacy down during the outage
    params: {tunnel: old, window: during_fault, faults: [controlplane_outage], max: 0.2}
  - {name: dns_unchanged, params: {tunnel_kind: named}}
slo: {availability: 99.5}
"""


def outlast(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


def two_tunnel_run(run_dir: Path, *, legacy_recovers: bool = False, dns_flip: bool = False) -> Path:
    b = JournalBuilder(
        scenario="demo",
        seed=11,
        clock_start="2020-04-15T15:00:00Z",
        tunnels={"web": ("named", ["app.example.com"]), "old": ("legacy", ["old.example.com"])},
    )
    b.fault(10, 30, "controlplane_outage")
    b.fault(12, 13, "link_reset", "conn-ams")
    for i in range(80):
        t = i * 0.5
        b.request(t, "ok", tunnel="web", latency=0.01 + (i % 5) * 0.001)
        legacy_down = 12 <= t < 30 and not legacy_recovers
        b.request(t + 0.25, "fail" if legacy_down else "ok", tunnel="old", pop="fra")
    for s in range(40):
        b.dns(s + 0.1, ["web-id.tunnels.outlast.test" if not (dns_flip and s == 20) else "x"])
    b.end(40)
    b.write(run_dir / "journal.jsonl")
    (run_dir / "scenario.yaml").write_text(SCENARIO)
    return run_dir


def test_stored_run_summary_is_reproduced_exactly(tmp_path: Path) -> None:
    """A stored run (journal + scenario + summary) recomputes to the same bytes.

    If a deliberate change to checks or the summary format breaks this, regenerate the stored
    summary and review the diff::

        python -c "from pathlib import Path; from harness.report import build_report, \
        summary_json; d = Path('tests/data/journals/run-cp-outage'); \
        (d / 'summary.json').write_text(summary_json(build_report(d).summary))"
    """
    run = shutil.copytree(STORED_RUN, tmp_path / "run")
    stored = (run / SUMMARY).read_bytes()
    verify = outlast("report", "--verify", run)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "reproduced exactly" in verify.stdout
    assert sorted(p.name for p in run.iterdir()) == ["journal.jsonl", "scenario.yaml", SUMMARY]
    rewrite = outlast("report", run)
    assert rewrite.returncode == 0, rewrite.stderr
    assert (run / SUMMARY).read_bytes() == stored
    assert all((run / name).is_file() for name in OUTPUTS)


def test_every_report_file_is_deterministic(tmp_path: Path) -> None:
    run = two_tunnel_run(tmp_path / "run")
    report = write_report(run)
    first = {name: (run / name).read_bytes() for name in OUTPUTS}
    result = outlast("report", run)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {name: (run / name).read_bytes() for name in OUTPUTS} == first
    assert report.verdict == "pass" and report.exit_code == 0
    assert b"generated" not in first[SUMMARY]


def test_verify_detects_a_tampered_summary(tmp_path: Path) -> None:
    run = two_tunnel_run(tmp_path / "run")
    write_report(run)
    summary = run / SUMMARY
    summary.write_text(summary.read_text().replace('"seed": 11', '"seed": 12'))
    result = outlast("report", "--verify", run)
    assert result.returncode == 3
    assert "DIFFERS" in result.stderr and '"seed": 12' in result.stderr


def test_a_failed_check_gives_exit_1_and_names_it(tmp_path: Path) -> None:
    run = two_tunnel_run(tmp_path / "run", legacy_recovers=True, dns_flip=True)
    result = outlast("report", run)
    assert result.returncode == 1
    assert "FAIL" in result.stdout
    assert "failed: legacy down during the outage, dns_unchanged" in result.stdout
    report = build_report(run)
    assert report.verdict == "fail"
    failed = [c["name"] for c in report.summary["checks"] if c["passed"] is False]
    assert failed == ["legacy down during the outage", "dns_unchanged"]


def test_without_a_scenario_the_verdict_is_unknown(tmp_path: Path) -> None:
    run = two_tunnel_run(tmp_path / "run")
    (run / "scenario.yaml").unlink()
    result = outlast("report", run)
    assert result.returncode == 2
    report = build_report(run)
    sla = report.summary["sla"]
    assert report.summary["checks"] == [] and sla["requests"] == 80  # named: the headline
    assert sum(t["requests"] for t in sla["tunnels"].values()) == 160


def test_the_headline_is_the_named_tunnels_when_legacy_is_the_baseline(tmp_path: Path) -> None:
    sla = build_report(two_tunnel_run(tmp_path / "run")).summary["sla"]
    assert sla["scope"] == "named"
    assert sla["availability"] == 100.0 and sla["failed"] == 0
    assert sla["tunnels"]["old"]["failed"] == 36  # the baseline's downtime stays in view
    assert sla["tunnels"]["old"]["downtime_s"] > 15
    assert any(w["tunnel"] == "old" for w in sla["downtime_windows"])


def test_requests_after_a_revocation_are_not_downtime(tmp_path: Path) -> None:
    b = JournalBuilder(scenario="revoke", seed=1, tunnels={"web": ("named", ["app.example.com"])})
    b.fault(10, 10.1, "credential_revocation", "web")
    for i in range(40):
        t = i * 0.5
        b.request(t, "ok" if t < 10 else "fail", tunnel="web")
    b.end(20)
    b.write(tmp_path / "run" / "journal.jsonl")
    sla = build_report(tmp_path / "run").summary["sla"]
    assert sla["after_revocation"] == 20
    assert (sla["requests"], sla["failed"], sla["availability"]) == (20, 0, 100.0)


def test_planned_downtime_is_left_out_of_the_sla_only_when_declared() -> None:
    def sla_of(exclude: tuple[str, ...]) -> dict:
        b = JournalBuilder(scenario="plan", seed=1, tunnels={"web": ("named", ["app.example.com"])})
        b.fault(5, 10, "link_down", "conn-ams")
        for i in range(40):
            t = i * 0.5
            b.request(t, "fail" if 5 <= t <= 10 else "ok", tunnel="web")
        b.end(20)
        return compute_sla(b.history(), 99.0, exclude_faults=exclude)

    declared = sla_of(("link_down",))
    assert (declared["excluded"], declared["requests"], declared["availability"]) == (11, 29, 100.0)
    undeclared = sla_of(())
    assert undeclared["excluded"] == 0 and undeclared["failed"] == 11
    assert undeclared["error_budget_consumed"] > 1.0  # the same outage, counted, is over budget
    assert "planned downtime (link_down)" in view_text(declared)


def test_a_crashed_run_reports_but_cannot_pass(tmp_path: Path) -> None:
    run = two_tunnel_run(tmp_path / "run")
    journal = run / "journal.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:15])  # torn end record
    result = outlast("report", run)
    assert result.returncode == 2, result.stdout + result.stderr
    summary = build_report(run).summary
    assert summary["run"]["status"] == "incomplete" and summary["verdict"] == "unknown"
    suite = ET.parse(run / JUNIT).getroot().find("testsuite")
    assert suite is not None and suite.get("errors") == "1"


def test_a_damaged_journal_is_reported_with_line_numbers(tmp_path: Path) -> None:
    run = two_tunnel_run(tmp_path / "run")
    journal = run / "journal.jsonl"
    lines = journal.read_text().splitlines()
    lines[4] = "garbage"
    journal.write_text("\n".join(lines) + "\n")
    result = outlast("report", run)
    assert result.returncode == 2
    assert f"{journal}:5: not JSON" in result.stderr


def test_junit_xml(tmp_path: Path) -> None:
    run = two_tunnel_run(tmp_path / "run", legacy_recovers=True)
    write_report(run)
    root = ET.parse(run / JUNIT).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "demo" and suite.get("tests") == "3"
    assert suite.get("failures") == "1" and suite.get("errors") == "0"
    assert suite.get("timestamp") == "2024-01-01T00:00:00"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["seed"] == "11" and props["verdict"] == "fail"
    assert props["fault.1"] == "controlplane_outage 10.0s-30.0s"
    assert props["fault.2"] == "link_reset conn-ams 12.0s-13.0s"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["named available", "legacy down during the outage", "dns_unchanged"]
    failure = cases["legacy down during the outage"].find("failure")
    assert failure is not None and "above max 0.2" in (failure.get("message") or "")
    assert cases["named available"].find("failure") is None


def test_junit_has_one_suite_per_scenario() -> None:
    summaries = [
        {
            "scenario": name,
            "checks": [{"name": "c", "passed": None, "detail": "no data"}],
            "run": {"status": "completed", "duration_s": 1.0},
            "faults": [],
        }
        for name in ("a", "b")
    ]
    root = ET.fromstring(render_junit(summaries))
    assert [s.get("name") for s in root.findall("testsuite")] == ["a", "b"]
    assert root.get("errors") == "2"
    error = root.find("testsuite/testcase/error")
    assert error is not None and error.get("type") == "undecided"


def test_html_is_self_contained_with_the_timeline_plot(tmp_path: Path) -> None:
    run = two_tunnel_run(tmp_path / "run")
    write_report(run)
    page = (run / REPORT_HTML).read_text()
    assert page.startswith("<!DOCTYPE html>")
    for external in ("http://", "https://", "<script", "src=", "<link", "@import", "url("):
        assert external not in page, external
    assert page.count("<svg") == 1 and "</svg>" in page
    assert page.count('class="series"') == 4  # rate + latency, per tunnel
    assert "web (named)" in page and "old (legacy)" in page
    assert 'class="fault"' in page and "link_reset conn-ams" in page
    assert ">15:00:00<" in page and ">15:00:30<" in page  # wall-clock axis from clock_start


def test_sla_figures() -> None:
    b = JournalBuilder()
    b.fault(2.0, 3.0, "link_down", "conn-ams")
    latencies = [0.010, 0.020, 0.030, 0.040]
    for i in range(40):
        t = i * 0.1
        phase = "fail" if 2.0 <= t < 3.05 else "ok"
        b.request(t, phase, latency=latencies[i % 4])
    b.request(4.1, "info", latency=None)
    b.end(5)
    sla = compute_sla(b.history(), slo=99.0)
    assert sla["requests"] == 41 and sla["failed"] == 11 and sla["indeterminate"] == 1
    assert sla["availability"] == pytest.approx(100 * 29 / 40, abs=1e-4)
    assert sla["error_budget_consumed"] == pytest.approx(27.5, abs=1e-3)
    (window,) = sla["downtime_windows"]
    assert (window["start_s"], window["end_s"], window["failed"]) == (2.0, 3.1, 11)
    assert sla["time_to_recover_s"] == pytest.approx(0.14, abs=1e-3)  # 3.1 s + 40 ms latency
    latency = sla["latency_ms"]
    assert latency["method"] == "nearest-rank" and latency["count"] == 29
    assert latency["max"] == 40.0 and latency["p50"] in (20.0, 30.0)


def test_sla_table_across_runs(tmp_path: Path) -> None:
    first = two_tunnel_run(tmp_path / "a")
    second = two_tunnel_run(tmp_path / "b", legacy_recovers=True)
    table = tmp_path / "sla.md"
    result = outlast("report", "--slo", "99.9", "--sla-table", table, first, second)
    assert result.returncode == 1  # the second run fails its legacy expectation
    assert "availability %" in result.stdout and "error budget" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("demo ")]
    assert len(rows) == 2
    assert "| scenario | verdict |" in table.read_text()
    html_table = tmp_path / "sla.html"
    outlast("report", "--sla-table", html_table, first)
    assert html_table.read_text().startswith('<table class="sla">')


def test_plot_handles_a_journal_without_traffic() -> None:
    b = JournalBuilder()
    b.fault(1, 2, "pause", "edge-ams")
    b.end(3)
    svg = timeline_svg(b.history())
    assert "no successful requests" in svg and "pause edge-ams" in svg


def test_the_plot_shows_which_pop_served_each_request(tmp_path: Path) -> None:
    from harness.report.plot import served_by_pop, timeline_svg

    b = JournalBuilder(scenario="served", seed=1, tunnels={"web": ("named", ["app.example.com"])})
    b.request(1.0, "ok", pop="ams", tunnel_pop="ams")
    b.request(1.1, "ok", pop="ams", tunnel_pop="fra")  # forwarded
    b.request(1.2, "ok", pop="fra", tunnel_pop="fra")
    b.request(1.3, "fail", pop="ams", status=530)
    b.end(2)
    history = History(b.records)
    counts: dict[tuple[str, bool], int] = {}
    for bucket in served_by_pop(history, 10.0).values():
        for key, n in bucket.items():
            counts[key] = counts.get(key, 0) + n
    assert counts == {("ams", False): 1, ("ams", True): 1, ("fra", False): 1, ("failed", False): 1}
    svg = timeline_svg(history)
    assert "served by ams, forwarded to a peer" in svg and "served by fra" in svg
    assert ">failed<" in svg
