"""The anycast route table, sans-I/O: which PoPs are routed, and where a new connection goes.

Every method takes the current time as ``now`` (seconds on any monotonic clock); nothing here
reads a clock, sleeps or touches a socket. State changes are queued as :class:`RouteChange`
events and handed out by :meth:`RouteTable.changes`, so the caller decides how to log or count
them (the h11 pattern).

Each PoP carries two signals that both have to allow a route:

- **health** — ``announced`` → (a failed observation) ``failing`` (still routed: the withdrawal
  is propagating) → after ``convergence`` ``withdrawn`` → (a healthy observation) ``recovering``
  (not routed yet) → after ``announce_delay`` ``announced``. A healthy observation while
  ``failing`` cancels the withdrawal; a failed one while ``recovering`` cancels the announcement.
- **operator** — the same machine driven by the admin API: ``withdrawing`` → ``withdrawn`` after
  ``convergence``, ``announcing`` → ``announced`` after ``announce_delay``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple


class Phase(Enum):
    """Where a delayed route signal is: up, on its way down, down, on its way up."""

    UP = "up"
    LEAVING = "leaving"
    DOWN = "down"
    RETURNING = "returning"

    @property
    def routed(self) -> bool:
        return self in (Phase.UP, Phase.LEAVING)


#: Names of the phases as the health and operator signals call them.
HEALTH_STATES = {
    Phase.UP: "announced",
    Phase.LEAVING: "failing",
    Phase.DOWN: "withdrawn",
    Phase.RETURNING: "recovering",
}
OPERATOR_STATES = {
    Phase.UP: "announced",
    Phase.LEAVING: "withdrawing",
    Phase.DOWN: "withdrawn",
    Phase.RETURNING: "announcing",
}


class Transition(NamedTuple):
    """One phase change of a :class:`DelayedSignal`, at the time it took effect."""

    old: Phase
    new: Phase
    at: float


@dataclass
class DelayedSignal:
    """A route signal that follows its input late: down ``down_delay`` after the input went down,
    up ``up_delay`` after it came back. Starts up."""

    down_delay: float
    up_delay: float
    phase: Phase = Phase.UP
    since: float = 0.0

    def set(self, up: bool, now: float) -> list[Transition]:
        """Feed the input at ``now``; the phase changes it caused."""
        changes = self.advance(now)
        target: Phase | None = None
        if up and self.phase is Phase.LEAVING:
            target = Phase.UP
        elif up and self.phase is Phase.DOWN:
            target = Phase.RETURNING
        elif not up and self.phase is Phase.UP:
            target = Phase.LEAVING
        elif not up and self.phase is Phase.RETURNING:
            target = Phase.DOWN
        if target is not None:
            changes.append(self._move(target, now))
            changes.extend(self.advance(now))  # a zero delay completes at once
        return changes

    def advance(self, now: float) -> list[Transition]:
        """Complete a pending change whose delay has run out by ``now``."""
        if self.phase is Phase.LEAVING and now >= self.since + self.down_delay:
            return [self._move(Phase.DOWN, self.since + self.down_delay)]
        if self.phase is Phase.RETURNING and now >= self.since + self.up_delay:
            return [self._move(Phase.UP, self.since + self.up_delay)]
        return []

    def _move(self, target: Phase, at: float) -> Transition:
        transition = Transition(self.phase, target, at)
        self.phase, self.since = target, at
        return transition


class HealthResult(NamedTuple):
    """One health observation: a check, or a relay dial (``source``)."""

    ok: bool
    at: float
    source: str
    detail: str


class RouteChange(NamedTuple):
    """A state change of one PoP's signal. ``routed`` is the PoP's route after it;
    ``route_flipped`` says whether the change started or stopped routing to it."""

    pop: str
    signal: str  # "health" | "operator"
    old: str
    new: str
    at: float
    routed: bool
    route_flipped: bool


@dataclass(frozen=True)
class Region:
    """A group of visitors: the PoPs they reach, best first, and their share of connections."""

    name: str
    preference: tuple[str, ...]
    weight: float = 1.0


class Route(NamedTuple):
    """Where one new connection goes: its visitor region and PoP (None: nothing is routed)."""

    region: str
    pop: str | None


def default_regions(pops: list[str] | tuple[str, ...]) -> tuple[Region, ...]:
    """One region per PoP, named after it, preferring it and then the others in order."""
    return tuple(
        Region(name, (name, *(other for other in pops if other != name)), 1.0) for name in pops
    )


@dataclass
class _Pop:
    name: str
    health: DelayedSignal
    operator: DelayedSignal
    last_health: HealthResult | None = None
    changed_at: float = 0.0

    @property
    def routed(self) -> bool:
        return self.health.phase.routed and self.operator.phase.routed


class RouteTable:
    """The PoPs (in order), their route state, and the visitor regions (default: one per PoP,
    see :func:`default_regions`). ``announce_delay`` defaults to ``convergence``; ``seed``
    fixes the sequence of region draws; ``start`` is the time the table comes up (all routed)."""

    def __init__(
        self,
        pops: list[str] | tuple[str, ...],
        regions: tuple[Region, ...] | None = None,
        *,
        convergence: float = 1.0,
        announce_delay: float | None = None,
        seed: int = 0,
        start: float = 0.0,
    ) -> None:
        self.pops = tuple(pops)
        if not self.pops:
            raise ValueError("an anycast network needs at least one PoP")
        if len(set(self.pops)) != len(self.pops):
            raise ValueError(f"PoP names must be unique, got {list(self.pops)}")
        if convergence < 0:
            raise ValueError(f"convergence must be >= 0, got {convergence}")
        self.convergence = convergence
        self.announce_delay = convergence if announce_delay is None else announce_delay
        if self.announce_delay < 0:
            raise ValueError(f"announce_delay must be >= 0, got {self.announce_delay}")
        self.regions = default_regions(self.pops) if regions is None else tuple(regions)
        _check_regions(self.regions, self.pops)
        self._pops = {
            name: _Pop(
                name,
                DelayedSignal(self.convergence, self.announce_delay, since=start),
                DelayedSignal(self.convergence, self.announce_delay, since=start),
                changed_at=start,
            )
            for name in self.pops
        }
        self._changes: list[RouteChange] = []
        self._rng = random.Random(seed)
        self._now = start

    # ---- inputs ------------------------------------------------------------------------------

    def observe(
        self, pop: str, ok: bool, now: float, *, source: str = "health", detail: str = ""
    ) -> None:
        """Record one health observation (a check, or a relay dial that failed)."""
        now = self.advance(now)
        entry = self._pop(pop)
        entry.last_health = HealthResult(ok, now, source, detail)
        self._record(entry, "health", entry.health.set(ok, now))

    def withdraw(self, pop: str, now: float) -> None:
        """Operator withdrawal: the route goes away after ``convergence``."""
        now = self.advance(now)
        entry = self._pop(pop)
        self._record(entry, "operator", entry.operator.set(False, now))

    def announce(self, pop: str, now: float) -> None:
        """Undo an operator withdrawal: routed again after ``announce_delay`` (at once when the
        withdrawal had not taken effect yet)."""
        now = self.advance(now)
        entry = self._pop(pop)
        self._record(entry, "operator", entry.operator.set(True, now))

    def advance(self, now: float) -> float:
        """Complete every change due by ``now``; returns ``now`` (never earlier than before)."""
        now = max(now, self._now)
        self._now = now
        for entry in self._pops.values():
            self._record(entry, "health", entry.health.advance(now))
            self._record(entry, "operator", entry.operator.advance(now))
        return now

    # ---- outputs -----------------------------------------------------------------------------

    def choose(self, now: float, region_name: str | None = None) -> Route:
        """Draw a region by weight (or use ``region_name``: the same visitor trying again), then
        take its first routed PoP (then any routed PoP, as anycast would); ``pop`` is None when
        no PoP is routed at all."""
        self.advance(now)
        region = self._draw_region() if region_name is None else self._region(region_name)
        for name in (*region.preference, *self.pops):
            if self._pops[name].routed:
                return Route(region.name, name)
        return Route(region.name, None)

    def routed(self, pop: str, now: float) -> bool:
        """Whether new connections may go to ``pop`` at ``now``."""
        self.advance(now)
        return self._pop(pop).routed

    def changes(self) -> list[RouteChange]:
        """The state changes since the last call, oldest first."""
        drained, self._changes = self._changes, []
        return drained

    def snapshot(self, now: float) -> dict[str, Any]:
        """The table as plain data (for the admin API)."""
        now = self.advance(now)
        return {
            "convergence": self.convergence,
            "announce_delay": self.announce_delay,
            "pops": [self._pop_snapshot(entry, now) for entry in self._pops.values()],
            "regions": [
                {"name": r.name, "preference": list(r.preference), "weight": r.weight}
                for r in self.regions
            ],
        }

    def __contains__(self, pop: object) -> bool:
        return pop in self._pops

    # ---- internals ---------------------------------------------------------------------------

    def _pop(self, pop: str) -> _Pop:
        try:
            return self._pops[pop]
        except KeyError:
            raise KeyError(f"no PoP {pop!r} (have: {', '.join(self.pops)})") from None

    def _region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(f"no region {name!r} (have: {', '.join(r.name for r in self.regions)})")

    def _draw_region(self) -> Region:
        total = sum(r.weight for r in self.regions)
        point = self._rng.random() * total
        for region in self.regions:
            point -= region.weight
            if point < 0:
                return region
        return self.regions[-1]

    def _record(self, entry: _Pop, signal: str, transitions: list[Transition]) -> None:
        names = HEALTH_STATES if signal == "health" else OPERATOR_STATES
        other = entry.operator if signal == "health" else entry.health
        for old, new, at in transitions:
            routed = new.routed and other.phase.routed
            was_routed = old.routed and other.phase.routed
            entry.changed_at = at
            self._changes.append(
                RouteChange(
                    entry.name, signal, names[old], names[new], at, routed, routed != was_routed
                )
            )

    def _pop_snapshot(self, entry: _Pop, now: float) -> dict[str, Any]:
        health = entry.last_health
        return {
            "name": entry.name,
            "state": HEALTH_STATES[entry.health.phase],
            "operator": OPERATOR_STATES[entry.operator.phase],
            "routed": entry.routed,
            "seconds_since_change": round(now - entry.changed_at, 3),
            "last_health": None
            if health is None
            else {
                "ok": health.ok,
                "source": health.source,
                "detail": health.detail,
                "seconds_ago": round(now - health.at, 3),
            },
        }


def _check_regions(regions: tuple[Region, ...], pops: tuple[str, ...]) -> None:
    if not regions:
        raise ValueError("at least one region is needed")
    names = [r.name for r in regions]
    if len(set(names)) != len(names):
        raise ValueError(f"region names must be unique, got {names}")
    for region in regions:
        if not region.preference:
            raise ValueError(f"region {region.name!r} prefers no PoP")
        unknown = [p for p in region.preference if p not in pops]
        if unknown:
            raise ValueError(
                f"region {region.name!r} names unknown PoP {unknown[0]!r} (have: {', '.join(pops)})"
            )
        if len(set(region.preference)) != len(region.preference):
            raise ValueError(f"region {region.name!r} lists a PoP twice")
        if not region.weight > 0:
            raise ValueError(f"region {region.name!r} weight must be > 0, got {region.weight}")
