"""``outlast serve anycast`` option parsing: bad input names the option and the problem."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from harness.cli import main
from reference.anycast.cli import parse_pop, parse_region
from reference.anycast.routing import Region

BASE = [
    "serve", "anycast",
    "--listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0",
    "--pop", "ams=127.0.0.1:8080,127.0.0.1:5353",
    "--pop", "fra=127.0.0.1:8081,127.0.0.1:5354",
]  # fmt: skip


def test_pop_spec_with_and_without_health_url() -> None:
    pop = parse_pop("ams=127.0.0.1:8080,127.0.0.1:5353")
    assert (pop.name, pop.visitor, pop.dns, pop.health_url) == (
        "ams",
        ("127.0.0.1", 8080),
        ("127.0.0.1", 5353),
        None,
    )
    assert pop.health_target().url == "http://127.0.0.1:8080/ready"
    assert pop.health_target().host_header == "127.0.0.1"
    custom = parse_pop("fra=edge-fra:8080,edge-fra:53,http://edge-fra:9101/ready?x=1,2")
    assert custom.health_url == "http://edge-fra:9101/ready?x=1,2"
    assert custom.health_target().host_header is None


def test_region_spec_with_and_without_weight() -> None:
    assert parse_region("eu=ams,fra") == Region("eu", ("ams", "fra"), 1.0)
    assert parse_region("us=fra:2.5") == Region("us", ("fra",), 2.5)


@pytest.mark.parametrize(
    ("extra", "option", "problem"),
    [
        (["--region", "eu=ams,xyz"], "--region", "unknown PoP 'xyz' (have: ams, fra)"),
        (["--region", "eu=ams:0"], "--region", "weight must be a number > 0"),
        (["--region", "eu=ams:-1"], "--region", "weight must be a number > 0"),
        (["--region", "eu=ams:heavy"], "--region", "weight 'heavy' is not a number"),
        (["--region", "eu=ams,ams"], "--region", "lists PoP 'ams' twice"),
        (["--region", "eu=ams", "--region", "eu=fra"], "--region", "region 'eu' is given twice"),
        (["--region", "eu="], "--region", "is not NAME=POP1,POP2"),
        (["--pop", "ams=127.0.0.1:9,127.0.0.1:10"], "--pop", "PoP 'ams' is given twice"),
        (["--pop", "lhr=127.0.0.1:9"], "--pop", "is not NAME=VISITOR_HOST:PORT,DNS_HOST:PORT"),
        (["--pop", "lhr=127.0.0.1:x,127.0.0.1:9"], "--pop", "port 'x' is not a number"),
        (["--pop", "l hr=127.0.0.1:8,127.0.0.1:9"], "--pop", "must be letters, digits"),
        (["--pop", "lhr=127.0.0.1:8,127.0.0.1:9,ftp://x"], "--pop", "is not http(s)://"),
        (["--convergence", "-1"], "--convergence", "-1"),
        (["--health-interval", "0"], "--health-interval", "0"),
    ],
)
def test_bad_input_names_the_option_and_the_problem(
    extra: list[str], option: str, problem: str
) -> None:
    result = CliRunner().invoke(main, [*BASE, *extra])
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert problem in " ".join(result.output.split())


def test_pop_is_required() -> None:
    args = [a for a in BASE if not a.startswith(("--pop", "ams=", "fra="))]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--pop" in result.output


def test_registered_in_serve() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    assert "anycast" in result.output
