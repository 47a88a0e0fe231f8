"""The slow-client limits as flags of `outlast serve edge` and `outlast serve controlplane`:
given on the command line they bound the real listeners; bad values are refused by name."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.stack.ports import free_port
from harness.stack.process import ManagedProcess, outlast_argv
from harness.stack.readiness import wait_http
from reference.config_signing import load_or_create_signing_key
from reference.controlplane.cli import serve_command as serve_controlplane
from reference.edge.cli import serve_command as serve_edge
from reference.files import atomic_write
from reference.pki import create_ca, issue_certificate

pytestmark = pytest.mark.timeout(90)
HOST = "127.0.0.1"
FLAGS = ("--header-timeout", "1", "--idle-timeout", "5", "--max-connections", "2")
DEFAULT_HEADER_TIMEOUT = 10.0


async def _stalled_headers_answer(port: int) -> tuple[float, bytes]:
    reader, writer = await asyncio.open_connection(HOST, port)
    started = time.monotonic()
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return time.monotonic() - started, answer


async def _third_connection_answer(port: int) -> bytes:
    held = [await asyncio.open_connection(HOST, port) for _ in range(2)]
    await asyncio.sleep(0.2)
    reader, writer = await asyncio.open_connection(HOST, port)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    for _, w in held:
        w.close()
    return answer


async def _check_listener(port: int) -> None:
    seconds, answer = await _stalled_headers_answer(port)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    # --header-timeout 1 took effect: cut well before the 10 s default would have.
    assert seconds < DEFAULT_HEADER_TIMEOUT - 2, seconds
    assert (await _third_connection_answer(port)).startswith(b"HTTP/1.1 503 ")


async def test_control_plane_flags_bound_the_api_listener(tmp_path: Path) -> None:
    port = free_port()
    argv = outlast_argv(
        "serve", "controlplane", "--data-dir", str(tmp_path / "cp"), "--listen", f"{HOST}:{port}"
    )
    async with ManagedProcess("controlplane", [*argv, *FLAGS], tmp_path / "cp.log") as process:
        await process.start()
        await wait_http(f"http://{HOST}:{port}/health", timeout=30, process=process)
        await _check_listener(port)


async def test_edge_flags_bound_the_visitor_listener(tmp_path: Path) -> None:
    ca = create_ca("test CA")
    leaf = issue_certificate(ca, "edge-ams", ip_addresses=(HOST,))
    atomic_write(tmp_path / "edge.pem", leaf.cert_pem)
    atomic_write(tmp_path / "edge.key", leaf.key_pem, mode=0o600)
    load_or_create_signing_key(tmp_path / "config.key", tmp_path / "config.pub")
    visitor, metrics = free_port(), free_port()
    argv = outlast_argv(
        "serve", "edge", "--pop", "ams",
        "--tunnel-listen", f"{HOST}:{free_port()}", "--visitor-listen", f"{HOST}:{visitor}",
        "--dns-listen", f"{HOST}:{free_port()}", "--metrics-listen", f"{HOST}:{metrics}",
        "--broker", f"{HOST}:{free_port()}",  # nobody there: the edge serves without it
        "--cache-dir", str(tmp_path / "cache"),
        "--tls-cert", str(tmp_path / "edge.pem"), "--tls-key", str(tmp_path / "edge.key"),
        "--config-key", str(tmp_path / "config.pub"),
    )  # fmt: skip
    async with ManagedProcess("edge-ams", [*argv, *FLAGS], tmp_path / "edge.log") as process:
        await process.start()
        await wait_http(f"http://{HOST}:{metrics}/metrics", timeout=30, process=process)
        await _check_listener(visitor)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--header-timeout", "0"), "--header-timeout"),
        (("--idle-timeout", "-1"), "--idle-timeout"),
        (("--body-timeout", "nan"), "--body-timeout"),
        (("--max-connections", "0"), "--max-connections"),
        (("--header-timeout", "80"), "--header-timeout"),  # above the 75 s idle timeout
    ],
)
def test_bad_limit_values_are_refused_naming_the_flag(args: tuple[str, str], named: str) -> None:
    cp_args = ["--data-dir", "/nonexistent/cp", "--listen", f"{HOST}:1"]
    result = CliRunner().invoke(serve_controlplane, [*args, *cp_args])
    assert result.exit_code == 2, result.output
    assert named in result.output, result.output
    if args[1] in ("0", "-1"):  # range errors come before the edge's missing options
        result = CliRunner().invoke(serve_edge, list(args))
        assert result.exit_code == 2, result.output
        assert named in result.output, result.output
