"""The user's service as a container under Compose (issue 16, item 4), on a real Docker engine:
the http-server example's build context runs as the project's ``origin`` service, visitors reach
it through the tunnel during a control-plane outage with link drops, the origin container is
killed and restarted through Docker, and the SLA table counts the user's requests."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import httpx
import pytest

from harness.runner import RunOptions, run_scenario
from harness.scenario import load_scenario
from harness.stack.base import StackError
from harness.stack.compose import ComposeStack
from harness.stack.topology import Topology
from harness.stack.user_origin import UserOrigin

pytestmark = [pytest.mark.compose, pytest.mark.timeout(420)]
REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "examples" / "http-server" / "scenario.compose.yaml"


@pytest.fixture
def at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the scenario's build path is relative to where the run runs


async def test_a_built_user_image_survives_a_control_plane_outage(
    tmp_path: Path, at_repo_root: None
) -> None:
    report = await run_scenario(
        load_scenario(SCENARIO), RunOptions(backend="compose", report_dir=tmp_path)
    )
    summary = report.summary
    checks = {c["name"]: c for c in summary["checks"]}
    assert report.exit_code == 0, json.dumps(
        {"error": summary["run"].get("error"), "checks": checks}, indent=1
    )[:4000]
    sla = summary["sla"]
    assert sla["requests"] >= 200, sla
    # Failures only where the origin itself was down (the checks above say so): 7 s of ~33 s.
    assert sla["ok"] >= 180 and sla["failed"] < sla["requests"] / 3, sla
    # The kill was real: visitors saw the origin down (a check that fails on a no-op fault).
    assert checks["the killed origin is seen by visitors"]["passed"] is True
    assert summary["origin"]["kind"] == "build"
    assert summary["origin"]["url"] is None  # reachable only inside the project
    assert summary["origin"]["service_url"] == "http://origin:8080"
    # compose.run.yaml went with the run's secrets; its shape is test_compose_endpoints'.
    assert '"GET /index.html HTTP/1.1" 200' in _origin_log(report.run_dir)


def _origin_log(run_dir: Path) -> str:
    """The origin container's output, saved by ``down``."""
    return (run_dir / "stack" / "logs" / "origin.log").read_text()


async def test_an_image_with_a_command_is_served_and_a_failing_one_names_its_output(
    tmp_path: Path,
) -> None:
    # The offline base image has python3: a user's "image + command" without any build.
    ok = UserOrigin(
        image="outlast-base:bookworm",
        command="mkdir -p /tmp/s && echo hello-image > /tmp/s/hi.txt && "
        "exec python3 -m http.server {port} --bind 0.0.0.0 --directory /tmp/s",
        port=9000,
        health="/hi.txt",
    )
    stack = ComposeStack(tmp_path / "ok", dataclasses.replace(Topology(), origin=ok))
    async with stack:
        endpoints = stack.endpoints()
        assert endpoints["origin"]["service_url"] == "http://origin:9000"
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
            answer = await client.get(
                endpoints["visitor_url"] + "/hi.txt", headers={"Host": "app.example.com"}
            )
        assert answer.status_code == 200 and answer.text == "hello-image\n"
        await stack.pause("origin")
        assert await stack.container_status("origin") == "paused"
        await stack.resume("origin")
        await stack.wait_serving()

    broken = dataclasses.replace(ok, command="echo 'myapp: cannot read settings.toml' >&2; exit 3")
    failing = ComposeStack(tmp_path / "bad", dataclasses.replace(Topology(), origin=broken))
    with pytest.raises(StackError) as error:
        await failing.up()
    message = str(error.value)
    assert "exited with code 3" in message and "myapp: cannot read settings.toml" in message
    assert not any(failing.leftovers().values())
