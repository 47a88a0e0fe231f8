"""The invariants every explored schedule must satisfy: existing checks, with their bounds.

They are ordinary scenario checks, so the minimal reproduction written as a scenario file is
judged by exactly the same rules when it is replayed with ``outlast run``. An undecided check
(nothing to judge in this schedule) is not a violation; only ``passed: false`` is.

``failover_within`` is the one invariant fitted to each schedule (:func:`checks_for`): it is
only asked of a fault that makes one PoP unusable while nothing else disturbs the data plane
(no fault on another PoP or on the connector/origin, extended by a grace period; control-plane
and broker outages do not count, a named tunnel does not need them). With two faults taking
both PoPs away at once, no failover is possible, and asking for one would be a false alarm.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.scenario.schema import CheckSpec

if TYPE_CHECKING:
    from harness.explore.schedule import PlannedFault

DEFAULT_INVARIANTS: tuple[dict[str, Any], ...] = (
    {"name": "dns_unchanged"},
    {"name": "reconnect_within", "params": {"bound": "10s"}},
    {"name": "no_misroute"},
    {"name": "no_corruption"},
    {
        "name": "control_plane_independent",
        "params": {"grace": "5s", "exclude_routes": ["*audit*", "*metrics*"]},
    },
    {"name": "ha_restored"},
    {"name": "failover_within", "params": {"bound": "10s"}},
)
"""DNS unchanged; service and full HA back within 10 s of every heal; no misrouted or corrupted
response; no control-plane request during a fault or 5 s after it; full HA spread over PoPs at
the end; full HA away from a PoP made unusable within 10 s of the fault's start."""

FAILOVER = "failover_within"
POP_UNUSABLE_FAULTS: tuple[str, ...] = (
    "link_down",
    "link_blackhole",
    "link_reset",
    "pop_outage",
    "kill",
    "stop",
    "pause",
)
"""Fault kinds that make a PoP unusable when aimed at ``conn-<pop>``, ``edge-<pop>`` or the PoP
(latency or bandwidth leave it usable; a restart is over at once)."""
DATA_PLANE_INDEPENDENT: tuple[str, ...] = ("controlplane_outage", "broker_outage")
ISOLATION_GRACE = 5.0
"""Real seconds after another fault ends during which it still disturbs (reconnect backoff,
address cool-down, an edge starting up)."""


def default_invariants() -> tuple[CheckSpec, ...]:
    """:data:`DEFAULT_INVARIANTS` as scenario check entries."""
    return tuple(CheckSpec.model_validate(item) for item in DEFAULT_INVARIANTS)


def pop_of(target: str | None, pops: Sequence[str]) -> str | None:
    """The PoP a fault target belongs to: ``conn-<pop>``, ``edge-<pop>`` or ``<pop>`` itself."""
    for pop in pops:
        if target in (pop, f"conn-{pop}", f"edge-{pop}"):
            return pop
    return None


def isolated_pop_faults(
    faults: Sequence[PlannedFault],
    pops: Sequence[str],
    *,
    kinds: Sequence[str],
    bound: float,
    grace: float,
    step: float,
) -> list[PlannedFault]:
    """Faults of ``kinds`` that take one PoP away with nothing else disturbing the data plane
    from their start until ``bound`` later (other faults count ``grace`` past their end).

    All times here are scenario seconds."""
    if len(pops) < 2:
        return []
    chosen = []
    for fault in faults:
        pop = pop_of(fault.target, pops)
        if fault.fault not in kinds or pop is None:
            continue
        start, deadline = fault.at, fault.at + bound
        disturbed = False
        for other in faults:
            if other is fault or other.fault in DATA_PLANE_INDEPENDENT:
                continue
            if pop_of(other.target, pops) == pop:
                continue
            other_start, other_end = other.window(step)
            if other_start <= deadline and other_end + grace >= start:
                disturbed = True
                break
        if not disturbed:
            chosen.append(fault)
    return chosen


def checks_for(
    invariants: Iterable[CheckSpec],
    faults: Sequence[PlannedFault],
    pops: Sequence[str],
    *,
    time_scale: float,
    step: float,
) -> tuple[CheckSpec, ...]:
    """The invariants as they apply to one schedule (see module docstring).

    Each ``failover_within`` entry becomes one entry per judged (fault kind, target) pair,
    scoped with ``faults``/``targets`` and labelled ``failover_within <kind> <target>``; it is
    left out when the schedule has no fault it can judge. A pair is judged only if every fault
    of the schedule with that kind and target is isolated. Other checks are kept as they are.
    """
    out: list[CheckSpec] = []
    for spec in invariants:
        if spec.name != FAILOVER:
            out.append(spec)
            continue
        params = spec.params.model_dump(mode="json", exclude_none=True)
        kinds = params.get("faults") or POP_UNUSABLE_FAULTS
        wanted_targets = params.get("targets")
        bound = float(params["bound"]) / time_scale
        grace = ISOLATION_GRACE / time_scale
        isolated = isolated_pop_faults(
            faults, pops, kinds=kinds, bound=bound, grace=grace, step=step
        )
        pairs: list[tuple[str, str]] = []
        for fault in isolated:
            assert fault.target is not None
            pair = (fault.fault, fault.target)
            if wanted_targets is not None and fault.target not in wanted_targets:
                continue
            same = [f for f in faults if (f.fault, f.target) == pair]
            if pair not in pairs and all(f in isolated for f in same):
                pairs.append(pair)
        for kind, target in pairs:
            out.append(
                CheckSpec.model_validate(
                    {
                        "name": FAILOVER,
                        "params": {**params, "faults": [kind], "targets": [target]},
                        "expect": spec.expect,
                        "label": f"{spec.label or FAILOVER} {kind} {target}",
                    }
                )
            )
    return tuple(out)


@dataclass(frozen=True)
class Violation:
    """One check that failed on an example."""

    check: str
    detail: str


def violations(checks: Iterable[Mapping[str, Any]]) -> list[Violation]:
    """The failed checks of a run summary's ``checks`` list (undecided ones are not failures)."""
    return [Violation(str(c["name"]), str(c["detail"])) for c in checks if c["passed"] is False]


def undecided(checks: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names of the checks that could not decide."""
    return [str(c["name"]) for c in checks if c["passed"] is None]
