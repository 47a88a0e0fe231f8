"""Child processes that are always cleaned up: start, signal, pause, stop, kill.

Each process runs in its own session (process group), so stopping it also stops anything it
spawned (for example ``mosquitto`` under ``outlast serve broker``). Each also dies with the
process that started it (``PR_SET_PDEATHSIG``), so a SIGKILLed ``outlast run`` leaves no orphan;
and a :class:`PidFile` lets the next run (or ``outlast stack down``) find and stop a stack whose
owner was killed on a system without that signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from reference.files import atomic_write
from reference.lifetime import die_with_parent


def outlast_argv(*args: str) -> list[str]:
    """argv that runs the ``outlast`` command of this very interpreter."""
    return [sys.executable, "-m", "harness", *args]


class ProcessExited(RuntimeError):
    """A managed process exited when it was expected to keep running."""


class ManagedProcess:
    """One child process with its output in ``log_path``.

    Use as ``async with ManagedProcess(...) as proc:``; leaving the block stops it (SIGTERM, then
    SIGKILL to the whole process group after ``stop_timeout`` seconds).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_timeout: float = 5.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self.paused = False
        self.on_start: Callable[[ManagedProcess], None] | None = None
        """Called after every (re)start, e.g. to record the new pid in a :class:`PidFile`."""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Start the process (again, if it had stopped)."""
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        parent = os.getpid()
        with open(self.log_path, "ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=lambda: die_with_parent(parent),
            )
        self.paused = False
        if self.on_start is not None:
            self.on_start(self)

    def _signal_group(self, sig: int) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the process only (not its group)."""
        if self.running and self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)

    def pause(self) -> None:
        """SIGSTOP the process group (the process keeps its sockets but answers nothing)."""
        self._signal_group(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT the process group."""
        self._signal_group(signal.SIGCONT)
        self.paused = False

    async def wait(self, timeout: float | None = None) -> int:
        """Wait for exit and return the exit code."""
        assert self._proc is not None, "process was never started"
        return await asyncio.wait_for(self._proc.wait(), timeout)

    async def kill(self) -> None:
        """SIGKILL the whole group, no grace."""
        if self._proc is None:
            return
        if self.paused:
            self.resume()
        self._signal_group(signal.SIGKILL)
        await self._proc.wait()

    async def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, wait up to ``timeout`` (default ``stop_timeout``), then SIGKILL the group."""
        if self._proc is None:
            return None
        if self.paused:
            self.resume()
        if self._proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._proc.wait(), timeout or self.stop_timeout)
            except TimeoutError:
                self._signal_group(signal.SIGKILL)
                await self._proc.wait()
        # Anything the child left behind in its group goes too.
        self._signal_group(signal.SIGKILL)
        return self._proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        """Last ``lines`` lines of the process output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_running(self) -> None:
        """Raise ProcessExited (with the log tail) if the process is not running."""
        if not self.running:
            raise ProcessExited(
                f"{self.name} exited with code {self.returncode}; last output "
                f"({self.log_path}):\n{self.log_tail()}"
            )

    async def __aenter__(self) -> ManagedProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it is gone:
    a pid with another start time is another process that reused the number."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if not fields or fields[0] == "Z":
        return None  # a zombie is gone for our purposes
    return int(fields[19])


class PidFile:
    """``<state_dir>/stack.pids``: the owner (the process running the stack) and the process
    group of every component, each with its start time so a reused pid is never signalled."""

    NAME = "stack.pids"

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / self.NAME

    def record(self, processes: Mapping[str, ManagedProcess]) -> None:
        """Write the owner (this process) and every running component, atomically."""
        me = os.getpid()
        entries = {
            name: {"pid": proc.pid, "start": process_start_time(proc.pid)}
            for name, proc in processes.items()
            if proc.pid is not None and proc.running
        }
        document = {"owner": {"pid": me, "start": process_start_time(me)}, "processes": entries}
        atomic_write(self.path, json.dumps(document, indent=2).encode() + b"\n")

    def _read(self) -> dict[str, object] | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def _alive(entry: object) -> bool:
        if not isinstance(entry, dict) or not isinstance(entry.get("pid"), int):
            return False
        start = process_start_time(entry["pid"])
        return start is not None and start == entry.get("start")

    def owner_alive(self) -> bool:
        """Whether the process that recorded this file still runs."""
        data = self._read()
        return data is not None and self._alive(data.get("owner"))

    def kill_leftovers(self) -> list[str]:
        """SIGKILL the process group of every recorded component that still runs (the owner
        is gone, or this is ``stack down``); remove the file. Returns the names killed."""
        data = self._read() or {}
        processes = data.get("processes")
        killed = []
        for name, entry in (processes if isinstance(processes, dict) else {}).items():
            if self._alive(entry):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(entry["pid"], signal.SIGKILL)
                killed.append(str(name))
        self.path.unlink(missing_ok=True)
        return sorted(killed)
