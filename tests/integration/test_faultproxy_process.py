"""``outlast serve faultproxy`` as a real process: config file, seed, traffic, clean stop."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from harness.faultproxy import FaultProxyClient
from harness.faultproxy.testing import echo_server
from harness.stack.ports import free_port
from harness.stack.process import ManagedProcess, outlast_argv
from harness.stack.readiness import wait_http


async def test_serve_faultproxy_process(tmp_path: Path) -> None:
    api_port, proxy_port = free_port(), free_port()
    async with echo_server() as echo_port:
        config = tmp_path / "populate.json"
        config.write_text(
            json.dumps(
                [
                    {
                        "name": "echo",
                        "listen": f"127.0.0.1:{proxy_port}",
                        "upstream": f"127.0.0.1:{echo_port}",
                    },
                ]
            )
        )
        argv = outlast_argv(
            "serve",
            "faultproxy",
            "--listen",
            f"127.0.0.1:{api_port}",
            "--seed",
            "7",
            "--config",
            str(config),
        )
        async with ManagedProcess("faultproxy", argv, tmp_path / "faultproxy.log") as proc:
            url = f"http://127.0.0.1:{api_port}"
            await wait_http(f"{url}/version", timeout=30, process=proc)
            async with FaultProxyClient(url) as client:
                proxy = await client.get_proxy("echo")
                assert proxy.listen == f"127.0.0.1:{proxy_port}" and proxy.enabled
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
                writer.write(b"through a process")
                assert await asyncio.wait_for(reader.readexactly(17), 10) == b"through a process"
                writer.close()
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait(timeout=15) == 0
        log = (tmp_path / "faultproxy.log").read_text()
        assert '"seed": 7' in log and "fault proxy API listening" in log


async def test_busy_api_port_fails_with_a_clear_message(tmp_path: Path) -> None:
    blocker = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        argv = outlast_argv("serve", "faultproxy", "--listen", f"127.0.0.1:{port}")
        async with ManagedProcess("faultproxy", argv, tmp_path / "fp.log") as proc:
            assert await proc.wait(timeout=30) != 0
        log = (tmp_path / "fp.log").read_text()
        assert f"cannot listen on 127.0.0.1:{port}" in log
    finally:
        blocker.close()
