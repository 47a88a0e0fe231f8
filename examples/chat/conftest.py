"""The chat example behind the tunnel: this directory's tests get a stack whose origin is
``app.py`` (the plugin's ``outlast_origin``, overridden), started once for the module."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.pytest_plugin import RunningStack
from harness.stack.topology import Topology
from harness.stack.user_origin import UserOrigin

APP = Path(__file__).with_name("app.py")


@pytest.fixture(scope="session")
def outlast_origin() -> UserOrigin:
    return UserOrigin(command=f"{{python}} {APP} --port {{port}}", health="/health")


@pytest.fixture(scope="module")
def outlast_stack(
    outlast_origin: UserOrigin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    # In your own suite, overriding ``outlast_origin`` is enough; here the repository's other
    # tests share the session's reference stack, so this directory runs its own.
    topology = dataclasses.replace(Topology(), origin=outlast_origin)
    stack = RunningStack(tmp_path_factory.mktemp("chat") / "stack", topology)
    try:
        yield stack
    finally:
        stack.close()
