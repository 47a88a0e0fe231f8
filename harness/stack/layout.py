"""Where a stack keeps its user's files and how its published ports are reached.

Both backends (``LocalStack``, ``ComposeStack``) lay out their state directory the same way and
publish every port on 127.0.0.1, so the paths, URLs, ``stack.json`` and the async context manager
live here once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from harness.stack.process import PidFile
from reference.files import atomic_write

HOST = "127.0.0.1"

KEPT_AFTER_TEARDOWN = frozenset({"logs", "stack.json", "supervisor.log"})
"""What :func:`remove_secrets` leaves in a state directory: logs and where things listened.
Everything else (cert.pem, tunnel credentials, the admin token, CA and edge keys, broker
passwords, broker and edge data holding verifiers) is a live credential."""


def remove_secrets(state_dir: Path) -> list[str]:
    """Delete everything but :data:`KEPT_AFTER_TEARDOWN` from a stopped stack's state
    directory, so that a report directory holding it is safe to publish. Returns what is
    left that could not be removed (empty when all went)."""
    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        return []
    left = []
    for entry in sorted(state_dir.iterdir()):
        if entry.name in KEPT_AFTER_TEARDOWN:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        if entry.exists() or entry.is_symlink():
            left.append(str(entry))
    return left


def address(port: int) -> str:
    """``127.0.0.1:PORT``: every published port is on the loopback address."""
    return f"{HOST}:{port}"


def reap_abandoned_stacks(report_dir: Path) -> list[tuple[Path, list[str]]]:
    """Stop the stacks that killed runs left under ``report_dir`` (``<run>/stack*/stack.pids``
    whose owner is gone) and remove their secrets. Returns ``(state_dir, killed names)``."""
    reaped = []
    for pid_path in sorted(Path(report_dir).glob(f"*/stack*/{PidFile.NAME}")):
        pids = PidFile(pid_path.parent)
        if pids.owner_alive():
            continue  # a run in progress (another terminal, a parallel CI job)
        killed = pids.kill_leftovers()
        remove_secrets(pid_path.parent)
        reaped.append((pid_path.parent, killed))
    return reaped


class StackLayout:
    """Paths under ``state_dir`` and URLs of the ports in ``ports`` (a mixin for stacks)."""

    state_dir: Path
    ports: dict[str, int]

    async def up(self) -> None:
        raise NotImplementedError

    async def down(self) -> None:
        raise NotImplementedError

    def endpoints(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def home(self) -> Path:
        """``OUTLAST_HOME`` of the stack's user: cert.pem and tunnel credentials live here."""
        return self.state_dir / "home"

    @property
    def broker_auth_dir(self) -> Path:
        """The broker's users file and each client's broker credentials (all mode 0600)."""
        return self.state_dir / "broker-auth"

    @property
    def origincert(self) -> Path:
        return self.home / "cert.pem"

    @property
    def broker_ca_file(self) -> Path:
        """CA certificate of the broker's TLS listener (its key is never kept)."""
        return self.state_dir / "pki" / "broker-ca.pem"

    @property
    def edge_ca_file(self) -> Path:
        return self.state_dir / "pki" / "edge-ca.pem"

    @property
    def admin_token_file(self) -> Path:
        return self.state_dir / "controlplane" / "admin.token"

    @property
    def api_url(self) -> str:
        return f"http://{address(self.ports['controlplane'])}"

    @property
    def faultproxy_url(self) -> str:
        return f"http://{address(self.ports['faultproxy'])}"

    def visitor_url(self, pop: str) -> str:
        return f"http://{address(self.ports[f'edge-{pop}-visitor'])}"

    def pop_metrics_url(self, pop: str) -> str:
        return f"http://{address(self.ports[f'edge-{pop}-metrics'])}/metrics"

    def write_stack_json(self, **extra: Any) -> Path:
        """Write ``stack.json`` (endpoints plus ``extra`` keys) atomically."""
        path = self.state_dir / "stack.json"
        data = {**self.endpoints(), **extra}
        atomic_write(path, json.dumps(data, indent=2).encode() + b"\n")
        return path

    async def __aenter__(self) -> Self:
        await self.up()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.down()
