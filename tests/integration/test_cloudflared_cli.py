"""cloudflared's own CLI against the control plane: create, route dns, list, info, token, run
(with the credentials file it wrote, through the stack's edges), delete."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path

import httpx
import pytest

from harness.stack.cloudflared import BUNDLED, CloudflaredRun, write_cloudflared_origincert
from harness.stack.local import LocalStack
from harness.stack.process import ManagedProcess
from tests.integration.test_edge_support import eventually

pytestmark = [
    pytest.mark.timeout(150),
    pytest.mark.skipif(
        not os.access(BUNDLED, os.X_OK),
        reason=f"the real cloudflared binary is not at {BUNDLED} (CI has it)",
    ),
]


async def _cloudflared(stack: LocalStack, home: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(BUNDLED),
        "--origincert",
        str(home / "cert.pem"),
        "tunnel",
        "--api-url",
        f"{stack.api_url}/client/v4",
        *args,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_cloudflared_cli_manages_and_runs_a_tunnel(tmp_path: Path) -> None:
    async with (
        LocalStack(tmp_path / "stack") as stack,
        httpx.AsyncClient(trust_env=False, timeout=10) as client,
    ):
        home = tmp_path / "cfhome"
        home.mkdir()
        cert = write_cloudflared_origincert(stack.origincert, home / "cert.pem")
        assert cert.stat().st_mode & 0o777 == 0o600

        code, out = await _cloudflared(stack, home, "create", "cfd")
        assert code == 0, out
        assert "Created tunnel cfd with id" in out
        tunnel_id = out.rsplit("with id", 1)[1].split()[0]
        creds = home / f"{tunnel_id}.json"
        assert json.loads(creds.read_text())["TunnelID"] == tunnel_id

        code, out = await _cloudflared(stack, home, "route", "dns", "cfd", "cfd.example.com")
        assert code == 0 and "Added CNAME cfd.example.com" in out, out
        code, out = await _cloudflared(stack, home, "list")
        assert code == 0 and tunnel_id in out and " web " in out, out
        code, out = await _cloudflared(stack, home, "token", "cfd")
        assert code == 0, out
        token = json.loads(base64.b64decode(out.strip().splitlines()[-1]))
        assert token["t"] == tunnel_id

        # The file cloudflared wrote runs the tunnel through the stack's edges.
        run = CloudflaredRun(
            binary=BUNDLED,
            tunnel_id=tunnel_id,
            credentials_file=creds,
            origin_url=str(stack.origin_url),
            edge_links=tuple(stack.proxy_address(f"conn-{p}") for p in stack.topology.pops),
            edge_ca=stack.edge_ca_file,
            metrics="127.0.0.1:0",
            ha_connections=2,
        )
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
        async with ManagedProcess("cfd", run.argv(), tmp_path / "cfd.log", env=env):

            async def served() -> bool:
                got = await client.get(
                    stack.anycast_url + "/hi", headers={"Host": "cfd.example.com"}
                )
                return got.status_code == 200

            await eventually(served, timeout=30, interval=0.3)
            code, out = await _cloudflared(stack, home, "info", "cfd")
            assert code == 0 and "2026.8.2" in out, out

        code, out = await _cloudflared(stack, home, "delete", "-f", "cfd")
        assert code == 0, out
        assert not creds.exists()  # cloudflared removes the file of a deleted tunnel
        code, out = await _cloudflared(stack, home, "list")
        assert tunnel_id not in out, out
