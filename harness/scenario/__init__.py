"""Scenarios: the schema, the YAML loader with located errors, and the fault vocabulary.

See ``docs/scenarios.md``. (The runner that plays a timeline lives elsewhere.)
"""

from harness.scenario.durations import Duration, format_duration, parse_duration
from harness.scenario.faults import FAULT_KINDS, FAULT_SPECS, FaultKind, FaultParams, FaultSpec
from harness.scenario.loader import (
    ScenarioError,
    ScenarioIssue,
    load_scenario,
    parse_scenario,
    save_scenario,
    scenario_files,
)
from harness.scenario.schema import (
    CheckSpec,
    ClockSpec,
    Scenario,
    SloSpec,
    StackSpec,
    TimelineEntry,
    TrafficMix,
    TrafficSpec,
    TunnelEntry,
)

__all__ = [
    "FAULT_KINDS",
    "FAULT_SPECS",
    "CheckSpec",
    "ClockSpec",
    "Duration",
    "FaultKind",
    "FaultParams",
    "FaultSpec",
    "Scenario",
    "ScenarioError",
    "ScenarioIssue",
    "SloSpec",
    "StackSpec",
    "TimelineEntry",
    "TrafficMix",
    "TrafficSpec",
    "TunnelEntry",
    "format_duration",
    "load_scenario",
    "parse_duration",
    "parse_scenario",
    "save_scenario",
    "scenario_files",
]
