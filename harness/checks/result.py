"""Check results and how they combine into a run's verdict and exit code."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["pass", "fail", "unknown"]
EXIT_CODES: dict[str, int] = {"pass": 0, "fail": 1, "unknown": 2}


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check: ``passed`` is ``None`` when the journal could not decide it."""

    name: str
    passed: bool | None
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> Verdict:
        return "unknown" if self.passed is None else ("pass" if self.passed else "fail")


def combine(outcomes: Iterable[bool | None]) -> Verdict:
    """Jepsen's priority: any ``False`` -> fail, else any ``None`` -> unknown, else pass.

    No outcomes at all is ``unknown``: a run that checked nothing proved nothing.
    """
    seen = list(outcomes)
    if any(o is False for o in seen):
        return "fail"
    if not seen or any(o is None for o in seen):
        return "unknown"
    return "pass"


def verdict(results: Iterable[CheckResult], *, run_completed: bool = True) -> Verdict:
    """The run's verdict; a run that did not complete can fail but never pass."""
    outcomes: list[bool | None] = [r.passed for r in results]
    if not run_completed:
        outcomes.append(None)
    return combine(outcomes)


def exit_code(value: Verdict) -> int:
    """``pass`` -> 0, ``fail`` -> 1, ``unknown`` -> 2."""
    return EXIT_CODES[value]
