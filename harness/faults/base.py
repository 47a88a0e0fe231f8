"""The fault interface: every fault is ``inject`` then ``heal`` against a running stack.

A fault names its kind (``link_blackhole``), its target (a link, a component, a PoP, a tunnel)
and parameters. ``heal`` undoes exactly what ``inject`` did and is safe to call twice, so the
runner can undo every fault at the end of a run whatever happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from harness.faultproxy.client import FaultProxyClient
from harness.stack.base import Stack


class FaultError(RuntimeError):
    """A fault could not be injected or healed."""


@dataclass
class FaultContext:
    """What faults act on: the stack, its fault proxy, and the credentials to manage it."""

    stack: Stack
    faultproxy: FaultProxyClient
    api_url: str
    admin_token_file: str
    tunnels: dict[str, str] = field(default_factory=dict)  # tunnel name -> id
    email: str = "sre@example.com"
    home: str = ""  # OUTLAST_HOME of the stack's user (cert.pem, credentials)
    origincert: str = ""
    zone: str = "example.com"
    user_tokens: dict[str, str] = field(default_factory=dict, repr=False)
    """API tokens issued during the run (by ``token_rollover``), by email. Memory only: never
    journaled or logged; the management probe logs in again with them."""


class Fault(Protocol):
    """One injected fault."""

    kind: ClassVar[str]
    target: str
    params: dict[str, Any]

    async def inject(self, ctx: FaultContext) -> None:
        """Break the target."""

    async def heal(self, ctx: FaultContext) -> None:
        """Undo :meth:`inject` (idempotent)."""


FAULT_KINDS: dict[str, type[Fault]] = {}


def register(cls: type[Fault]) -> type[Fault]:
    """Class decorator adding a fault kind to :data:`FAULT_KINDS`."""
    FAULT_KINDS[cls.kind] = cls
    return cls


def make_fault(kind: str, target: str, params: dict[str, Any] | None = None) -> Fault:
    """Build the fault ``kind`` on ``target``; unknown kinds name the known ones."""
    # Importing the modules registers their fault kinds.
    from harness.faults import credentials, links, outages, processes, swarm  # noqa: F401

    try:
        cls = FAULT_KINDS[kind]
    except KeyError:
        raise FaultError(
            f"unknown fault {kind!r}; known faults: {', '.join(sorted(FAULT_KINDS))}"
        ) from None
    return cls(target, dict(params or {}))  # type: ignore[call-arg]
