"""ComposeStack.endpoints() has LocalStack.endpoints()'s shape, and the run override renders the
anycast front and the replicas (no engine: neither stack is started)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.compose import plan
from harness.stack.compose import ComposeStack
from harness.stack.local import LocalStack
from harness.stack.topology import Region, Topology, TunnelSpec

#: Keys only the Compose backend has (which project, which images, which container).
COMPOSE_ONLY = {"project", "offline", "service", "container"}
#: Dictionaries keyed by names (PoPs, links, regions, components), not by a fixed schema.
NAMED = {"pops", "proxies", "regions", "components", "connectors"}


def _shape(value: Any, key: str = "") -> Any:
    """The keys of ``value`` all the way down; lists by their first item."""
    if isinstance(value, dict):
        if key in NAMED:
            items = [_shape(v) for v in value.values()]
            return {"*names": sorted(value), "*each": items[0] if items else None}
        return {k: _shape(v, k) for k, v in value.items() if k not in COMPOSE_ONLY}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return "value"


def _stacks(tmp_path: Path, topology: Topology) -> tuple[LocalStack, ComposeStack]:
    local = LocalStack(tmp_path / "local", topology, faultproxy_url="http://127.0.0.1:1")
    local._allocate_ports()
    for name in topology.components:  # as after up(): one process per component, every proxy
        local._process(name, "version")
    local.proxies = {
        p["name"]: {"listen": p["listen"], "upstream": p["upstream"]} for p in local._proxy_plan()
    }
    compose = ComposeStack(tmp_path / "compose", topology, offline=True)
    compose._allocate_ports()
    compose.running = dict.fromkeys(topology.components, True)
    return local, compose


@pytest.mark.parametrize("replicas", [1, 2])
def test_compose_endpoints_have_the_local_shape(tmp_path: Path, replicas: int) -> None:
    topology = Topology(tunnels=(TunnelSpec("web", "app.example.com", replicas=replicas),))
    local, compose = _stacks(tmp_path, topology)
    local_endpoints, compose_endpoints = local.endpoints(), compose.endpoints()
    assert _shape(compose_endpoints) == _shape(local_endpoints)
    extra = set(compose_endpoints) - set(local_endpoints)
    assert extra <= COMPOSE_ONLY, extra
    assert compose_endpoints["backend"] == "compose"
    assert compose_endpoints["visitor_url"] == compose_endpoints["anycast"]["visitor_url"]
    proxies = compose_endpoints["faultproxy"]["proxies"]
    assert list(proxies) == list(local_endpoints["faultproxy"]["proxies"]) == topology.links
    connectors = compose_endpoints["tunnels"][0]["connectors"]
    assert list(connectors) == topology.tunnels[0].connectors
    assert len({c["metrics_url"] for c in connectors.values()}) == replicas


def test_run_override_sets_the_anycast_command_and_renders_each_replica(tmp_path: Path) -> None:
    topology = Topology(
        tunnels=(TunnelSpec("web", "app.example.com", replicas=2),),
        convergence=2.5,
        regions=(Region("eu", ("fra", "ams"), 2.0),),
    )
    _, compose = _stacks(tmp_path, topology)
    compose.seed = 7
    compose.state_dir.mkdir(parents=True)
    compose._write_run_override()
    override = json.loads((compose.state_dir / "compose.run.yaml").read_text())
    services = override["services"]
    assert services["anycast"]["command"] == plan.anycast_command(2.5, 7, ("eu=fra,ams:2",))
    replica = services["connector-2"]
    assert replica["command"] == services["connector"]["command"]
    port = compose.ports["connector-web-2-metrics"]
    assert replica["ports"] == [f"127.0.0.1:{port}:{plan.CONNECTOR_METRICS_PORT}"]
    assert "connector-state-2:/var/lib/outlast/connector" in replica["volumes"]
    assert "pub-connector-2" in replica["networks"] and "pub-connector" not in replica["networks"]
    assert replica["image"] == "${OUTLAST_OFFLINE_IMAGE:-outlast:offline}"
    assert "build" not in replica
    assert replica["depends_on"]["bootstrap"] == {"condition": "service_completed_successfully"}
    assert override["volumes"] == {"connector-state-2": {}}
    assert override["networks"] == {"pub-connector-2": {}}
