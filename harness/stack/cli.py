"""``outlast stack up | status | down``: the embedded stack from the command line.

``up`` starts a supervisor process (``outlast stack supervise``) that owns the stack and tears it
down on SIGTERM; ``up`` returns once the stack serves visitors, ``down`` signals the supervisor
and waits. ``up --foreground`` runs the stack in this terminal until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import httpx

from harness.stack.layout import remove_secrets
from harness.stack.local import LocalStack
from harness.stack.process import PidFile, outlast_argv
from harness.stack.topology import Topology
from harness.stack.user_origin import UserOrigin

if TYPE_CHECKING:
    from harness.stack.compose import ComposeStack

DEFAULT_STATE_DIR = Path(".outlast/stack")

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE_DIR,
    show_default=True,
    help="Where the stack keeps its data, logs and stack.json.",
)


#: ``--origin-*`` options: UserOrigin field -> option name.
ORIGIN_OPTIONS = {
    "command": "--origin-command",
    "url": "--origin-url",
    "health": "--origin-health",
    "image": "--origin-image",
    "build": "--origin-build",
    "port": "--origin-port",
}


def _topology(pops: str, tunnels: int, origin: dict[str, Any] | None = None) -> Topology:
    try:
        topology = Topology.numbered(
            tuple(p.strip() for p in pops.split(",") if p.strip()), tunnels
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    given = {k: v for k, v in (origin or {}).items() if v is not None}
    if not set(given) - {"health"}:
        return topology
    try:
        user = UserOrigin(**given)
    except ValueError as exc:
        raise click.UsageError(f"--origin-*: {exc}") from None
    return dataclasses.replace(topology, origin=user)


def _origin_of(options: dict[str, Any]) -> dict[str, Any]:
    """The ``--origin-*`` values among a command's keyword arguments (by UserOrigin field)."""
    return {field: options.get(f"origin_{field}") for field in ORIGIN_OPTIONS}


def _origin_args(origin: dict[str, Any]) -> list[str]:
    """The ``--origin-*`` arguments that give ``origin`` again (for the supervisor)."""
    return [
        arg
        for field, option in ORIGIN_OPTIONS.items()
        if origin.get(field) is not None
        for arg in (option, str(origin[field]))
    ]


def origin_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--origin-command``, ``--origin-url``, ``--origin-health``; Compose: ``--origin-image``,
    ``--origin-build``, ``--origin-port``."""
    for option in (
        click.option(
            "--origin-port",
            type=int,
            default=None,
            help="Compose: the port the origin container listens on (8080).",
        ),
        click.option(
            "--origin-build",
            default=None,
            help="Compose: a directory with a Dockerfile, built and run as the origin.",
        ),
        click.option("--origin-image", default=None, help="Compose: an image run as the origin."),
        click.option(
            "--origin-health", default="/", show_default=True, help="Health path of the origin."
        ),
        click.option(
            "--origin-url", default=None, help="Your running service (e.g. http://127.0.0.1:8080)."
        ),
        click.option(
            "--origin-command",
            default=None,
            help="Your service, run by /bin/sh instead of the echo origin; {port} = its port.",
        ),
    ):
        command = option(command)
    return command


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def _read_stack_json(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / "stack.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{state_dir / 'stack.json'} is unreadable: {exc}") from None
    return data if isinstance(data, dict) else None


def _print_endpoints(data: dict[str, Any]) -> None:
    click.echo(f"stack up in {data.get('startup_seconds')} s  (state: {data['state_dir']})")
    click.echo(f"  control plane API  {data['api_url']}")
    click.echo(
        f"  fault proxy        {data['faultproxy']['url']}  "
        f"proxies: {', '.join(sorted(data['faultproxy']['proxies']))}"
    )
    click.echo(
        f"  edge network (anycast) visitors {data['visitor_url']}  dns {data['dns']}  "
        f"control {data['anycast']['control_url']}"
    )
    for pop, info in data["pops"].items():
        click.echo(f"  edge {pop:<4}         visitors {info['visitor_url']}  dns {info['dns']}")
    for tunnel in data["tunnels"]:
        click.echo(f"  tunnel {tunnel['name']:<10} {tunnel['hostname']} -> {tunnel['id']}")
    origin = data.get("origin") or {}
    if origin.get("kind", "reference") != "reference":
        shown = origin.get("command") or origin.get("url") or "ingress rules"
        click.echo(f"  origin ({origin['kind']})  {shown}")
    first = data["tunnels"][0]
    click.echo(f"try: curl -H 'Host: {first['hostname']}' {data['visitor_url']}/hello")
    click.echo(f"details: {Path(data['state_dir']) / 'stack.json'}")


@click.group(name="stack")
def stack_group() -> None:
    """Run the embedded reference stack (processes on 127.0.0.1)."""


@stack_group.command(name="up")
@state_dir_option
@click.option("--pops", default="ams,fra", show_default=True, help="Comma-separated PoP names.")
@click.option("--tunnels", default=1, show_default=True, help="Number of named tunnels.")
@click.option("--seed", default=0, show_default=True, help="Seed of the fault proxy.")
@click.option(
    "--backend",
    type=click.Choice(["local", "compose"]),
    default="local",
    show_default=True,
    help="Processes on 127.0.0.1, or Docker Compose (images from `outlast compose build`).",
)
@click.option("--foreground", is_flag=True, help="Stay attached; Ctrl-C tears the stack down.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for readiness.")
@origin_options
def up_command(
    state_dir: Path,
    pops: str,
    tunnels: int,
    seed: int,
    backend: str,
    foreground: bool,
    timeout: float,
    **origin_options: Any,
) -> None:
    """Start broker, control plane, edges, origin, fault proxy and connectors."""
    origin = _origin_of(origin_options)
    topology = _topology(pops, tunnels, origin)  # validate before starting anything
    problem = topology.origin.backend_problem(backend) if topology.origin else None
    if problem is not None:
        raise click.UsageError(problem)
    existing = _read_stack_json(state_dir)
    if existing and _pid_alive(existing.get("supervisor_pid")):
        raise click.ClickException(
            f"a stack is already running in {state_dir}; `outlast stack down --state-dir "
            f"{state_dir}` first, or choose another --state-dir"
        )
    (state_dir / "stack.json").unlink(missing_ok=True)
    args = [
        "--state-dir",
        str(state_dir),
        "--pops",
        pops,
        "--tunnels",
        str(tunnels),
        "--seed",
        str(seed),
        "--timeout",
        str(timeout),
        "--backend",
        backend,
        *_origin_args(origin),
    ]
    if foreground:
        sys.exit(_supervise(state_dir, topology, seed, timeout, backend))
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / "supervisor.log"
    with open(log, "ab") as log_file:
        supervisor = subprocess.Popen(
            outlast_argv("stack", "supervise", *args),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
    try:
        while True:
            data = _read_stack_json(state_dir)
            if data and data.get("status") == "up":
                _print_endpoints(data)
                return
            code = supervisor.poll()
            if code is not None:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
                raise click.ClickException(f"the stack did not come up (exit {code}):\n{tail}")
            time.sleep(0.05)
    except (KeyboardInterrupt, click.ClickException):
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
            supervisor.wait(timeout=60)
        raise


@stack_group.command(name="supervise", hidden=True)
@state_dir_option
@click.option("--pops", default="ams,fra")
@click.option("--tunnels", default=1)
@click.option("--seed", default=0)
@click.option("--timeout", default=60.0)
@click.option("--backend", default="local")
@origin_options
def supervise_command(
    state_dir: Path,
    pops: str,
    tunnels: int,
    seed: int,
    timeout: float,
    backend: str,
    **origin_options: Any,
) -> None:
    """Own a stack until SIGTERM/SIGINT (started by `stack up`)."""
    topology = _topology(pops, tunnels, _origin_of(origin_options))
    sys.exit(_supervise(state_dir, topology, seed, timeout, backend))


def _make_stack(
    backend: str, state_dir: Path, topology: Topology, seed: int, timeout: float
) -> LocalStack | ComposeStack:
    if backend == "compose":
        from harness.stack.compose import ComposeStack

        return ComposeStack(state_dir, topology, seed=seed, ready_timeout=max(timeout, 180.0))
    return LocalStack(state_dir, topology, seed=seed, ready_timeout=timeout)


def _supervise(
    state_dir: Path, topology: Topology, seed: int, timeout: float, backend: str = "local"
) -> int:
    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            stack = _make_stack(backend, state_dir, topology, seed, timeout)
        except Exception as exc:
            click.echo(f"cannot build a {backend} stack: {exc}", err=True)
            return 2
        up = asyncio.create_task(stack.up())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({up, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not up.done():
            up.cancel()  # LocalStack.up tears down what it started when cancelled
            with contextlib.suppress(asyncio.CancelledError):
                await up
            click.echo("interrupted while starting; everything started was stopped", err=True)
            return 130
        if up.exception() is not None:
            click.echo(f"stack failed to start: {up.exception()}", err=True)
            return 2
        stack.write_stack_json(status="up", supervisor_pid=os.getpid())
        data = _read_stack_json(state_dir)
        if data is not None and sys.stdout.isatty():
            _print_endpoints(data)
        await stopper
        await stack.down()
        (state_dir / "stack.json").unlink(missing_ok=True)
        return 0

    return asyncio.run(main())


@stack_group.command(name="status")
@state_dir_option
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def status_command(state_dir: Path, output: str) -> None:
    """Show whether the stack and each component are up, and where they listen."""
    data = _read_stack_json(state_dir)
    if data is None:
        click.echo(f"no stack in {state_dir}")
        sys.exit(3)
    for info in data["components"].values():
        if info.get("pid"):  # containers (compose) have no host pid: keep their recorded state
            info["running"] = _pid_alive(info["pid"])
    serving: dict[str, int | str] = {}
    served_via: dict[str, str] = {}
    entries = {"anycast": data["visitor_url"]} | {
        pop: info["visitor_url"] for pop, info in data["pops"].items()
    }
    for entry, url in entries.items():
        for tunnel in data["tunnels"]:
            key = f"{tunnel['hostname']}@{entry}"
            try:
                r = httpx.get(
                    f"{url}/", headers={"Host": tunnel["hostname"]}, timeout=2.0, trust_env=False
                )
                serving[key] = r.status_code
                if via := r.headers.get("X-Outlast-Tunnel-Pop"):
                    served_via[key] = via
            except httpx.HTTPError as exc:
                serving[key] = type(exc).__name__
    data["serving"] = serving
    data["served_via"] = served_via  # the PoP whose tunnel connection answered
    if output == "json":
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"stack in {state_dir}: supervisor "
        f"{'running' if _pid_alive(data.get('supervisor_pid')) else 'gone'}"
    )
    for name, info in sorted(data["components"].items()):
        click.echo(
            f"  {name:<20} {'running' if info['running'] else 'stopped':<8} pid {info['pid']}"
        )
    for key, status in serving.items():
        via = f"  (connection at {served_via[key]})" if key in served_via else ""
        click.echo(f"  visitor {key:<30} {status}{via}")


@stack_group.command(name="down")
@state_dir_option
@click.option("--timeout", default=30.0, show_default=True)
def down_command(state_dir: Path, timeout: float) -> None:
    """Stop the stack and everything it started."""
    data = _read_stack_json(state_dir)
    if data is None:
        pids = PidFile(state_dir)
        if not pids.path.is_file():
            click.echo(f"no stack in {state_dir}")
            return
        if pids.owner_alive():
            raise click.ClickException(
                f"the stack in {state_dir} belongs to a running process (see {pids.path}); "
                "stop that `outlast run` (Ctrl-C) instead"
            )
        killed = pids.kill_leftovers()  # left by a killed `outlast run`
        remove_secrets(state_dir)
        suffix = f" (killed leftovers: {', '.join(killed)})" if killed else ""
        click.echo(f"stack in {state_dir} stopped{suffix}; its credentials were removed")
        return
    supervisor = data.get("supervisor_pid")
    if supervisor and _pid_alive(supervisor):
        os.kill(int(supervisor), signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.05)
    # Whatever survived (supervisor killed, timeout): kill the component process groups.
    leftovers = [n for n, c in data["components"].items() if _pid_alive(c.get("pid"))]
    for name in leftovers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(data["components"][name]["pid"], signal.SIGKILL)
    if data.get("backend") == "compose":
        leftovers += _reap_compose_projects()
    (state_dir / "stack.json").unlink(missing_ok=True)
    suffix = f" (killed leftovers: {', '.join(leftovers)})" if leftovers else ""
    click.echo(f"stack in {state_dir} stopped{suffix}")


def _reap_compose_projects() -> list[str]:
    """Remove Compose projects whose owner died (a killed supervisor or `outlast run`)."""
    from harness.compose.engine import EngineError, docker_client
    from harness.compose.owner import reap_orphaned_projects

    try:
        client = docker_client()
    except EngineError as exc:
        click.echo(f"could not look for orphaned compose projects: {exc}", err=True)
        return []
    return [f"compose project {p}" for p in reap_orphaned_projects(client)]
