"""The exploration envelope: which fault schedules ``outlast explore`` may generate.

An envelope names the fault kinds allowed (with target globs, a duration range and parameter
choices), how many faults a schedule holds and how many may overlap, the time they fit in, the
stack and traffic, and the invariants (checks) every example must satisfy. It is YAML, validated
like a scenario: every problem is reported with file, line and field. See ``docs/explore.md``.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails

from harness.explore.invariants import default_invariants
from harness.scenario.durations import Duration, format_duration
from harness.scenario.faults import FAULT_SPECS, FaultKind, FaultSpec
from harness.scenario.loader import ScenarioError, ScenarioIssue, format_field, parse_located
from harness.scenario.schema import (
    SCENARIO_NAME_PATTERN,
    CheckSpec,
    StackSpec,
    StrictModel,
    TrafficMix,
    TrafficSpec,
    custom_error,
    raise_errors,
)

DEFAULT_ENVELOPE = "default_envelope.yaml"

PERSISTENT_FAULTS: dict[str, str] = {
    "token_rollover": "it rolls the user's API token for good",
    "credential_revocation": "it deletes the tunnel, revoking its credentials for good",
}
"""Fault kinds that change persistent state by design: a reset between examples cannot undo
them, so every later example would test a different system."""

SWARM_FAULTS: dict[str, str] = {
    kind: "it acts on swarm nodes and tasks, and `outlast explore` runs the local stack"
    for kind in ("node_down", "node_drain", "task_kill", "network_partition")
}
"""Orchestrator faults (harness/faults/swarm.py): not explorable on the local stack yet."""

EXPLORE_TRAFFIC = TrafficSpec(
    rate=10,
    mix=TrafficMix(get=6, post=3, ws=1),
    body_size=1024,
    timeout=5.0,
    dns_interval=0.5,
    metrics_interval=0.5,
)


class EnvelopeError(ScenarioError):
    """An envelope file is invalid; ``issues`` lists every problem, located."""


def _as_pair(value: Any) -> Any:
    """``5s`` -> ``[5s, 5s]``; a two-item list stays; anything else is left to validation."""
    return [value, value] if isinstance(value, str | int | float) else value


class FaultRule(StrictModel):
    """One fault kind the envelope allows: targets (globs), duration range, parameter choices."""

    fault: FaultKind
    targets: tuple[str, ...] | None = Field(
        default=None, description="globs over the stack's links/components/PoPs/tunnels"
    )
    duration: tuple[Duration, Duration] | None = Field(
        default=None,
        validation_alias="for",
        serialization_alias="for",
        description="[shortest, longest] scenario seconds (one value: fixed)",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="parameter -> one value or a list of values to pick"
    )

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        if isinstance(data.get("targets"), str):
            data["targets"] = [data["targets"]]
        if "for" in data:
            data["for"] = _as_pair(data["for"])
        return data

    @model_validator(mode="after")
    def _rules_of_the_fault(self) -> FaultRule:
        spec = self.spec
        errors: list[InitErrorDetails] = []
        if self.fault in SWARM_FAULTS:
            errors.append(
                custom_error(
                    ("fault",),
                    "swarm_only",
                    f"{self.fault} cannot be explored: {SWARM_FAULTS[self.fault]}. Test it "
                    "with a scenario (outlast run --backend swarm) instead",
                    self.fault,
                )
            )
        if self.fault in PERSISTENT_FAULTS:
            errors.append(
                custom_error(
                    ("fault",),
                    "persistent",
                    f"{self.fault} cannot be explored: {PERSISTENT_FAULTS[self.fault]}, and "
                    "examples share one stack that is reset between them. Test it with a "
                    "scenario (outlast run) instead",
                    self.fault,
                )
            )
        if spec.duration == "forbidden" and self.duration is not None:
            message = f'{self.fault} is instantaneous; remove "for"'
            errors.append(custom_error(("for",), "for_forbidden", message, self.duration))
        if spec.duration != "forbidden" and self.duration is None:
            message = f'{self.fault} needs "for": [shortest, longest], e.g. [2s, 20s]'
            errors.append(custom_error(("for",), "for_required", message, None))
        if self.duration is not None:
            low, high = self.duration
            if low <= 0 or high < low:
                message = '"for" must be [shortest, longest] with 0 < shortest <= longest'
                errors.append(custom_error(("for",), "for_range", message, list(self.duration)))
        if spec.target == "none" and self.targets is not None:
            message = f"{self.fault} takes no target; remove targets"
            errors.append(custom_error(("targets",), "target_forbidden", message, self.targets))
        if spec.target != "none" and not self.targets:
            message = f'{self.fault} needs targets: globs of {spec.target} names, e.g. ["conn-*"]'
            errors.append(custom_error(("targets",), "target_required", message, None))
        errors += self._param_errors(spec)
        raise_errors("FaultRule", errors)
        return self

    def _param_errors(self, spec: FaultSpec) -> list[InitErrorDetails]:
        errors: list[InitErrorDetails] = []
        model = spec.params
        known = list(model.model_fields)
        choices: dict[str, list[Any]] = {}
        for key, value in self.params.items():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                allowed = f"{self.fault} takes: {', '.join(known)}" if known else "none allowed"
                message = f"unknown parameter ({hint}{allowed})"
                errors.append(custom_error(("params", key), "extra_forbidden", message, value))
                continue
            items = list(value) if isinstance(value, list | tuple) else [value]
            if not items:
                message = "give one value or a non-empty list of values"
                errors.append(custom_error(("params", key), "empty", message, value))
                continue
            choices[key] = items
        if errors:
            return errors
        base = {key: items[0] for key, items in choices.items()}
        try:
            model.model_validate(base)
        except ValidationError as exc:
            return [
                custom_error(("params", *e["loc"]), e["type"], e["msg"], e.get("input"))
                for e in exc.errors(include_url=False)
            ]
        for key, items in choices.items():
            for index, item in enumerate(items):
                try:
                    model.model_validate({**base, key: item})
                except ValidationError as exc:
                    for e in exc.errors(include_url=False):
                        loc: tuple[str | int, ...] = ("params", key)
                        if isinstance(self.params[key], list | tuple):
                            loc = (*loc, index)
                        errors.append(custom_error(loc, e["type"], e["msg"], item))
        return errors

    @property
    def spec(self) -> FaultSpec:
        return FAULT_SPECS[self.fault]

    def param_choices(self) -> dict[str, tuple[Any, ...]]:
        """Parameter -> its choices, each as the canonical value a timeline entry takes."""
        model = self.spec.params
        out: dict[str, tuple[Any, ...]] = {}
        for key, value in self.params.items():
            items = list(value) if isinstance(value, list | tuple) else [value]
            base = {k: (v[0] if isinstance(v, list | tuple) else v) for k, v in self.params.items()}
            out[key] = tuple(
                model.model_validate({**base, key: item}).model_dump(mode="json")[key]
                for item in items
            )
        return out

    def expand_targets(self, stack: StackSpec) -> tuple[str, ...]:
        """Every stack target matched by one of the globs, in the stack's order."""
        if self.spec.target == "none":
            return ()
        known = stack.targets(self.spec.target)
        patterns = self.targets or ()
        return tuple(t for t in known if any(fnmatch.fnmatchcase(t, p) for p in patterns))


class Envelope(StrictModel):
    """Everything ``outlast explore`` may vary, and what must hold (see module docstring)."""

    name: str = Field(default="custom", pattern=SCENARIO_NAME_PATTERN)
    description: str = ""
    time_scale: float = Field(default=0.5, gt=0, le=100, description="default; --time-scale wins")
    stack: StackSpec = StackSpec()
    traffic: TrafficSpec = EXPLORE_TRAFFIC
    faults: tuple[FaultRule, ...] = Field(min_length=1)
    faults_per_schedule: tuple[int, int] = Field(
        default=(1, 3), description="[fewest, most] faults in one schedule (one value: fixed)"
    )
    max_overlap: int = Field(default=2, ge=1, description="faults active at the same time")
    horizon: Duration = Field(
        default=40.0, gt=0, description="scenario seconds every fault starts and ends within"
    )
    step: Duration = Field(default=1.0, gt=0, description="times and durations are multiples")
    lead_in: Duration = Field(
        default=2.0, gt=0, description="real seconds of traffic before the horizon starts"
    )
    settle: Duration = Field(
        default=12.0, gt=0, description="real seconds of traffic after the last fault ends"
    )
    checks: tuple[CheckSpec, ...] | None = Field(
        default=None, description="invariants (default: harness.explore.invariants)"
    )

    @field_validator("faults_per_schedule", mode="before")
    @classmethod
    def _count_pair(cls, value: Any) -> Any:
        return [value, value] if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _consistent(self) -> Envelope:
        errors: list[InitErrorDetails] = []
        low, high = self.faults_per_schedule
        if low < 1 or high < low:
            errors.append(
                custom_error(
                    ("faults_per_schedule",),
                    "range",
                    "give [fewest, most] with 1 <= fewest <= most",
                    list(self.faults_per_schedule),
                )
            )
        horizon_steps = math.floor(self.horizon / self.step + 1e-9)
        if horizon_steps < 1:
            message = f"horizon ({format_duration(self.horizon)}) is shorter than step"
            errors.append(custom_error(("horizon",), "horizon", message, self.horizon))
        for i, rule in enumerate(self.faults):
            kind = rule.spec.target
            if kind != "none":
                known = self.stack.targets(kind)
                for j, pattern in enumerate(rule.targets or ()):
                    if not any(fnmatch.fnmatchcase(t, pattern) for t in known):
                        errors.append(
                            custom_error(
                                ("faults", i, "targets", j),
                                "target",
                                f'"{pattern}" matches no {kind} of the stack '
                                f"(known: {', '.join(known)})",
                                pattern,
                            )
                        )
            if rule.duration is not None:
                shortest, longest = self.duration_steps(rule)
                if shortest > longest or shortest < 1:
                    errors.append(
                        custom_error(
                            ("faults", i, "for"),
                            "for_range",
                            f"no multiple of step ({format_duration(self.step)}) between "
                            f"{format_duration(rule.duration[0])} and "
                            f"{format_duration(min(rule.duration[1], self.horizon))} "
                            f"(horizon {format_duration(self.horizon)})",
                            list(rule.duration),
                        )
                    )
        for i, check in enumerate(self.checks or ()):
            for key in ("bound", "grace"):
                value = getattr(check.params, key, None)
                if check.name in ("reconnect_within", "control_plane_independent") and (
                    isinstance(value, int | float) and value > self.settle
                ):
                    errors.append(
                        custom_error(
                            ("checks", i, "params", key),
                            "settle",
                            f"{check.name} {key} ({format_duration(value)}) is longer than "
                            f"settle ({format_duration(self.settle)}): the run would end before "
                            "it could be judged; raise settle or lower the bound",
                            value,
                        )
                    )
        raise_errors("Envelope", errors)
        return self

    # -- derived ---------------------------------------------------------------------------------

    @property
    def horizon_steps(self) -> int:
        return math.floor(self.horizon / self.step + 1e-9)

    def duration_steps(self, rule: FaultRule) -> tuple[int, int]:
        """Shortest and longest duration of ``rule`` in steps (within the horizon)."""
        assert rule.duration is not None
        low, high = rule.duration
        shortest = max(1, math.ceil(low / self.step - 1e-9))
        longest = math.floor(min(high, self.horizon) / self.step + 1e-9)
        return shortest, longest

    @property
    def invariants(self) -> tuple[CheckSpec, ...]:
        """The checks every example must pass (``checks``, else the default invariants)."""
        return self.checks if self.checks is not None else default_invariants()

    def to_data(self) -> dict[str, Any]:
        """Plain data that validates back into this envelope, with the invariants spelled out."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        data["checks"] = [
            c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in self.invariants
        ]
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_data(), sort_keys=False, allow_unicode=True)


# -- loading with located errors ----------------------------------------------------------------

_MODELS: dict[str, type[BaseModel]] = {
    "": Envelope,
    "faults[]": FaultRule,
    "stack": StackSpec,
    "traffic": TrafficSpec,
    "traffic.mix": TrafficMix,
    "checks[]": CheckSpec,
}


def _allowed(path: tuple[str | int, ...]) -> list[str]:
    shape = re.sub(r"\[\d+\]", "[]", format_field(path))
    model = _MODELS.get(shape)
    if model is None:
        return []
    return [
        info.validation_alias if isinstance(info.validation_alias, str) else info.alias or name
        for name, info in model.model_fields.items()
    ]


def _message(error: Mapping[str, Any], path: tuple[str | int, ...]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field missing"
    if kind == "extra_forbidden" and path:
        allowed = _allowed(path[:-1])
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        return (
            f"unknown field ({hint}allowed: {', '.join(allowed)})" if allowed else str(error["msg"])
        )
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        value = error.get("input")
        close = difflib.get_close_matches(str(value), expected, n=1)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        return f'invalid value "{value}" ({hint}expected one of: {", ".join(expected)})'
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def parse_envelope(text: str, source: str = "<envelope>") -> Envelope:
    """Validate envelope YAML ``text``; ``source`` names it in errors (:class:`EnvelopeError`)."""
    return parse_located(
        text,
        source,
        Envelope,
        EnvelopeError,
        "an envelope is a mapping (name:, faults:, ...)",
        lambda error, _data, path: _message(error, path),
    )


def load_envelope(path: Path | str | None = None) -> Envelope:
    """The envelope in ``path``, or the packaged default envelope when ``path`` is ``None``."""
    if path is None:
        text = resources.files("harness.explore").joinpath(DEFAULT_ENVELOPE).read_text("utf-8")
        return parse_envelope(text, f"<packaged {DEFAULT_ENVELOPE}>")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EnvelopeError(
            [ScenarioIssue(str(path), 0, "", f"cannot read: {exc.strerror}")]
        ) from None
    except UnicodeDecodeError:
        raise EnvelopeError([ScenarioIssue(str(path), 1, "", "not UTF-8 text")]) from None
    return parse_envelope(text, str(path))
