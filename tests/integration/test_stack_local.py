"""The embedded stack: up serves visitors through the tunnel; down/failure/SIGINT leave nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.stack.local import LocalStack
from harness.stack.process import outlast_argv
from harness.stack.topology import Topology

pytestmark = pytest.mark.timeout(180)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def _port_free(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
        except OSError:
            return False
    return True


def _addresses(data: dict[str, Any]) -> list[str]:
    found = [
        data["broker"],
        data["api_url"].removeprefix("http://"),
        data["origin_url"].removeprefix("http://"),
    ]
    for pop in data["pops"].values():
        found += [pop["visitor_url"].removeprefix("http://"), pop["tunnel"]]
    found += [p["listen"] for p in data["faultproxy"]["proxies"].values()]
    return found


def _assert_nothing_left(data: dict[str, Any]) -> None:
    deadline = time.monotonic() + 10
    pids = [c["pid"] for c in data["components"].values() if c["pid"]]
    if data.get("supervisor_pid"):
        pids.append(data["supervisor_pid"])
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    assert [p for p in pids if _alive(p)] == []
    busy = [a for a in _addresses(data) if not _port_free(a)]
    assert busy == []


def _outlast(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        outlast_argv(*args), capture_output=True, text=True, timeout=timeout, check=False
    )


def test_stack_up_serves_origin_through_tunnel_and_down_leaves_nothing(tmp_path: Path) -> None:
    state = tmp_path / "stack"
    up = _outlast("stack", "up", "--state-dir", str(state))
    assert up.returncode == 0, up.stderr + up.stdout
    assert "visitors" in up.stdout
    data = json.loads((state / "stack.json").read_text())
    assert data["status"] == "up"
    assert set(data["faultproxy"]["proxies"]) == set(Topology().links)
    try:
        tunnel = data["tunnels"][0]
        for pop, info in data["pops"].items():
            r = httpx.get(
                f"{info['visitor_url']}/hello",
                headers={"Host": tunnel["hostname"], "X-Request-Id": f"req-{pop}"},
                trust_env=False,
                timeout=10,
            )
            assert r.status_code == 200, r.text
            assert r.headers["X-Origin-Name"] == "origin"
            assert r.headers["X-Request-Id"] == f"req-{pop}"
        status = _outlast("stack", "status", "--state-dir", str(state), "-o", "json")
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert all(c["running"] for c in report["components"].values())
        assert set(report["serving"].values()) == {200}
    finally:
        down = _outlast("stack", "down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert "killed leftovers" not in down.stdout
    assert not (state / "stack.json").exists()
    _assert_nothing_left(data)


def test_failed_up_tears_down_what_it_started(tmp_path: Path) -> None:
    """A connector that cannot start makes `up` fail; everything started before is stopped."""

    async def scenario() -> dict[str, Any]:
        stack = LocalStack(tmp_path / "stack", connector_args=("--no-such-flag",), ready_timeout=20)
        with pytest.raises(Exception, match="connector-web exited"):
            await stack.up()
        return stack.endpoints()

    import asyncio

    data = asyncio.run(scenario())
    assert "faultproxy" in data["components"] and "edge-ams" in data["components"]
    assert not any(c["running"] for c in data["components"].values())
    _assert_nothing_left(data)


def test_sigint_during_up_leaves_nothing(tmp_path: Path) -> None:
    state = tmp_path / "stack"
    proc = subprocess.Popen(
        outlast_argv("stack", "up", "--state-dir", str(state), "--foreground"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Interrupt once components have started but before the stack is ready.
    deadline = time.monotonic() + 30
    logs = state / "logs"
    while time.monotonic() < deadline and not (logs / "edge-ams.log").exists():
        time.sleep(0.02)
    assert (logs / "edge-ams.log").exists(), "stack never started its edges"
    pids_seen: set[int] = set()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted while starting" in err
    # No process of ours may remain: look for any process whose command line uses this state dir.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(state) in cmdline and _alive(int(entry.name)):
                pids_seen.add(int(entry.name))
    assert pids_seen == set()


def test_toxiproxy_server_on_path_is_used_instead_of_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `toxiproxy-server` on PATH serves the stack's links (here a shim that records its
    Toxiproxy-style flags, then runs our server: the stack only speaks the HTTP API to it)."""
    import asyncio
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "toxiproxy-called"
    shim = bin_dir / "toxiproxy-server"
    shim.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {marker}\n'
        'while [ $# -gt 0 ]; do case "$1" in -host) h=$2; shift 2;; -port) p=$2; shift 2;;'
        " *) shift;; esac; done\n"
        f'exec {sys.executable} -m harness serve faultproxy --listen "$h:$p"\n'
    )
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.delenv("TOXIPROXY_URL", raising=False)

    async def scenario() -> list[str]:
        async with LocalStack(tmp_path / "stack") as stack:
            return stack.processes["faultproxy"].argv

    argv = asyncio.run(scenario())
    assert argv[0] == str(shim)
    assert marker.read_text().split()[:4] == ["-host", "127.0.0.1", "-port", argv[4]]
