"""Ingress rules and ``tunnel run`` configuration (config.yml merged with flags)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.connector.ingress import Ingress, IngressError
from reference.connector.metrics import ConnectorMetrics, SlotInfo
from reference.connector.run_config import ConfigFile, RunConfigError, parse_duration, resolve
from reference.connector.supervisor import EdgeAddress

RULES = [
    {"hostname": "app.example.com", "path": "^/api/", "service": "http://127.0.0.1:8001"},
    {"hostname": "app.example.com", "service": "http://127.0.0.1:8002"},
    {"hostname": "*.example.com", "service": "https://127.0.0.1:8003"},
    {"service": "http_status:404"},
]


def test_rules_match_top_to_bottom_with_wildcards_paths_and_ports() -> None:
    ingress = Ingress.parse(RULES)
    assert ingress.match("app.example.com", "/api/v1?x=1")[0] == 1
    assert ingress.match("APP.example.com:8443", "/other")[0] == 2
    assert ingress.match("deep.sub.example.com", "/")[0] == 3
    assert ingress.match("example.com", "/")[0] == 4, "*.example.com does not match the apex"
    number, rule = ingress.match("other.org", "/")
    assert number == 4 and rule.service.status == 404
    assert ingress.rules[2].service.ws_base == "wss://127.0.0.1:8003"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            [{"service": "http://a:1"}, {"hostname": "x.com", "service": "http://a:1"}],
            "#1 matches every request",
        ),
        ([{"hostname": "x.com", "service": "http://a:1"}], "#1 (hostname 'x.com'): the last"),
        (
            [{"hostname": "x.com", "service": "ftp://a"}, {"service": "http_status:404"}],
            "#1 (hostname 'x.com'): service 'ftp://a'",
        ),
        (
            [{"hostname": "x.com", "service": "http://a:1/p"}, {"service": "http_status:404"}],
            "must not have a path",
        ),
        (
            [{"hostname": "x.*.com", "service": "http://a:1"}, {"service": "http_status:404"}],
            "single leading wildcard",
        ),
        (
            [{"hostname": "x.com:80", "service": "http://a:1"}, {"service": "http_status:404"}],
            "port",
        ),
        (
            [{"path": "([", "service": "http://a:1"}, {"service": "http_status:404"}],
            "#1: path '([' is not a valid regex",
        ),
        ([{"hostname": "a.com"}, {"service": "http_status:404"}], "'service' is required"),
        ([{"service": "http_status:42"}], "100-999"),
        ([], "non-empty"),
    ],
)
def test_invalid_rules_are_named(rules: list[dict[str, str]], message: str) -> None:
    with pytest.raises(
        IngressError,
        match=message.replace("(", r"\(")
        .replace(")", r"\)")
        .replace("[", r"\[")
        .replace("*", r"\*")
        .replace(".", r"\."),
    ):
        Ingress.parse(rules)


def test_url_shorthand_and_empty_ingress() -> None:
    assert Ingress.single("http://127.0.0.1:9000").match("any", "/")[1].service.url == (
        "http://127.0.0.1:9000"
    )
    assert Ingress.empty().match("any", "/")[1].service.status == 503


def test_durations() -> None:
    assert parse_duration("500ms", "x") == 0.5
    assert parse_duration("2m", "x") == 120
    assert parse_duration(3, "x") == 3.0
    with pytest.raises(RunConfigError, match="not a duration"):
        parse_duration("soon", "grace-period")


def test_config_file_values_and_flag_precedence(tmp_path: Path) -> None:
    config_path = tmp_path / "config.yml"
    config_path.write_text(
        "tunnel: my-tunnel\n"
        "credentials-file: creds.json\n"
        "edge: [127.0.0.1:7001, 127.0.0.1:7002]\n"
        "grace-period: 5s\n"
        "ha-connections: 2\n"
        "metrics: 127.0.0.1:9999\n"
        "something-new: 1\n"
        "ingress:\n"
        "  - hostname: app.example.com\n"
        "    service: http://127.0.0.1:8001\n"
        "  - service: http_status:404\n"
    )
    config = ConfigFile.load(config_path)
    assert config.unknown_keys == ["something-new"]
    settings = resolve({"grace-period": 1.5, "edge": (("127.0.0.1", 7005),)}, config)
    assert settings.tunnel == "my-tunnel"
    assert settings.credentials_file == tmp_path / "creds.json", "relative to the config file"
    assert settings.grace_period == 1.5, "flags win over config"
    assert settings.ha_connections == 2 and settings.metrics == ("127.0.0.1", 9999)
    assert settings.edges == [EdgeAddress("127.0.0.1", 7005)]
    assert settings.ingress.match("app.example.com", "/")[0] == 1 and settings.ingress_defined
    assert resolve({}, config).edges == [
        EdgeAddress("127.0.0.1", 7001),
        EdgeAddress("127.0.0.1", 7002),
    ]


def test_config_errors_name_the_file_and_rule(tmp_path: Path) -> None:
    config_path = tmp_path / "bad.yml"
    config_path.write_text("ingress:\n  - hostname: a.com\n    service: http://x:1\n")
    with pytest.raises(RunConfigError, match=r"bad\.yml: ingress rule #1 \(hostname 'a\.com'\)"):
        resolve({}, ConfigFile.load(config_path))
    with pytest.raises(RunConfigError, match="both given"):
        config_path.write_text("url: http://x:1\ningress:\n  - service: http_status:404\n")
        resolve({}, ConfigFile.load(config_path))
    with pytest.raises(RunConfigError, match="does not exist"):
        ConfigFile.load(tmp_path / "missing.yml")
    with pytest.raises(RunConfigError, match="at most 180"):
        resolve({"grace-period": 500.0}, ConfigFile())
    with pytest.raises(RunConfigError, match="longer than the interval"):
        resolve({"heartbeat-interval": 2.0, "heartbeat-timeout": 1.0}, ConfigFile())
    with pytest.raises(RunConfigError, match=r"1\.\.16"):
        resolve({"ha-connections": 0}, ConfigFile())


def test_defaults() -> None:
    settings = resolve({}, ConfigFile())
    assert settings.ha_connections == 4 and settings.grace_period == 30.0
    assert (settings.heartbeat.interval, settings.heartbeat.timeout) == (1.0, 3.0)
    assert (settings.retry.base, settings.retry.cap) == (0.1, 2.0)
    assert not settings.ingress_defined


def test_metrics_ready_counts_registered_connections_only() -> None:
    metrics = ConnectorMetrics("cid")
    assert metrics.ready_body() == {"status": 503, "readyConnections": 0, "connectorId": "cid"}
    metrics.registered(SlotInfo(0, "c0", "ams", "e:1"))
    metrics.registered(SlotInfo(1, "c1", "fra", "e:2"))
    metrics.registration_failed("Unknown Tunnel")
    assert metrics.ready_body()["readyConnections"] == 2
    text = metrics.exposition().decode()
    assert "outlast_tunnel_ha_connections 2.0" in text
    assert 'outlast_tunnel_server_locations{connection_id="1",edge_location="fra"} 1.0' in text
    assert 'outlast_tunnel_register_fail_total{reason="unknown tunnel"} 1.0' in text
    metrics.registered(SlotInfo(1, "c1b", "ams", "e:1"))  # moved
    text = metrics.exposition().decode()
    assert 'outlast_tunnel_server_locations{connection_id="1",edge_location="fra"} 0.0' in text
    metrics.unregistered(1, "c1")  # stale id: the moved connection stays
    assert metrics.ready_connections == 2
    metrics.unregistered(1, "c1b")
    assert metrics.ready_connections == 1
