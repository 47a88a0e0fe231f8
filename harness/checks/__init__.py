"""Checks: pure functions of the journal ``check(history, params) -> CheckResult``.

Importing this package registers the built-in checks. See ``docs/checks.md``.
"""

from harness.checks import (  # noqa: F401  (importing registers the checks)
    auth,
    availability,
    control_plane,
    dns,
    edge_errors,
    failover,
    ha,
    integrity,
    latency,
    reconnect,
    retry,
    revocation,
    routing,
)
from harness.checks.params import CheckParams, FaultScopedParams
from harness.checks.registry import (
    CHECKS,
    CheckDefinition,
    UnknownCheckError,
    apply_expectation,
    check_names,
    get_check,
    register,
    run_check,
    run_checks,
)
from harness.checks.result import CheckResult, Verdict, combine, exit_code, verdict

__all__ = [
    "CHECKS",
    "CheckDefinition",
    "CheckParams",
    "CheckResult",
    "FaultScopedParams",
    "UnknownCheckError",
    "Verdict",
    "apply_expectation",
    "check_names",
    "combine",
    "exit_code",
    "get_check",
    "register",
    "run_check",
    "run_checks",
    "verdict",
]
