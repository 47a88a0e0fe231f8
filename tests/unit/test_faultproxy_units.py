"""Pure parts of the fault proxy: attribute parsing, seeded randomness, addresses, locating."""

from __future__ import annotations

import itertools

import pytest

from harness.faultproxy.addresses import same_listen
from harness.faultproxy.errors import ApiError
from harness.faultproxy.locate import FaultProxyChoice, locate_fault_proxy
from harness.faultproxy.randomness import RandomSource
from harness.faultproxy.toxic_chain import ToxicChain, parse_attributes
from harness.faultproxy.toxics import TOXIC_TYPES
from harness.faultproxy.toxics.latency import LatencyToxic
from harness.faultproxy.toxics.slicer import slice_bounds


def test_all_toxiproxy_toxic_types_are_registered() -> None:
    assert set(TOXIC_TYPES) == {
        "latency",
        "bandwidth",
        "slow_close",
        "timeout",
        "reset_peer",
        "slicer",
        "limit_data",
    }


def test_parse_attributes_merges_ignores_unknown_and_rejects_bad_values() -> None:
    merged = parse_attributes(
        LatencyToxic, {"latency": 5, "colour": "red"}, {"latency": 1, "jitter": 2}
    )
    assert merged == {"latency": 5, "jitter": 2}
    assert parse_attributes(LatencyToxic, {"latency": 7.0}, LatencyToxic.defaults)["latency"] == 7
    for bad in ({"latency": True}, {"latency": "5"}, {"jitter": -3}, {"latency": 0.5}):
        with pytest.raises(ApiError) as caught:
            parse_attributes(LatencyToxic, bad, LatencyToxic.defaults)
        assert caught.value.status == 400


def test_chain_defaults_and_order() -> None:
    chain = ToxicChain(seed=1, proxy_name="p")
    down = chain.add({"type": "latency"})
    up = chain.add({"type": "latency", "stream": "Upstream"})
    assert (down.name, down.stream, down.toxicity) == ("latency_downstream", "downstream", 1.0)
    assert up.name == "latency_upstream"
    assert [t["name"] for t in chain.to_json()] == ["latency_upstream", "latency_downstream"]
    chain.update("latency_upstream", {"toxicity": 0.25})
    assert chain.get("latency_upstream").toxicity == 0.25
    chain.remove("latency_upstream")
    with pytest.raises(ApiError) as caught:
        chain.get("latency_upstream")
    assert caught.value.status == 404


def test_random_source_is_reproducible_and_scoped() -> None:
    def run(source: RandomSource) -> list[object]:
        return [source.chance(0.5) for _ in range(20)] + [source.offset(10) for _ in range(20)]

    assert run(RandomSource(3, "p", "t")) == run(RandomSource(3, "p", "t"))
    assert run(RandomSource(3, "p", "t")) != run(RandomSource(4, "p", "t"))
    assert run(RandomSource(3, "p", "t")) != run(RandomSource(3, "p", "u"))
    source = RandomSource(3, "p", "t")
    assert source.offset(0) == 0 and source.draws() == []  # no spread, no draw
    assert all(-10 <= source.offset(10) < 10 for _ in range(200))


def test_slice_bounds_example() -> None:
    cuts = slice_bounds(100, 10, 3, RandomSource(1, "s"))
    assert cuts[0] == 0 and cuts[-1] == 100
    sizes = [b - a for a, b in itertools.pairwise(cuts)]
    assert all(1 <= size <= 13 for size in sizes) and len(sizes) >= 8
    assert slice_bounds(5, 10, 3, RandomSource(1, "s")) == [0, 5]
    assert slice_bounds(0, 10, 3, RandomSource(1, "s")) == [0, 0]


def test_same_listen_treats_port_zero_and_localhost_as_matching() -> None:
    assert same_listen("127.0.0.1:4000", "127.0.0.1:4000")
    assert same_listen("127.0.0.1:4000", "127.0.0.1:0")
    assert same_listen("127.0.0.1:4000", "localhost:4000")
    assert not same_listen("127.0.0.1:4000", "127.0.0.1:4001")
    assert not same_listen("127.0.0.1:4000", "0.0.0.0:4000")


def test_locate_prefers_url_then_binary_then_embedded() -> None:
    on_path = {"toxiproxy-server": "/usr/bin/toxiproxy-server"}.get
    nothing: dict[str, str] = {}
    assert locate_fault_proxy({"TOXIPROXY_URL": "127.0.0.1:8474/"}, on_path) == FaultProxyChoice(
        "url", url="http://127.0.0.1:8474"
    )
    binary = locate_fault_proxy(nothing, on_path)
    assert binary == FaultProxyChoice("binary", binary="/usr/bin/toxiproxy-server")
    assert binary.server_argv("127.0.0.1", 9000, seed=5) == [
        "/usr/bin/toxiproxy-server",
        "-host",
        "127.0.0.1",
        "-port",
        "9000",
        "-seed",
        "5",
    ]
    embedded = locate_fault_proxy(nothing, lambda name: None)
    assert embedded.kind == "embedded"
    argv = embedded.server_argv("127.0.0.1", 9000, seed=5)
    assert argv[-6:] == ["serve", "faultproxy", "--listen", "127.0.0.1:9000", "--seed", "5"]
    with pytest.raises(ValueError):
        locate_fault_proxy({"TOXIPROXY_URL": "http://h:1"}, on_path).server_argv("h", 1)
