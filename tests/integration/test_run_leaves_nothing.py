"""A run leaves nothing behind (issue 21, items 4 and 7), with real processes.

* SIGKILL of ``outlast run`` mid-run: no stack process (nor mosquitto under the broker) is left
  within 5 s; ``outlast stack down --state-dir <run>/stack`` then finds the stack's pid file.
* A stack whose owner died without taking its processes along (a system without
  ``PR_SET_PDEATHSIG``, simulated here) is stopped by the next ``outlast run``.
* A finished run's report directory holds none of the secrets the stack made.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.runner import RunOptions, run_scenario
from harness.scenario import parse_scenario
from harness.stack.process import outlast_argv
from reference.connector.credentials import OriginCert, TunnelCredentials
from reference.tunnel_auth import derive_verifier

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

QUICK = """\
name: quick
description: Steady traffic for a few seconds, no fault.
duration: {duration}
checks:
  - name: no_misroute
"""


def process_start_time(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def descendants(root: int) -> dict[int, int | None]:
    """Every live process under ``root`` (children, grandchildren, ...) with its start time."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found: dict[int, int | None] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = process_start_time(pid)
                frontier.append(pid)
    return found


def still_alive(processes: dict[int, int | None]) -> dict[int, int | None]:
    return {pid: start for pid, start in processes.items() if process_start_time(pid) == start}


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"{what} within {timeout} s")


def test_sigkill_of_outlast_run_leaves_no_stack_process(tmp_path: Path) -> None:
    scenario = tmp_path / "quick.yaml"
    scenario.write_text(QUICK.format(duration="60s"))
    reports = tmp_path / "reports"
    run = subprocess.Popen(
        outlast_argv("run", str(scenario), "--report-dir", str(reports), "-q"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        journal = wait_for(lambda: next(reports.glob("*-quick/journal.jsonl"), None), 60, "run")
        wait_for(lambda: '"process":"visitor"' in journal.read_text(), 60, "no visitor traffic")
        state_dir = journal.parent / "stack"
        stack = descendants(run.pid)
        assert len(stack) >= 8, stack  # faultproxy, broker (+ mosquitto), cp, origin, 2 edges...
        run.send_signal(signal.SIGKILL)
        run.wait(5)
        killed_at = time.monotonic()
        wait_for(lambda: not still_alive(stack), 5, "stack processes left")
        print(
            f"{len(stack)} stack processes gone {time.monotonic() - killed_at:.2f} s after SIGKILL"
        )
    finally:
        if run.poll() is None:
            run.kill()
    recorded = json.loads((state_dir / "stack.pids").read_text())["processes"]
    assert {"broker", "controlplane", "edge-ams", "edge-fra", "connector-web"} <= set(recorded)
    down = subprocess.run(
        outlast_argv("stack", "down", "--state-dir", str(state_dir)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert down.returncode == 0, down.stderr
    assert "stopped" in down.stdout and "no stack" not in down.stdout, down.stdout
    assert sorted(p.name for p in state_dir.iterdir()) == ["logs"]


def test_the_next_run_stops_a_stack_whose_owner_was_killed(tmp_path: Path) -> None:
    """Without PR_SET_PDEATHSIG a component outlives its killed owner: the pid file names it."""
    from harness.stack.layout import reap_abandoned_stacks
    from harness.stack.process import PidFile

    state_dir = tmp_path / "reports" / "20260101T000000Z-old" / "stack"
    state_dir.mkdir(parents=True)
    (state_dir / "home").mkdir()
    (state_dir / "home" / "cert.pem").write_text("secret")
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        document = {
            "owner": {"pid": owner.pid, "start": process_start_time(owner.pid)},
            "processes": {"edge-ams": {"pid": orphan.pid, "start": process_start_time(orphan.pid)}},
        }
        (state_dir / PidFile.NAME).write_text(json.dumps(document))
        assert reap_abandoned_stacks(tmp_path / "reports") == []  # owner alive: a run in progress
        owner.kill()
        owner.wait()
        assert reap_abandoned_stacks(tmp_path / "reports") == [(state_dir, ["edge-ams"])]
        assert orphan.wait(5) == -signal.SIGKILL
        assert not (state_dir / "home").exists() and not (state_dir / PidFile.NAME).exists()
    finally:
        for proc in (owner, orphan):
            if proc.poll() is None:
                proc.kill()


async def test_a_finished_runs_report_directory_holds_no_secret(tmp_path: Path) -> None:
    secrets: dict[str, str] = {}

    def collect(state_dir: Path) -> None:
        """Every credential the stack made, read while it runs."""
        secrets["admin token"] = (state_dir / "controlplane" / "admin.token").read_text().strip()
        cert = OriginCert.load(state_dir / "home" / "cert.pem")
        secrets["api token"] = cert.api_token
        for path in (state_dir / "home").glob("*.json"):
            creds = TunnelCredentials.load(path)
            secret = creds.tunnel_secret
            secrets["tunnel secret"] = base64.b64encode(secret).decode()
            secrets["tunnel secret (hex)"] = secret.hex()
            secrets["verifier"] = derive_verifier(secret, creds.tunnel_id)
        for key in [state_dir / "controlplane" / "ca.key", *(state_dir / "pki").glob("*.key")]:
            body = [line for line in key.read_text().splitlines() if "-----" not in line]
            secrets[f"key {key.name}"] = max(body, key=len)
        for path in state_dir.rglob("*"):
            if path.is_file() and path.name in ("passwords", "broker.passwords"):
                secrets[f"broker file {path.name}"] = path.read_text().strip().splitlines()[0]

    def progress(message: str) -> None:
        if "stack up in" in message:
            collect(next((tmp_path / "reports").glob("*-quick")) / "stack")

    scenario = parse_scenario(QUICK.format(duration="3s"))
    report = await run_scenario(
        scenario, RunOptions(report_dir=tmp_path / "reports", progress=progress)
    )
    assert report.summary["run"]["status"] == "completed", report.summary["run"]
    assert {"admin token", "api token", "tunnel secret", "verifier"} <= set(secrets)
    assert any(name.startswith("key edge-") for name in secrets)
    leaks = []
    for path in report.run_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaks += [f"{name} in {path}" for name, s in secrets.items() if s.encode() in data]
    assert leaks == []
    assert (report.run_dir / "stack" / "logs" / "connector-web.log").is_file()  # logs stay
