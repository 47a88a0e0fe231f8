"""Property-based chaos: Hypothesis-generated fault schedules, shrunk to a minimal reproduction.

``outlast explore`` (see ``docs/explore.md``) plays schedules drawn from an *envelope* against one
reused stack, judges each with the invariants, shrinks the first violation to the smallest
schedule that still fails, and writes it as an ordinary scenario file for ``outlast run``.
From Python or pytest: :func:`run_exploration`.
"""

from harness.explore.envelope import (
    Envelope,
    EnvelopeError,
    FaultRule,
    load_envelope,
    parse_envelope,
)
from harness.explore.explorer import (
    ExampleOutcome,
    ExplorationResult,
    ExploreOptions,
    Explorer,
    explore,
)
from harness.explore.invariants import DEFAULT_INVARIANTS, default_invariants
from harness.explore.pytest_entry import run_exploration
from harness.explore.schedule import PlannedFault, Schedule, admit, to_scenario
from harness.explore.strategies import planned_faults, schedules

__all__ = [
    "DEFAULT_INVARIANTS",
    "Envelope",
    "EnvelopeError",
    "ExampleOutcome",
    "ExplorationResult",
    "ExploreOptions",
    "Explorer",
    "FaultRule",
    "PlannedFault",
    "Schedule",
    "admit",
    "default_invariants",
    "explore",
    "load_envelope",
    "parse_envelope",
    "planned_faults",
    "run_exploration",
    "schedules",
    "to_scenario",
]
