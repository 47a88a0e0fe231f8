"""The user's service as the stack's ``origin`` component (issue 16, item 3), on real processes:
``python3 -m http.server`` behind the tunnel, faulted like any component, its whole process group
gone after teardown; a command that does not start names itself and its last output (exit 2)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import httpx
import pytest

from harness.run_cli import _print_result
from harness.runner import RunOptions, run_scenario
from harness.scenario import parse_scenario
from harness.stack.local import LocalStack
from harness.stack.topology import Topology
from harness.stack.user_origin import UserOrigin

pytestmark = [pytest.mark.timeout(120)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


async def _get(url: str, path: str = "/hello.txt") -> int | str:
    async with httpx.AsyncClient(timeout=3.0, trust_env=False) as client:
        try:
            response = await client.get(url + path, headers={"Host": "app.example.com"})
        except httpx.HTTPError as exc:
            return type(exc).__name__
    return response.text if response.status_code == 200 else response.status_code


async def test_http_server_origin_is_a_component_and_leaves_nothing(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "hello.txt").write_text("hello from http.server\n")
    # A helper in the background (``sleep``) shares the origin's process group: it must go too.
    command = f"sleep 300 & exec python3 -m http.server {{port}} --bind 127.0.0.1 -d {site}"
    origin = UserOrigin(command=command, health="/hello.txt")
    topology = dataclasses.replace(Topology(), origin=origin)
    stack = LocalStack(tmp_path / "stack", topology)
    async with stack:
        url = stack.endpoints()["visitor_url"]
        assert stack.endpoints()["origin"]["kind"] == "command"
        assert await _get(url) == "hello from http.server\n"
        assert "origin" in stack.topology.components
        group = stack.processes["origin"].pid
        assert group is not None

        await stack.kill("origin")
        assert await _get(url) == 502  # the connector cannot reach the origin: the edge says so
        await stack.start("origin")
        await stack.wait_serving(topology.tunnels[0])
        assert await _get(url) == "hello from http.server\n"

        await stack.restart("origin")
        await stack.wait_serving(topology.tunnels[0])
        assert await _get(url) == "hello from http.server\n"
        group = stack.processes["origin"].pid
        assert group is not None
        members = [p for p in os.listdir("/proc") if p.isdigit() and _in_group(int(p), group)]
        assert len(members) >= 2, members  # the shell's python and its background sleep
    log = (tmp_path / "stack" / "logs" / "origin.log").read_text()
    assert '"GET /hello.txt HTTP/1.1" 200' in log
    assert not any(_alive(int(pid)) for pid in members)  # zombies at most, until reaped


def _in_group(pid: int, group: int) -> bool:
    try:
        return os.getpgid(pid) == group
    except ProcessLookupError:
        return False


def _pid_files(report_dir: Path) -> list[Path]:
    return list(report_dir.glob("*/stack/stack.pids"))


BROKEN = """\
name: broken-origin
stack:
  origin:
    command: "echo 'myapp: cannot read settings.toml' >&2; exit 3"
traffic:
  requests: [{path: /}]
duration: 5s
checks:
  - name: no_corruption
"""


async def test_an_origin_that_does_not_start_names_its_command_and_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = await run_scenario(parse_scenario(BROKEN), RunOptions(report_dir=tmp_path))
    assert report.exit_code == 2
    error = report.summary["run"]["error"]
    assert error.startswith("stack did not come up: origin command \"echo 'myapp:"), error
    assert "exited with code 3" in error and "myapp: cannot read settings.toml" in error
    _print_result(report)
    console = capsys.readouterr().out.splitlines()
    assert console[1].startswith("  run error: stack did not come up: origin command"), console
    assert not _pid_files(tmp_path)  # every component stopped
