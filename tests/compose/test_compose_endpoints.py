"""ComposeStack.endpoints() has LocalStack.endpoints()'s shape, and the run override renders the
anycast front and the replicas (no engine: neither stack is started)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.compose import plan
from harness.compose.engine import EngineError, compose_command
from harness.stack.compose import ComposeStack
from harness.stack.local import LocalStack
from harness.stack.topology import Region, Topology, TunnelSpec
from harness.stack.user_origin import UserOrigin

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
    override = yaml.safe_load((compose.state_dir / "compose.run.yaml").read_text())
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


def test_a_user_image_replaces_the_origin_service_inside_the_project_only(tmp_path: Path) -> None:
    """The merged configuration (Compose's own ``config``, no engine needed): the user's image,
    its command, no published port, the connector's network only, the connector's --url."""
    try:
        binary = compose_command()
    except EngineError as exc:
        pytest.skip(str(exc))
    origin = UserOrigin(image="example/shop:1.2", command="serve --port {port}", port=9000)
    topology = dataclasses.replace(
        Topology(tunnels=(TunnelSpec("web", "app.example.com", replicas=2),)), origin=origin
    )
    compose = ComposeStack(tmp_path / "compose", topology, offline=True)
    compose._allocate_ports()
    compose.state_dir.mkdir(parents=True)
    compose._write_run_override()
    done = subprocess.run(
        [*binary, *compose._compose_args("config", "--format", "json")],
        env=compose._environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    service = services["origin"]
    assert service["image"] == "example/shop:1.2" and "build" not in service
    assert service["command"] == ["/bin/sh", "-c", "serve --port 9000"]
    assert not service.get("ports") and list(service["networks"]) == ["net-origin"]
    assert service["healthcheck"]["disable"] is True
    for connector in ("connector", "connector-2"):
        command = services[connector]["command"]
        assert command[command.index("--url") + 1] == "http://origin:9000"
        assert services[connector]["depends_on"]["origin"]["condition"] == "service_started"
    # No other service shares a network with the origin: only the connectors reach it.
    sharing = [n for n, s in services.items() if "net-origin" in (s.get("networks") or {})]
    assert sorted(sharing) == ["connector", "connector-2", "origin"]
    info = compose.endpoints()["origin"]
    assert info == {
        "kind": "image",
        "url": None,
        "service_url": "http://origin:9000",
        "health": "/",
        "image": "example/shop:1.2",
        "command": "serve --port 9000",
    }
