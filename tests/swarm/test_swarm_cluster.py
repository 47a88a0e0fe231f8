"""``outlast swarm up`` on the real engine: labelled, ready nodes (``down`` leaving nothing is
checked by scripts/swarm-ci after the tests, and by ``SwarmCluster.down`` itself)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.swarm.cluster import SwarmCluster

pytestmark = [pytest.mark.swarm, pytest.mark.slow]
STATE = Path(os.environ.get("OUTLAST_SWARM_STATE", ".outlast/swarm"))


def test_the_swarm_has_labelled_ready_nodes() -> None:
    status = SwarmCluster(STATE).status()
    assert status["swarm"] == "active"
    labels = {n["hostname"]: n["labels"] for n in status["nodes"] if n["state"] == "ready"}
    assert labels["pop-ams"] == {"outlast.pop": "ams"}
    assert labels["pop-fra"] == {"outlast.pop": "fra"}
    assert labels["connectors"] == {"outlast.role": "connectors"}
    assert sum(1 for n in status["nodes"] if n["role"] == "worker") >= 3
