"""Names, hostnames and request bodies: what is accepted and what the refusals say."""

from __future__ import annotations

import pytest

from reference.controlplane import validation as v
from reference.controlplane.connections import ConnectionView, colo_summary
from reference.controlplane.errors import HTTP_STATUS, ApiProblem, ErrorCode


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("App.Example.COM.", "app.example.com"),
        ("example.com", "example.com"),
        ("*.example.com", "*.example.com"),
        ("a-b.c1.example.com", "a-b.c1.example.com"),
    ],
)
def test_valid_hostnames_are_normalised(raw: str, expected: str) -> None:
    assert v.hostname(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "a..b",
        "-a.example.com",
        "a-.example.com",
        "a_b.example.com",
        "a.*.example.com",
        "x" * 64 + ".example.com",
        ("a." * 127) + "com",
    ],
)
def test_invalid_hostnames_are_refused(raw: str) -> None:
    with pytest.raises(ApiProblem) as info:
        v.hostname(raw)
    assert info.value.code == ErrorCode.INVALID_NAME


@pytest.mark.parametrize("name", ["web", "a", "my_tunnel-1.prod", "x" * 64])
def test_valid_tunnel_names(name: str) -> None:
    assert v.tunnel_name(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        ("x" * 65, "65 characters"),
        ("-x", "start with"),
        ("a b", "only contain"),
        ("c1744f8b-faa1-48a4-9e5c-02ac921467fa", "UUID"),
    ],
)
def test_invalid_tunnel_names_say_why(name: str, fragment: str) -> None:
    with pytest.raises(ApiProblem, match=fragment):
        v.tunnel_name(name)


def test_body_errors_list_every_problem_and_the_accepted_fields() -> None:
    with pytest.raises(ApiProblem) as info:
        v.parse_body(v.RouteBody, {"type": "lb", "extra": 1})
    message = info.value.message
    assert "field 'type'" in message and "unknown field 'extra'" in message
    assert "missing required field 'user_hostname'" in message
    assert "(fields accepted: type, user_hostname, overwrite_existing)" in message
    assert info.value.status == 400


def test_record_content_and_ttl_checks() -> None:
    assert v.record_content("A", "192.0.2.1") == "192.0.2.1"
    assert v.record_content("AAAA", "2001:DB8::1") == "2001:db8::1"
    assert v.record_content("CNAME", "Target.Example.org.") == "target.example.org"
    for type_, content in (("A", "::1"), ("AAAA", "1.2.3.4"), ("TXT", "x" * 2049)):
        with pytest.raises(ApiProblem):
            v.record_content(type_, content)
    assert v.ttl(1) == 1 and v.ttl(300) == 300
    with pytest.raises(ApiProblem, match="ttl 5"):
        v.ttl(5)


def test_every_error_code_has_a_status() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode)
    assert len({int(c) for c in ErrorCode}) == len(ErrorCode)


def test_connection_view_summarises_per_pop() -> None:
    view = ConnectionView()
    conn = {"tunnel_id": "t", "connection_id": "c", "connector_id": "k"}
    view.apply_snapshot("fra", {"connections": [conn, {**conn, "connection_id": "d"}]})
    view.apply_snapshot("ams", {"connections": [conn, {**conn, "tunnel_id": "other"}]})
    assert colo_summary(view.for_tunnel("t")) == "1xams, 2xfra"
    assert view.cleanup("t", connector_id="someone-else") == 0
    assert view.cleanup("t") == 3
    assert view.count() == 1
