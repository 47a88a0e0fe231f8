"""Loading scenario files: YAML -> ``Scenario``, with errors naming file, line and field."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from harness.scenario.faults import FAULT_SPECS
from harness.scenario.origin import OriginSpec, UserRequest
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
from harness.scenario.yaml_positions import PositionedYaml, load_positioned

SCENARIO_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ScenarioIssue:
    """One problem: where (file, line, field path) and what."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:"
        return f"{where} {self.field}: {self.message}" if self.field else f"{where} {self.message}"


class ScenarioError(ValueError):
    """A scenario file is invalid; ``issues`` lists every problem found, located."""

    def __init__(self, issues: list[ScenarioIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


def format_field(path: tuple[str | int, ...]) -> str:
    """``("timeline", 2, "for")`` -> ``timeline[2].for``."""
    text = ""
    for element in path:
        if isinstance(element, int):
            text += f"[{element}]"
        else:
            text += ("." if text else "") + str(element)
    return text


_MODEL_AT: dict[str, type[BaseModel]] = {
    "": Scenario,
    "stack": StackSpec,
    "stack.tunnels[]": TunnelEntry,
    "traffic": TrafficSpec,
    "traffic.mix": TrafficMix,
    "clock": ClockSpec,
    "timeline[]": TimelineEntry,
    "checks[]": CheckSpec,
    "slo": SloSpec,
    "stack.origin": OriginSpec,
    "traffic.requests[]": UserRequest,
}


def _allowed_fields(data: Any, path: tuple[str | int, ...]) -> list[str]:
    """Field names allowed in the mapping at ``path`` (for "unknown field" hints)."""
    shape = re.sub(r"\[\d+\]", "[]", format_field(path))
    model: type[BaseModel] | None = _MODEL_AT.get(shape)
    if model is None and shape in ("timeline[].params", "checks[].params"):
        entry = data
        for element in path[:-1]:
            if isinstance(entry, dict):
                entry = entry.get(element)
            elif isinstance(entry, list) and isinstance(element, int) and element < len(entry):
                entry = entry[element]
            else:
                entry = None
        if isinstance(entry, dict) and shape.startswith("timeline"):
            spec = FAULT_SPECS.get(str(entry.get("fault")))
            model = spec.params if spec else None
        elif isinstance(entry, dict):
            from harness.checks.registry import CHECKS

            definition = CHECKS.get(str(entry.get("name")))
            model = definition.params_model if definition else None
    if model is None:
        return []
    names = [
        info.validation_alias if isinstance(info.validation_alias, str) else info.alias or name
        for name, info in model.model_fields.items()
    ]
    return names + (["until"] if model is TimelineEntry else [])


def _message(error: Mapping[str, Any], data: Any, path: tuple[str | int, ...]) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "missing":
        return "required field missing"
    if kind == "extra_forbidden":
        allowed = _allowed_fields(data, path[:-1])
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1) if allowed else []
        hint = f'did you mean "{close[0]}"? ' if close else ""
        listing = f"allowed: {', '.join(allowed)}" if allowed else ""
        return f"unknown field ({hint}{listing})".replace(" ()", "").replace("()", "")
    if kind in ("literal_error", "enum"):
        expected_text = str(error.get("ctx", {}).get("expected", "")) or str(error["msg"])
        expected = re.findall(r"'([^']*)'", expected_text)
        close = difflib.get_close_matches(str(value), expected, n=1)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        return f'invalid value "{value}" ({hint}expected one of: {", ".join(expected)})'
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


IssueMessage = Callable[[Mapping[str, Any], Any, tuple[str | int, ...]], str]
"""Turns one pydantic error (with the document and the error's path) into a person's message."""


def issues_from_validation(
    error: ValidationError,
    positioned: PositionedYaml,
    file: str,
    message: IssueMessage | None = None,
) -> list[ScenarioIssue]:
    """Map pydantic errors to located issues (sorted by line, duplicates dropped)."""
    describe = message or _message
    issues: list[ScenarioIssue] = []
    for item in error.errors(include_url=False):
        path = positioned.resolve(tuple(item["loc"]))
        issue = ScenarioIssue(
            file=file,
            line=positioned.line_of(path),
            field=format_field(path),
            message=describe(item, positioned.data, path),
        )
        if issue not in issues:
            issues.append(issue)
    return sorted(issues, key=lambda i: (i.line, i.field))


M = TypeVar("M", bound=BaseModel)


def parse_located(
    text: str,
    source: str,
    model: type[M],
    error: type[ScenarioError] = ScenarioError,
    what: str = "a scenario is a mapping (name:, duration:, ...)",
    message: IssueMessage | None = None,
) -> M:
    """Validate YAML ``text`` as ``model``; every problem is raised as ``error``, located by
    ``source``, line and field (YAML syntax, duplicate keys, schema errors)."""
    try:
        positioned = load_positioned(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        context_mark = getattr(exc, "context_mark", None)
        if context and context_mark is not None and context_mark.line + 1 != line:
            problem += f" ({context} started on line {context_mark.line + 1})"
        raise error([ScenarioIssue(source, line, "", f"YAML syntax: {problem}")]) from None
    if positioned.issues:
        raise error(
            [
                ScenarioIssue(source, i.line, format_field(i.path), i.message)
                for i in positioned.issues
            ]
        )
    if not isinstance(positioned.data, dict):
        raise error([ScenarioIssue(source, 1, "", what)])
    try:
        return model.model_validate(positioned.data)
    except ValidationError as exc:
        raise error(issues_from_validation(exc, positioned, source, message)) from None


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Validate scenario YAML ``text``; ``source`` names it in errors."""
    return parse_located(text, source, Scenario)


def load_scenario(path: Path | str) -> Scenario:
    """Load and validate a scenario file; :class:`ScenarioError` names file, line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(
            [ScenarioIssue(str(path), 0, "", f"cannot read: {exc.strerror}")]
        ) from None
    except UnicodeDecodeError:
        raise ScenarioError([ScenarioIssue(str(path), 1, "", "not UTF-8 text")]) from None
    return parse_scenario(text, str(path))


def save_scenario(scenario: Scenario, path: Path | str) -> Path:
    """Write ``scenario`` as YAML that :func:`load_scenario` reads back identically."""
    path = Path(path)
    path.write_text(scenario.to_yaml(), encoding="utf-8")
    return path


def scenario_files(location: Path | str) -> list[Path]:
    """``location`` itself if it is a file, else the ``*.yaml``/``*.yml`` files in it, sorted."""
    location = Path(location)
    if location.is_file():
        return [location]
    if not location.is_dir():
        raise FileNotFoundError(f"no scenario file or directory at {location}")
    return sorted(p for p in location.iterdir() if p.suffix in SCENARIO_SUFFIXES and p.is_file())
