"""Parameters shared by checks: scoping to a tunnel/hostname/PoP and selecting fault windows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.journal.history import FaultWindow, History, Operation
from harness.journal.records import VISITOR_FUNCTIONS
from harness.scenario.faults import FAULT_KINDS


class CheckParams(BaseModel):
    """Scope common to every check: restrict it to one tunnel, tunnel kind, hostname or PoP."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tunnel: str | None = Field(default=None, description="only this tunnel (by name)")
    tunnel_kind: Literal["named", "legacy"] | None = Field(
        default=None, description="only named or only legacy tunnels"
    )
    hostname: str | None = Field(default=None, description="only this visitor hostname")
    pop: str | None = Field(default=None, description="only operations through this edge PoP")


class FaultScopedParams(CheckParams):
    """Checks that look at fault windows can restrict them to some fault kinds and targets."""

    faults: tuple[str, ...] | None = Field(default=None, description="fault kinds (default all)")
    targets: tuple[str, ...] | None = Field(default=None, description="fault targets (default all)")

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for kind in value or ():
            if kind not in FAULT_KINDS:
                raise ValueError(f'unknown fault "{kind}" (known: {", ".join(FAULT_KINDS)})')
        return value


def tunnel_in_scope(history: History, tunnel: str | None, params: CheckParams) -> bool:
    """Whether a tunnel (``None`` = unknown) falls in the check's tunnel scope."""
    if params.tunnel is not None and tunnel != params.tunnel:
        return False
    if params.tunnel_kind is not None:
        return tunnel is not None and history.tunnel_kind(tunnel) == params.tunnel_kind
    return True


def scoped_operations(
    history: History,
    params: CheckParams,
    functions: Sequence[str] | None = VISITOR_FUNCTIONS,
) -> list[Operation]:
    """Operations of ``functions`` (default: visitor traffic) inside the check's scope."""
    selected = []
    for op in history.ops(functions):
        if params.hostname is not None and op.hostname != params.hostname:
            continue
        if params.pop is not None and op.pop != params.pop:
            continue
        if not tunnel_in_scope(history, history.tunnel_of(op), params):
            continue
        selected.append(op)
    return selected


def scoped_tunnels(history: History, params: CheckParams) -> list[str]:
    """Tunnel names in scope, from the run metadata (else from the operations seen)."""
    names = history.tunnel_names()
    if params.hostname is not None:
        owner = history.tunnel_for_hostname(params.hostname)
        names = [n for n in names if n == owner]
    return [n for n in names if tunnel_in_scope(history, n, params)]


def selected_faults(history: History, params: FaultScopedParams) -> list[FaultWindow]:
    """Fault windows matching the ``faults``/``targets`` filters (applied ones only)."""
    return [
        w
        for w in history.faults
        if (params.faults is None or w.fault in params.faults)
        and (params.targets is None or w.target in params.targets)
    ]
