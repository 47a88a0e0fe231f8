"""The pytest entry point: run a small exploration budget from a test.

    from harness.explore import run_exploration

    def test_explore_small_budget(tmp_path):
        result = run_exploration(budget=5, seed=1, report_dir=tmp_path)
        result.assert_no_violation()

``assert_no_violation`` fails the test with the minimal schedule, the violated checks and the
``outlast run`` command that replays the reproduction. Keep ``state_dir`` on a path your CI
caches (default ``.outlast/explore``) so a failure found once is replayed first the next time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from harness.explore.envelope import Envelope, load_envelope
from harness.explore.explorer import ExplorationResult, ExploreOptions, explore


def run_exploration(
    budget: int = 5,
    *,
    envelope: Envelope | Path | str | None = None,
    seed: int | None = 0,
    time_scale: float | None = None,
    state_dir: Path | str = Path(".outlast/explore"),
    report_dir: Path | str = Path("reports"),
    shrink_budget: int = 20,
    confirm: int = 1,
    progress: Callable[[str], None] | None = print,
) -> ExplorationResult:
    """Explore ``budget`` schedules of ``envelope`` (default: the packaged one) synchronously.

    ``seed`` defaults to 0 so a CI run is repeatable; pass ``None`` for a new seed each time.
    Must not be called from a running event loop (use :func:`harness.explore.explore` there).
    """
    if not isinstance(envelope, Envelope):
        envelope = load_envelope(envelope)
    options = ExploreOptions(
        budget=budget,
        seed=seed,
        time_scale=time_scale,
        state_dir=Path(state_dir),
        report_dir=Path(report_dir),
        shrink_budget=shrink_budget,
        confirm=confirm,
        progress=progress,
    )
    return asyncio.run(explore(envelope, options))
