"""A SIGKILLed `outlast run --backend compose` leaves its project running; the owner labels let
the next compose run (and `outlast stack down`) find it and remove it. The owner check itself
needs no engine."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.compose.owner import (
    OWNER_PID_LABEL,
    PROJECT_LABEL,
    owner_alive,
    owner_labels,
    reap_orphaned_projects,
)
from harness.stack.process import outlast_argv

REPO = Path(__file__).resolve().parents[2]


def test_owner_labels_name_a_live_process_and_not_a_dead_one() -> None:
    assert owner_alive(owner_labels())
    child = subprocess.Popen(["sleep", "30"])
    labels = owner_labels(child.pid)
    assert owner_alive(labels)
    child.kill()
    child.wait()
    assert not owner_alive(labels)
    assert not owner_alive({**owner_labels(), "org.outlast.owner-boot": "another-boot"})
    assert not owner_alive({**owner_labels(), "org.outlast.owner-start": "1"})  # reused pid


def _project_of(client: object, pid: int) -> str | None:
    found = client.containers.list(  # type: ignore[attr-defined]
        filters={"label": f"{OWNER_PID_LABEL}={pid}", "status": "running"}
    )
    return found[0].labels[PROJECT_LABEL] if found else None


def _left(client: object, project: str) -> dict[str, list[str]]:
    label = {"label": f"{PROJECT_LABEL}={project}"}
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=label)],  # type: ignore[attr-defined]
        "networks": [n.name for n in client.networks.list(filters=label)],  # type: ignore[attr-defined]
        "volumes": [v.name for v in client.volumes.list(filters=label)],  # type: ignore[attr-defined]
    }


@pytest.mark.compose
@pytest.mark.timeout(400)
def test_a_project_left_by_a_sigkilled_run_is_removed_by_the_next_reap(tmp_path: Path) -> None:
    from harness.compose.engine import docker_client

    client = docker_client()
    log = (tmp_path / "run.log").open("wb")
    run = subprocess.Popen(
        outlast_argv(
            "run",
            "--backend",
            "compose",
            "--report-dir",
            str(tmp_path / "reports"),
            str(REPO / "scenarios" / "control-plane-outage.yaml"),
        ),
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        project = None
        while project is None and time.monotonic() < deadline and run.poll() is None:
            project = _project_of(client, run.pid)
            time.sleep(1.0)
        assert project is not None, (tmp_path / "run.log").read_text()[-2000:]
        time.sleep(5.0)  # let `compose up` get further
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the run and its compose CLI, no teardown
        run.wait()
    time.sleep(2.0)
    assert _left(client, project)["containers"], "the killed run left nothing (no bug to fix?)"
    assert project in reap_orphaned_projects(client)
    assert _left(client, project) == {"containers": [], "networks": [], "volumes": []}
