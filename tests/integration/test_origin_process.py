"""`outlast serve origin` as a real process."""

from __future__ import annotations

from pathlib import Path

import httpx

from harness.stack.ports import free_port
from harness.stack.process import ManagedProcess, outlast_argv
from harness.stack.readiness import wait_http


async def test_origin_process_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    argv = outlast_argv("serve", "origin", "--name", "o-proc", "--listen", f"127.0.0.1:{port}")
    async with ManagedProcess("origin", argv, tmp_path / "origin.log") as proc:
        await wait_http(f"http://127.0.0.1:{port}/health", process=proc, timeout=30)
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.put(
                f"http://127.0.0.1:{port}/a", content=b"abc", headers={"X-Request-Id": "r9"}
            )
        assert response.json()["origin"] == "o-proc"
        assert response.headers["x-request-id"] == "r9"
        assert await proc.stop() == 0
    log = (tmp_path / "origin.log").read_text()
    assert '"event": "listening"' in log
