"""Child processes that are always cleaned up: start, signal, pause, stop, kill.

Each process runs in its own session (process group), so stopping it also stops anything it
spawned (for example ``mosquitto`` under ``outlast serve broker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType


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
        with open(self.log_path, "ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.paused = False

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
