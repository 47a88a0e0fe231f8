"""Swarm tests need the swarm of ``outlast swarm up``: they run in scripts/swarm-ci.

Tests marked ``swarm`` are skipped unless ``OUTLAST_SWARM_TESTS=1`` (which scripts/swarm-ci sets
after starting its dockerd and making the swarm).
"""

from __future__ import annotations

import os

import pytest

ENABLED = os.environ.get("OUTLAST_SWARM_TESTS") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ENABLED:
        return
    skip = pytest.mark.skip(
        reason="needs a swarm: run scripts/swarm-ci (sets OUTLAST_SWARM_TESTS=1)"
    )
    for item in items:
        if item.get_closest_marker("swarm") is not None:
            item.add_marker(skip)
