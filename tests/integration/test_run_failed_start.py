"""A stack that does not come up (issue 21, item 9): the reason is the scenario's error, first —
on the console, in report.md and in the JUnit message — not a wall of "no data" check lines.

Real processes: the local stack starts for real, and its connector is given an option it does
not know, so it exits at start and the stack cannot serve the tunnel.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.run_cli import _print_result
from harness.runner import RunOptions, run_scenario
from harness.scenario import load_scenario

pytestmark = [pytest.mark.timeout(120)]

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "control-plane-outage.yaml"


async def test_a_stack_that_does_not_come_up_says_why_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = RunOptions(report_dir=tmp_path, connector_args=("--no-such-option",))
    report = await run_scenario(load_scenario(SCENARIO), options)
    assert report.verdict == "unknown" and report.exit_code == 2
    error = report.summary["run"]["error"]
    assert error.startswith("stack did not come up: ")
    assert "no-such-option" in error, error

    _print_result(report)
    console = capsys.readouterr().out
    header, _, rest = console.partition("\n")
    assert header.startswith("control-plane-outage: UNKNOWN")
    reason = "  run error: " + error.replace("\n", "\n    ")
    assert rest.startswith(reason + "\n"), console  # the reason comes first...
    tail = rest[len(reason) + 1 :].splitlines()  # ...then one line for the undecided checks
    checks = len(load_scenario(SCENARIO).checks)
    assert tail == [f"  [????] none of the {checks} checks was decided"], console

    markdown = (report.run_dir / "report.md").read_text().splitlines()
    assert markdown[0].endswith(": UNKNOWN")
    assert markdown[2] == f"**Run error: {error.splitlines()[0]}**"
    assert markdown[4] == "```" and "Error: No such option '--no-such-option'." in markdown
    assert "no data" not in "\n".join(markdown)

    suite = ET.parse(report.run_dir / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert cases[0].get("name") == "run"
    first = cases[0].find("error")
    assert first is not None and first.get("message", "").startswith(
        "run error: stack did not come up: "
    )
    for case in cases[1:]:
        undecided = case.find("error")
        assert undecided is not None
        assert undecided.get("message", "").startswith("run error: stack did not come up: ")
