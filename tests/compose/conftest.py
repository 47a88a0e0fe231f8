"""Compose tests need a Docker engine: they run in scripts/compose-ci (a CI job of their own).

Tests marked ``compose`` are skipped unless ``OUTLAST_COMPOSE_TESTS=1`` (which scripts/compose-ci
sets after starting dockerd and building the offline images). The checks of the Compose files
themselves need no engine and always run.
"""

from __future__ import annotations

import os

import pytest

ENABLED = os.environ.get("OUTLAST_COMPOSE_TESTS") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ENABLED:
        return
    skip = pytest.mark.skip(
        reason="needs a Docker engine: run scripts/compose-ci (sets OUTLAST_COMPOSE_TESTS=1)"
    )
    for item in items:
        if item.get_closest_marker("compose") is not None:
            item.add_marker(skip)
