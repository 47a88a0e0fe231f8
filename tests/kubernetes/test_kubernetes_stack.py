"""The kubernetes backend on a real cluster (the current kubeconfig context).

Skipped with the reason when no cluster answers: these machines have none, and a mock is no
evidence. On a cluster: the stack comes up, serves through both PoPs, survives a killed edge pod,
and ``down`` removes its namespace.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.stack.base import StackError
from harness.stack.readiness import wait_http

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow, pytest.mark.timeout(900)]


def _cluster_or_skip() -> None:
    pytest.importorskip("kubernetes", reason="pip install 'outlast[kubernetes]'")
    from harness.stack.kubernetes import load_client

    try:
        load_client()
    except StackError as exc:
        pytest.skip(str(exc))


async def test_stack_up_serves_survives_a_pod_kill_and_goes_away(tmp_path: Path) -> None:
    _cluster_or_skip()
    from harness.stack.kubernetes import KubernetesStack

    stack = KubernetesStack(tmp_path)
    await stack.up()
    try:
        assert stack.endpoints()["backend"] == "kubernetes"
        await stack.kill("edge-ams")
        await wait_http(
            f"{stack.visitor_url('fra')}/", timeout=60, headers={"Host": stack.tunnel.hostname}
        )
        await stack.start("edge-ams")
        await stack.wait_serving(timeout=300)
    finally:
        await stack.down()
