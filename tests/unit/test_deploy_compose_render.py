"""The Compose rendering of the deployment plan is the committed ``compose/compose.yaml``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.deploy.compose_render import render_compose
from harness.deploy.reference_plan import PlanParameters, reference_plan

ROOT = Path(__file__).resolve().parents[2]
_VARIABLE = re.compile(r"\$\{[A-Z0-9_]+:-([^}]*)\}")


def _defaults(value: Any) -> Any:
    """``${VAR:-default}`` replaced by its default, recursively."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m.group(1), value)
    if isinstance(value, list):
        return [_defaults(v) for v in value]
    if isinstance(value, dict):
        return {k: _defaults(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    return _defaults(yaml.safe_load((ROOT / "compose" / "compose.yaml").read_text()))


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    return _defaults(render_compose(reference_plan()))


FIELDS = ("image", "command", "networks", "volumes", "ports", "depends_on", "restart")


def test_same_services_networks_and_volumes(
    committed: dict[str, Any], rendered: dict[str, Any]
) -> None:
    assert list(rendered["services"]) == list(committed["services"])
    assert rendered["networks"] == committed["networks"]
    assert rendered["volumes"] == committed["volumes"]


@pytest.mark.parametrize("field", FIELDS)
def test_every_service_field_matches(
    committed: dict[str, Any], rendered: dict[str, Any], field: str
) -> None:
    for name, service in committed["services"].items():
        assert rendered["services"][name].get(field) == service.get(field), (name, field)


def test_healthchecks_match(committed: dict[str, Any], rendered: dict[str, Any]) -> None:
    for name, service in committed["services"].items():
        want = service.get("healthcheck", {}).get("test")
        assert rendered["services"][name].get("healthcheck", {}).get("test") == want, name


def test_offline_override_runs_the_plans_commands() -> None:
    """The offline override's fault proxy and broker commands are the plan's own."""
    text = (ROOT / "compose" / "compose.offline.yaml").read_text().replace("!reset ", "")
    override = _defaults(yaml.safe_load(text))
    plan = reference_plan()
    for name in ("toxiproxy", "broker"):
        assert override["services"][name]["command"] == list(plan.service(name).command)


def test_replicas_add_connector_services() -> None:
    rendered = render_compose(reference_plan(PlanParameters(replicas=3)))
    assert {"connector", "connector-2", "connector-3"} <= set(rendered["services"])
    assert (
        "connector-state-3:/var/lib/outlast/connector"
        in rendered["services"]["connector-3"]["volumes"]
    )
    assert all(
        p.startswith("127.0.0.1:")
        for s in rendered["services"].values()
        for p in s.get("ports", [])
    )
