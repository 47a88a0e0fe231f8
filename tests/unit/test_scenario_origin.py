"""``stack.origin`` and ``traffic.requests``: defaults, located errors, the stack's shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scenario import Scenario, ScenarioError, parse_scenario
from harness.stack.user_origin import UserOrigin

GOOD = """\
name: own-service
stack:
  origin:
    command: "python3 -m http.server {port} --bind 127.0.0.1"
    health: /
traffic:
  rate: 10
  requests:
    - {method: GET, path: /index.html, expect_status: 200, expect_body_contains: "x", static: true}
    - {method: post, path: /api/items, body: '{"a": 1}', expect_status: [200, 201]}
    - {ws: /socket, send: "ping", expect: "pong"}
timeline:
  - {at: 1s, fault: restart, target: origin}
duration: 10s
"""


def issues(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "x.yaml")
    return [str(issue) for issue in caught.value.issues]


def test_the_reference_origin_and_echo_mix_stay_the_default() -> None:
    scenario = Scenario(name="plain", duration=10)
    assert scenario.stack.origin is None
    assert scenario.traffic.requests == ()
    assert scenario.stack.topology().origin is None
    assert "origin" in scenario.stack.components


def test_a_user_origin_and_its_requests_load_and_round_trip() -> None:
    scenario = parse_scenario(GOOD)
    origin = scenario.stack.topology().origin
    assert origin == UserOrigin(command="python3 -m http.server {port} --bind 127.0.0.1")
    assert origin.shell_command(8123) == "python3 -m http.server 8123 --bind 127.0.0.1"
    kinds = [(r.kind, r.http_method, r.statuses) for r in scenario.traffic.requests]
    assert kinds == [("http", "GET", (200,)), ("http", "POST", (200, 201)), ("ws", "GET", None)]
    assert parse_scenario(scenario.to_yaml()) == scenario


def test_errors_name_line_and_field() -> None:
    text = GOOD.replace("health: /", "helth: /").replace("path: /api/items", "path: api/items")
    text = text.replace('send: "ping"', 'send: "ping", method: GET')
    assert issues(text) == [
        'x.yaml:5: stack.origin.helth: unknown field (did you mean "health"? allowed: command, '
        "health, url, ingress, ready_timeout, image, build, port)",
        'x.yaml:10: traffic.requests[1].path: path "api/items" must start with "/"',
        'x.yaml:11: traffic.requests[2].method: "method" is for HTTP requests (a WebSocket one '
        "has ws, send, expect)",
    ]


def test_static_is_for_gets_and_statuses_are_http_statuses() -> None:
    text = GOOD.replace("expect_status: [200, 201]", "expect_status: [200, 999], static: true")
    assert issues(text) == [
        "x.yaml:10: traffic.requests[1].expect_status: status 999 is not an HTTP status (100-599)",
    ]
    text = GOOD.replace("expect_status: [200, 201]", "static: true")
    assert issues(text) == [
        'x.yaml:10: traffic.requests[1].static: "static" is for GET requests, not POST'
    ]


def test_a_user_origin_needs_requests() -> None:
    text = GOOD.split("traffic:")[0] + "duration: 10s\n"
    (issue,) = issues(text)
    assert issue.startswith("x.yaml:3: stack.origin: the user's service needs traffic.requests")


def test_a_running_url_has_no_origin_component_to_fault() -> None:
    command = 'command: "python3 -m http.server {port} --bind 127.0.0.1"'
    text = GOOD.replace(command, "url: http://127.0.0.1:8080")
    (issue,) = issues(text)
    assert issue.startswith('x.yaml:13: timeline[0].target: unknown component "origin"')


def test_ingress_rules_are_cloudflared_s_with_a_catch_all_last() -> None:
    rules = """\
    ingress:
      - {hostname: app.example.com, path: "^/api", service: "http://127.0.0.1:{port}"}
      - {service: "http_status:404", hostname: x.example.com}
"""
    text = GOOD.replace("    health: /\n", rules)
    (issue,) = issues(text)
    assert issue.startswith("x.yaml:7: stack.origin.ingress[1]: ingress rule #2")
    assert "the last ingress rule must match all requests" in issue
    fixed = parse_scenario(text.replace(", hostname: x.example.com", ""))
    origin = fixed.stack.topology().origin
    assert origin is not None and origin.kind == "ingress"
    assert origin.ingress_rules(9000)[0]["service"] == "http://127.0.0.1:9000"
    assert origin.service_url(9000) is None


def test_one_source_only() -> None:
    text = GOOD.replace("    health: /\n", "    url: http://127.0.0.1:8080\n")
    (issue,) = issues(text)
    assert issue == 'x.yaml:5: stack.origin.url: give either "command" or "url", not both'
    with pytest.raises(ValueError, match="must start with"):
        UserOrigin(url="http://127.0.0.1:1", health="health")


def test_each_backend_refuses_the_other_ones_origin(tmp_path: Path) -> None:
    from harness.stack.base import StackError
    from harness.stack.compose import ComposeStack
    from harness.stack.local import LocalStack

    topology = parse_scenario(GOOD).stack.topology()
    with pytest.raises(StackError, match=r"stack\.origin\.command runs on the host: .*image"):
        ComposeStack(tmp_path, topology)
    image = GOOD.replace(
        'command: "python3 -m http.server {port} --bind 127.0.0.1"',
        "image: nginx:1.27\n    port: 80",
    )
    topology = parse_scenario(image).stack.topology()
    assert topology.origin is not None and topology.origin.kind == "image"
    assert "origin" in topology.components  # a fault may target the container
    with pytest.raises(StackError, match=r"stack\.origin\.image .* needs the compose backend"):
        LocalStack(tmp_path, topology)


@pytest.mark.parametrize(
    ("origin", "message"),
    [
        ("image: a\n    build: b", 'stack.origin.build: give either "image" or "build", not both'),
        ("image: a\n    url: http://x", 'stack.origin.url: give either "image" or "url", not both'),
        ("build: ' '", "stack.origin.build: build is empty"),
        ("image: a\n    port: 70000", "stack.origin.port: port 70000 is not a TCP port (1-65535)"),
        ("url: http://127.0.0.1:1\n    port: 80", 'stack.origin.port: "port" is for a container'),
        ("image: a\n    ingress: [{service: 'http_status:404'}]", 'origin.ingress: "ingress"'),
    ],
)
def test_container_origin_errors_name_the_field(origin: str, message: str) -> None:
    text = GOOD.replace('command: "python3 -m http.server {port} --bind 127.0.0.1"', origin)
    found = issues(text)
    assert len(found) == 1 and message in found[0], found


def test_stack_up_refuses_an_origin_its_backend_cannot_run(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harness.stack.cli import stack_group

    runner = CliRunner()
    state = ["--state-dir", str(tmp_path)]
    local = runner.invoke(stack_group, ["up", *state, "--origin-image", "shop:1"])
    assert local.exit_code == 2 and "needs the compose backend" in local.output
    compose = ["up", *state, "--backend", "compose", "--origin-command", "serve"]
    refused = runner.invoke(stack_group, compose)
    assert refused.exit_code == 2 and "stack.origin.command runs on the host" in refused.output
    port = ["up", *state, "--backend", "compose", "--origin-build", ".", "--origin-port", "0"]
    bad = runner.invoke(stack_group, port)
    assert bad.exit_code == 2 and "port 0 is not a TCP port" in bad.output
    assert not (tmp_path / "stack.json").exists()  # nothing was started
