"""The check registry: checks are pure functions ``check(history, params) -> CheckResult``.

Register one with ``@register("name", ParamsModel)``; run one by name with :func:`run_check`,
which validates parameters, applies the expected outcome (``expect: fail``) and turns a crashing
check into an undecided result.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel

from harness.checks.params import CheckParams
from harness.checks.result import CheckResult
from harness.journal.history import History

P = TypeVar("P", bound=CheckParams)
Expectation = Literal["pass", "fail"]
CheckFunction = Callable[[History, P], CheckResult]


@dataclass(frozen=True)
class CheckDefinition(Generic[P]):
    """A registered check: its name, parameter model and function."""

    name: str
    params_model: type[P]
    function: Callable[[History, P], CheckResult]

    @property
    def summary(self) -> str:
        doc = (self.function.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else self.name


CHECKS: dict[str, CheckDefinition[Any]] = {}


class UnknownCheckError(LookupError):
    """No check is registered under this name."""

    def __init__(self, name: str) -> None:
        close = difflib.get_close_matches(name, list(CHECKS), n=1)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        super().__init__(f'unknown check "{name}" ({hint}known: {", ".join(sorted(CHECKS))})')
        self.name = name


def register(
    name: str, params_model: type[P]
) -> Callable[[Callable[[History, P], CheckResult]], Callable[[History, P], CheckResult]]:
    """Decorator registering a check function under ``name``."""

    def decorate(
        function: Callable[[History, P], CheckResult],
    ) -> Callable[[History, P], CheckResult]:
        if name in CHECKS and CHECKS[name].function is not function:
            raise ValueError(f"check {name!r} is already registered")
        CHECKS[name] = CheckDefinition(name, params_model, function)
        return function

    return decorate


def get_check(name: str) -> CheckDefinition[Any]:
    """The registered check ``name``; :class:`UnknownCheckError` lists the known ones."""
    try:
        return CHECKS[name]
    except KeyError:
        raise UnknownCheckError(name) from None


def check_names() -> list[str]:
    return sorted(CHECKS)


class CheckSpecLike(Protocol):
    """What :func:`run_checks` needs from a scenario's check entry (``CheckSpec``)."""

    @property
    def name(self) -> str: ...
    @property
    def params(self) -> BaseModel: ...
    @property
    def expect(self) -> Expectation: ...
    @property
    def display_name(self) -> str: ...


def apply_expectation(result: CheckResult, expect: Expectation) -> CheckResult:
    """Invert a result for ``expect: fail`` (undecided stays undecided)."""
    if expect == "pass":
        return result
    data = {**result.data, "expected": "fail", "check_passed": result.passed}
    if result.passed is None:
        return replace(result, detail=f"expected to fail, undecided: {result.detail}", data=data)
    if result.passed:
        return replace(
            result, passed=False, detail=f"expected to fail but passed: {result.detail}", data=data
        )
    return replace(result, passed=True, detail=f"failed as expected: {result.detail}", data=data)


def run_check(
    history: History,
    name: str,
    params: BaseModel | Mapping[str, Any] | None = None,
    *,
    expect: Expectation = "pass",
    label: str | None = None,
) -> CheckResult:
    """Run check ``name`` on ``history``; ``params`` is validated against the check's model.

    A check that raises yields ``passed=None`` (undecided) with the error in the detail.
    """
    definition = get_check(name)
    model = definition.params_model
    if isinstance(params, model):
        typed = params
    elif isinstance(params, BaseModel):
        typed = model.model_validate(params.model_dump())
    else:
        typed = model.model_validate(dict(params or {}))
    try:
        result = definition.function(history, typed)
    except Exception as exc:
        result = CheckResult(name, None, f"check crashed: {type(exc).__name__}: {exc}")
    return apply_expectation(replace(result, name=label or name), expect)


def run_checks(history: History, specs: Iterable[CheckSpecLike]) -> list[CheckResult]:
    """Run a scenario's checks in order."""
    return [
        run_check(history, spec.name, spec.params, expect=spec.expect, label=spec.display_name)
        for spec in specs
    ]
