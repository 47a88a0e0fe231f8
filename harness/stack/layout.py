"""Where a stack keeps its user's files and how its published ports are reached.

Both backends (``LocalStack``, ``ComposeStack``) lay out their state directory the same way and
publish every port on 127.0.0.1, so the paths, URLs, ``stack.json`` and the async context manager
live here once.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from reference.files import atomic_write

HOST = "127.0.0.1"


def address(port: int) -> str:
    """``127.0.0.1:PORT``: every published port is on the loopback address."""
    return f"{HOST}:{port}"


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
    def origincert(self) -> Path:
        return self.home / "cert.pem"

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
