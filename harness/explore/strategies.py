"""Hypothesis strategies for fault schedules inside an envelope.

Built from the envelope's fault rules, which come from the scenario fault library
(``FAULT_SPECS``: target kind, duration rule, typed parameters) and the stack's topology
(links, components, PoPs). Everything shrinks towards simpler schedules: fewer faults, the
earlier rules and targets of the envelope, earlier starts, shorter durations, first parameter
choices.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from harness.explore.envelope import Envelope, FaultRule
from harness.explore.schedule import PlannedFault, Schedule, admit


def planned_faults(rule: FaultRule, envelope: Envelope) -> st.SearchStrategy[PlannedFault]:
    """One fault allowed by ``rule``: a target, a duration, a start, parameter choices."""
    step = envelope.step
    horizon = envelope.horizon_steps
    targets = rule.expand_targets(envelope.stack)
    target: st.SearchStrategy[str | None] = st.sampled_from(targets) if targets else st.none()
    params: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
        {key: st.sampled_from(choices) for key, choices in rule.param_choices().items()}
    )
    if rule.duration is None:
        length: st.SearchStrategy[int | None] = st.none()
    else:
        shortest, longest = envelope.duration_steps(rule)
        length = st.integers(shortest, longest)

    @st.composite
    def build(draw: st.DrawFn) -> PlannedFault:
        chosen_target = draw(target)
        steps = draw(length)
        at = draw(st.integers(0, horizon - (steps if steps is not None else 1)))
        return PlannedFault.make(
            rule.fault,
            chosen_target,
            at * step,
            None if steps is None else steps * step,
            draw(params),
        )

    return build()


def schedules(envelope: Envelope) -> st.SearchStrategy[Schedule]:
    """Valid schedules of ``envelope`` (drawn lists repaired by :func:`admit`)."""
    fewest, most = envelope.faults_per_schedule
    one = st.one_of([planned_faults(rule, envelope) for rule in envelope.faults])
    return st.lists(one, min_size=fewest, max_size=most).map(lambda drawn: admit(drawn, envelope))
