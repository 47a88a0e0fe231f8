"""Fault schedules: what one exploration example plays, and how it becomes a scenario.

A schedule is a short list of planned faults, with times in scenario seconds from the start of
the envelope's horizon. :func:`admit` turns any drawn list into a valid schedule (no two faults on
the same thing at once, at most ``max_overlap`` active together) by dropping, in time order, the
faults that would break a rule — a deterministic repair, so shrinking a drawn list shrinks the
schedule. :func:`to_scenario` makes an ordinary :class:`~harness.scenario.Scenario` of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.explore.envelope import Envelope
from harness.explore.invariants import checks_for
from harness.scenario.durations import format_duration
from harness.scenario.schema import Scenario, StackSpec, TimelineEntry


def _seconds(value: float) -> float:
    return round(float(value), 3)


@dataclass(frozen=True)
class PlannedFault:
    """One fault of a schedule: ``at``/``duration`` in scenario seconds from the horizon start."""

    fault: str
    target: str | None
    at: float
    duration: float | None
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def make(
        cls,
        fault: str,
        target: str | None,
        at: float,
        duration: float | None,
        params: Mapping[str, Any] | None = None,
    ) -> PlannedFault:
        return cls(
            fault,
            target,
            _seconds(at),
            None if duration is None else _seconds(duration),
            tuple(sorted((params or {}).items())),
        )

    def window(self, step: float) -> tuple[float, float]:
        """``[start, end)``; an instantaneous fault occupies one step (its effect lasts)."""
        length = self.duration if self.duration is not None else step
        return self.at, self.at + length

    def resources(self, stack: StackSpec) -> frozenset[str]:
        """What the fault acts on; two faults on a common resource must not overlap."""
        if self.fault == "pop_outage" and self.target:
            return frozenset({f"conn-{self.target}", f"edge-{self.target}"})
        if self.fault == "controlplane_outage":
            links = [link for link in stack.links if link.endswith("-api") or link == "cp-broker"]
            return frozenset({"controlplane", *links})
        if self.fault == "broker_outage":
            return frozenset({"broker", *(link for link in stack.links if "broker" in link)})
        return frozenset({self.target or self.fault})

    def label(self) -> str:
        """``link_down conn-ams at 3s for 5s (mode=links)``."""
        text = f"{self.fault} {self.target}" if self.target else self.fault
        text += f" at {format_duration(self.at)}"
        if self.duration is not None:
            text += f" for {format_duration(self.duration)}"
        if self.params:
            text += " (" + ", ".join(f"{k}={v}" for k, v in self.params) + ")"
        return text

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"fault": self.fault, "at": self.at}
        if self.target is not None:
            data["target"] = self.target
        if self.duration is not None:
            data["for"] = self.duration
        if self.params:
            data["params"] = dict(self.params)
        return data


@dataclass(frozen=True)
class Schedule:
    """The faults of one example, in time order."""

    faults: tuple[PlannedFault, ...]
    dropped: int = field(default=0, compare=False)

    def key(self) -> str:
        """Canonical text: equal schedules have equal keys (used to remember outcomes)."""
        return json.dumps([f.to_data() for f in self.faults], sort_keys=True)

    def __len__(self) -> int:
        return len(self.faults)

    def end(self, step: float) -> float:
        """Scenario seconds from the horizon start until the last fault's window ends."""
        return max((f.window(step)[1] for f in self.faults), default=0.0)

    def label(self) -> str:
        return "; ".join(f.label() for f in self.faults) or "(no faults)"

    def size(self) -> tuple[int, float, float]:
        """Smaller is simpler: fewer faults, then less faulted time, then earlier starts."""
        return (
            len(self.faults),
            round(sum(f.duration or 0.0 for f in self.faults), 3),
            round(sum(f.at for f in self.faults), 3),
        )


def max_active(windows: Iterable[tuple[float, float]]) -> int:
    """Most windows active at one instant (half-open windows)."""
    spans = list(windows)
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    active = best = 0
    for _, delta in events:  # ends sort before starts at the same time
        active += delta
        best = max(best, active)
    return best


def admit(drawn: Iterable[PlannedFault], envelope: Envelope) -> Schedule:
    """The valid schedule made of ``drawn`` (see module docstring for the rules)."""
    step = envelope.step
    kept: list[PlannedFault] = []
    dropped = 0
    for fault in sorted(drawn, key=lambda f: (f.at, f.fault, f.target or "")):
        start, end = fault.window(step)
        mine = fault.resources(envelope.stack)
        overlapping = [
            other for other in kept if other.window(step)[0] < end and start < other.window(step)[1]
        ]
        clash = any(mine & other.resources(envelope.stack) for other in overlapping)
        too_many = (
            max_active([o.window(step) for o in overlapping] + [(start, end)])
            > envelope.max_overlap
        )
        if clash or too_many:
            dropped += 1
            continue
        kept.append(fault)
    return Schedule(tuple(kept), dropped)


def to_scenario(
    schedule: Schedule,
    envelope: Envelope,
    *,
    name: str,
    seed: int,
    time_scale: float | None = None,
    description: str = "",
) -> Scenario:
    """The scenario that plays ``schedule`` after the envelope's lead-in and settles after it.

    The lead-in and settle time are real seconds, so in scenario seconds they depend on the
    time scale; the written scenario carries its time scale, so ``outlast run`` replays it alike.
    The checks are the envelope's invariants fitted to the schedule
    (:func:`harness.explore.invariants.checks_for`).
    """
    scale = time_scale or envelope.time_scale
    lead = _seconds(envelope.lead_in / scale)
    timeline = [
        TimelineEntry.model_validate({**fault.to_data(), "at": _seconds(lead + fault.at)})
        for fault in schedule.faults
    ]
    duration = _seconds(lead + schedule.end(envelope.step) + envelope.settle / scale)
    return Scenario(
        name=name,
        description=description,
        seed=seed,
        time_scale=scale,
        stack=envelope.stack,
        traffic=envelope.traffic,
        timeline=tuple(timeline),
        duration=duration,
        checks=checks_for(
            envelope.invariants,
            schedule.faults,
            envelope.stack.pops,
            time_scale=scale,
            step=envelope.step,
        ),
    )
