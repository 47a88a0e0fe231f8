"""Helpers and fixtures for control-plane and tunnel-CLI tests: real processes, real mosquitto.

Import the fixtures into a test module with
``from tests.integration.controlplane_fixtures import *  # noqa: F403``
or use the helpers directly.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.stack.ports import free_port
from harness.stack.process import ManagedProcess, outlast_argv
from harness.stack.readiness import wait_http, wait_tcp
from reference.broker.auth import BrokerCredential, BrokerUsers, provision_broker_auth
from reference.broker.mosquitto import ACL_FILE_NAME, PASSWORD_FILE_NAME, write_auth_files

__all__ = [
    "Bootstrap",
    "CliResult",
    "ControlPlaneProcess",
    "MosquittoProcess",
    "admin",
    "bootstrap",
    "controlplane",
    "make_bootstrap",
    "outlast_cli",
]


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    def check(self) -> CliResult:
        assert self.code == 0, f"exit {self.code}\nstdout: {self.out}\nstderr: {self.err}"
        return self


async def outlast_cli(*args: str, home: Path, timeout: float = 60.0) -> CliResult:
    """Run ``outlast ARGS`` in a subprocess with ``OUTLAST_HOME=home``."""
    env = dict(os.environ)
    env["OUTLAST_HOME"] = str(home)
    for var in ("OUTLAST_API", "OUTLAST_API_TOKEN", "OUTLAST_ORIGINCERT"):
        env.pop(var, None)
    proc = await asyncio.create_subprocess_exec(
        *outlast_argv(*args),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())


class ControlPlaneProcess:
    """``outlast serve controlplane`` as a child process (restartable, same data dir)."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        *,
        broker: str | None = None,
        broker_credentials: Path | None = None,
        tunnel_limit: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        args = [
            "serve",
            "controlplane",
            "--data-dir",
            str(data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--broker-backoff-cap",
            "0.5",
        ]
        if broker:
            args += ["--broker", broker]
        if broker_credentials is not None:
            args += ["--broker-credentials", str(broker_credentials)]
        if tunnel_limit is not None:
            args += ["--tunnel-limit", str(tunnel_limit)]
        self.process = ManagedProcess("controlplane", outlast_argv(*args), log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir / "admin.token"

    @property
    def admin_token(self) -> str:
        return self.admin_token_file.read_text().strip()

    def log_text(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    async def start(self) -> None:
        await self.process.start()
        await wait_http(f"{self.url}/health", timeout=30.0, process=self.process)

    async def stop(self) -> None:
        await self.process.stop()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def metrics_text(self) -> str:
        async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
            return (await client.get(f"{self.url}/metrics")).text

    async def api(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        """One raw request to ``/client/v4{path}`` with a bearer token."""
        async with httpx.AsyncClient(trust_env=False, timeout=15.0) as client:
            return await client.request(
                method,
                f"{self.url}/client/v4{path}",
                headers={"Authorization": f"Bearer {token}"},
                **kwargs,
            )


@dataclass
class Bootstrap:
    """An account, zone and user created through the admin CLI."""

    cp: ControlPlaneProcess
    home: Path
    account: str
    zone: str
    email: str
    account_id: str
    zone_id: str
    user_id: str
    api_token: str
    extra: dict[str, Any] = field(default_factory=dict)

    async def tunnel(self, *args: str) -> CliResult:
        return await outlast_cli("tunnel", *args, home=self.home)

    async def login(self, *extra: str, token: str | None = None) -> CliResult:
        return await self.tunnel(
            "login",
            "--api",
            self.cp.url,
            "--token",
            token or self.api_token,
            "--zone",
            self.zone,
            *extra,
        )


async def admin(cp: ControlPlaneProcess, *args: str, home: Path) -> CliResult:
    return await outlast_cli(
        "controlplane",
        "--api",
        cp.url,
        "--admin-token-file",
        str(cp.admin_token_file),
        *args,
        home=home,
    )


async def make_bootstrap(
    cp: ControlPlaneProcess,
    home: Path,
    account: str = "acme",
    zone: str = "example.com",
    email: str = "alice@example.com",
) -> Bootstrap:
    await asyncio.to_thread(home.mkdir, parents=True, exist_ok=True, mode=0o700)
    result = (
        await admin(
            cp, "bootstrap", "--account", account, "--zone", zone, "--email", email, home=home
        )
    ).check()
    data = result.json
    return Bootstrap(
        cp,
        home,
        account,
        zone,
        email,
        data["account_id"],
        data["zone_id"],
        data["user_id"],
        data["api_token"],
    )


@pytest.fixture
async def controlplane(tmp_path: Path) -> AsyncIterator[ControlPlaneProcess]:
    """A control plane process without a broker."""
    cp = ControlPlaneProcess(tmp_path / "cp", tmp_path / "logs" / "controlplane.log")
    try:
        await cp.start()
        yield cp
    finally:
        await cp.stop()


@pytest.fixture
async def bootstrap(controlplane: ControlPlaneProcess, tmp_path: Path) -> Bootstrap:
    """Account ``acme``, zone ``example.com``, user alice (not logged in yet)."""
    return await make_bootstrap(controlplane, tmp_path / "home-alice")


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    return found


class MosquittoProcess:
    """A mosquitto broker on 127.0.0.1 with a generated config (restartable), anonymous access
    off: the Outlast users (``controlplane``, ``edge-ams``, ``edge-fra``) and their ACLs."""

    def __init__(self, state_dir: Path, *, persistence: bool = True) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        state_dir.mkdir(parents=True, exist_ok=True)
        self.auth = provision_broker_auth(state_dir / "auth", ["ams", "fra"])
        write_auth_files(state_dir, BrokerUsers.load(self.auth.users_file))
        config = state_dir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {state_dir}/{PASSWORD_FILE_NAME}\n"
            f"acl_file {state_dir}/{ACL_FILE_NAME}\n"
            f"persistence {'true' if persistence else 'false'}\n"
            f"persistence_location {state_dir}/\n"
            "log_dest stdout\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            # As root mosquitto would switch to `mosquitto`, who cannot read the 0600 files.
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.process = ManagedProcess(
            "mosquitto", [mosquitto_binary(), "-c", str(config)], state_dir / "mosquitto.log"
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def credentials_file(self, username: str) -> Path:
        return self.auth.credentials[username]

    def credential(self, username: str) -> BrokerCredential:
        return BrokerCredential.load(self.auth.credentials[username])

    async def start(self) -> None:
        await self.process.start()
        await wait_tcp("127.0.0.1", self.port, timeout=20.0, process=self.process)

    async def stop(self) -> None:
        await self.process.stop()

    async def __aenter__(self) -> MosquittoProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
