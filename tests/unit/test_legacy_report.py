"""What a postmortem replay's HTML report shows for a legacy and a named tunnel: the per-tunnel
numbers during the outage, and the incident's clock times in the tables and on the plot."""

from __future__ import annotations

from pathlib import Path

from harness.journal import JournalBuilder
from harness.report.run_dir import build_report

SCENARIO = """\
name: replay
clock: {start: "2020-04-15T15:30:00Z"}
time_scale: 0.01
stack:
  tunnels:
    - {name: web, kind: named, hostname: app.example.com}
    - {name: classic, kind: legacy, hostname: www.example.com}
timeline:
  - {at: "15:31", until: "15:35", fault: controlplane_outage}
duration: 6m
"""


def replay(run_dir: Path, *, clock: bool = True) -> Path:
    """60 s at time scale 0.01: the outage 0.6-3.0 s real = 15:31-15:35 of incident clock."""
    run_dir.mkdir()
    b = JournalBuilder(
        scenario="replay",
        time_scale=0.01,
        clock_start="2020-04-15T15:30:00Z" if clock else None,
        tunnels={"web": ("named", ["app.example.com"]), "classic": ("legacy", ["www.example.com"])},
    )
    b.fault(0.6, 3.0, "controlplane_outage")
    b.fault(1.2, 1.3, "link_down", "conn-ams")
    for i in range(36):
        t = i * 0.1
        b.request(t, "fail" if 1.2 <= t < 1.3 else "ok", tunnel="web")
        b.request(t + 0.05, "fail" if 1.2 <= t < 3.1 else "ok", tunnel="classic", pop="fra")
    b.end(3.6)
    b.write(run_dir / "journal.jsonl")
    (run_dir / "scenario.yaml").write_text(SCENARIO)
    return run_dir


def test_tunnels_during_the_outage_in_numbers_and_incident_clock(tmp_path: Path) -> None:
    html = build_report(replay(tmp_path / "run")).files()["report.html"]
    section = html.split("<h2>Tunnels during the outage</h2>", 1)[1].split("<h2>", 1)[0]
    rows = {
        row.split("</td><td>")[2]: row.split("</td><td>") for row in section.split("<tr><td>")[1:]
    }
    assert set(rows) == {"web", "classic"}
    assert rows["web"][1] == "15:31:00-15:35:00"
    assert rows["web"][3] == "named" and rows["classic"][3] == "legacy"
    named, legacy = float(rows["web"][4]), float(rows["classic"][4])
    assert named > 95 and legacy < 60, (named, legacy)
    # The legacy tunnel's downtime inside the outage, on the incident's clock: from its first
    # failed request (15:32:05) to the end of the outage (15:35:00).
    assert rows["classic"][7] == "2m55s"
    # ...and its whole downtime window, until the first of three successes again (15:35:15).
    assert "<td>classic</td><td>15:32:05-15:35:15</td><td>3m10s</td>" in html
    # The plot's axis speaks the incident's clock too, with both tunnels as their own series.
    assert ">15:31<" in html or ">15:31:00<" in html
    assert "classic (legacy)" in html and "web (named)" in html


def test_without_a_clock_the_tables_stay_in_run_seconds(tmp_path: Path) -> None:
    html = build_report(replay(tmp_path / "run", clock=False)).files()["report.html"]
    assert "<h2>Tunnels during the outage</h2>" in html
    assert "clock (UTC)" not in html and "incident clock" not in html
    assert "0.6-3 s" in html
