"""The anycast route table (sans-I/O) with explicit times."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.anycast.dns_framing import DnsMessageCounter
from reference.anycast.routing import Region, Route, RouteTable, default_regions

POPS = ("ams", "fra")


def table(announce_delay: float | None = None) -> RouteTable:
    return RouteTable(POPS, convergence=1.0, announce_delay=announce_delay)


def state(t: RouteTable, pop: str, now: float) -> str:
    entry = next(p for p in t.snapshot(now)["pops"] if p["name"] == pop)
    return str(entry["state"])


def test_everything_is_routed_at_start_and_each_region_prefers_its_own_pop() -> None:
    t = table()
    assert all(t.routed(p, 0.0) for p in POPS)
    seen = {t.choose(0.0) for _ in range(50)}
    assert seen == {Route("ams", "ams"), Route("fra", "fra")}


def test_failing_pop_stays_routed_until_the_convergence_delay_has_passed() -> None:
    t = table()
    t.observe("ams", False, 10.0)
    assert state(t, "ams", 10.0) == "failing"
    t.observe("ams", False, 10.5)  # still failing: the clock keeps running from 10.0
    assert t.routed("ams", 10.99)
    assert not t.routed("ams", 11.0)
    assert state(t, "ams", 11.0) == "withdrawn"
    assert {t.choose(11.2).pop for _ in range(20)} == {"fra"}


def test_a_healthy_check_while_failing_cancels_the_withdrawal() -> None:
    t = table()
    t.observe("ams", False, 1.0)
    t.observe("ams", True, 1.5)
    assert state(t, "ams", 1.5) == "announced"
    assert t.routed("ams", 5.0)


def test_withdrawn_pop_is_reannounced_after_announce_delay() -> None:
    t = table(announce_delay=2.0)
    t.observe("ams", False, 0.0)
    assert not t.routed("ams", 1.0)
    t.observe("ams", True, 3.0)
    assert state(t, "ams", 3.0) == "recovering"
    assert not t.routed("ams", 4.99)
    assert t.routed("ams", 5.0)
    assert state(t, "ams", 5.0) == "announced"


def test_a_failure_while_recovering_restarts_the_announce_delay() -> None:
    t = table()
    t.observe("ams", False, 0.0)
    t.observe("ams", True, 2.0)
    t.observe("ams", False, 2.5)
    assert state(t, "ams", 2.5) == "withdrawn"
    t.observe("ams", True, 2.6)
    assert not t.routed("ams", 3.5)
    assert t.routed("ams", 3.6)


def test_route_changes_are_reported_with_their_effective_time() -> None:
    t = table()
    t.observe("ams", False, 4.0)
    t.advance(7.0)
    changes = t.changes()
    assert [(c.old, c.new, c.at, c.route_flipped) for c in changes] == [
        ("announced", "failing", 4.0, False),
        ("failing", "withdrawn", 5.0, True),
    ]
    assert t.changes() == []
    snap = next(p for p in t.snapshot(7.0)["pops"] if p["name"] == "ams")
    assert snap["seconds_since_change"] == 2.0
    assert snap["last_health"]["ok"] is False


def test_operator_withdrawal_takes_effect_after_convergence_and_announce_after_delay() -> None:
    t = table(announce_delay=0.5)
    t.withdraw("ams", 1.0)
    assert t.routed("ams", 1.9)
    assert not t.routed("ams", 2.0)
    t.observe("ams", True, 2.5)  # healthy does not undo an operator withdrawal
    assert not t.routed("ams", 3.0)
    t.announce("ams", 3.0)
    assert not t.routed("ams", 3.4)
    assert t.routed("ams", 3.5)


def test_operator_announce_before_the_withdrawal_propagated_cancels_it() -> None:
    t = table()
    t.withdraw("ams", 1.0)
    t.announce("ams", 1.5)
    assert t.routed("ams", 10.0)
    assert not any(c.route_flipped for c in t.changes())


def test_region_falls_back_along_its_preference_then_to_any_routed_pop() -> None:
    pops = ("ams", "fra", "lhr")
    regions = (Region("eu", ("ams", "fra")),)
    t = RouteTable(pops, regions, convergence=0.0)
    assert t.choose(0.0) == Route("eu", "ams")
    t.observe("ams", False, 1.0)
    assert t.choose(1.0) == Route("eu", "fra")
    t.observe("fra", False, 1.0)
    assert t.choose(1.0) == Route("eu", "lhr")


def test_no_routed_pop_gives_none() -> None:
    t = RouteTable(POPS, convergence=0.0)
    for pop in POPS:
        t.observe(pop, False, 1.0)
    assert t.choose(1.0).pop is None


def test_region_weights_share_connections() -> None:
    regions = (Region("eu", ("ams", "fra"), 3.0), Region("us", ("fra", "ams"), 1.0))
    t = RouteTable(POPS, regions, seed=7)
    counts = Counter(t.choose(0.0).region for _ in range(4000))
    assert 0.70 < counts["eu"] / 4000 < 0.80


def test_same_seed_same_sequence_different_seed_different() -> None:
    def sequence(seed: int) -> list[Route]:
        t = RouteTable(POPS, seed=seed)
        return [t.choose(0.0) for _ in range(64)]

    assert sequence(1) == sequence(1)
    assert sequence(1) != sequence(2)


def test_default_regions_prefer_themselves_then_the_others_in_order() -> None:
    assert default_regions(("ams", "fra", "lhr")) == (
        Region("ams", ("ams", "fra", "lhr")),
        Region("fra", ("fra", "ams", "lhr")),
        Region("lhr", ("lhr", "ams", "fra")),
    )


@pytest.mark.parametrize(
    ("regions", "message"),
    [
        ((Region("eu", ("ams", "xyz")),), "unknown PoP 'xyz'"),
        ((Region("eu", ("ams",), 0.0),), "weight must be > 0"),
        ((Region("eu", ("ams",)), Region("eu", ("fra",))), "unique"),
        ((Region("eu", ()),), "prefers no PoP"),
    ],
)
def test_bad_regions_are_refused(regions: tuple[Region, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RouteTable(POPS, regions)


def test_unknown_pop_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="no PoP 'xyz' \\(have: ams, fra\\)"):
        table().withdraw("xyz", 0.0)


def test_time_never_runs_backwards() -> None:
    t = table()
    t.observe("ams", False, 5.0)
    t.observe("ams", False, 1.0)  # a late, out-of-order observation
    assert t.routed("ams", 5.5)
    assert not t.routed("ams", 6.0)


def test_dns_message_counter_handles_split_and_joined_frames() -> None:
    counter = DnsMessageCounter()
    first, second = b"\x00\x03abc", b"\x00\x02xy"
    stream = first + second
    assert counter.feed(stream[:1]) == 0
    assert counter.feed(stream[1:4]) == 0
    assert counter.feed(stream[4:]) == 2
    assert counter.feed(first * 3) == 3


# ---- properties ------------------------------------------------------------------------------

EPSILON = 1e-6

steps = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=3.0, allow_nan=False),
        st.sampled_from(["ok", "fail", "query"]),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    steps=steps,
    convergence=st.floats(min_value=0.0, max_value=2.0),
    announce_delay=st.floats(min_value=0.0, max_value=2.0),
)
def test_route_follows_continuous_health_within_the_delays(
    steps: list[tuple[float, str]], convergence: float, announce_delay: float
) -> None:
    """Failing continuously for longer than ``convergence`` → not routed; healthy continuously
    for longer than ``announce_delay`` → routed; whatever came before."""
    t = RouteTable(POPS, convergence=convergence, announce_delay=announce_delay)
    now = 0.0
    run: tuple[str, float] | None = None  # (kind of the current run of observations, its start)
    for gap, kind in steps:
        now += gap
        if kind != "query":
            t.observe("ams", kind == "ok", now)
            if run is None or run[0] != kind:
                run = (kind, now)
        if run is None:
            assert t.routed("ams", now)  # nothing observed yet: announced
            continue
        held = now - run[1]
        if run[0] == "fail" and held > convergence + EPSILON:
            assert not t.routed("ams", now)
            assert t.choose(now).pop == "fra"
        if run[0] == "ok" and held > announce_delay + EPSILON:
            assert t.routed("ams", now)


@settings(max_examples=200, deadline=None)
@given(
    actions=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=3.0, allow_nan=False),
            st.sampled_from(["withdraw", "announce", "ok", "fail", "query"]),
        ),
        max_size=40,
    )
)
def test_operator_withdrawal_always_wins_after_convergence(
    actions: list[tuple[float, str]],
) -> None:
    t = RouteTable(POPS, convergence=1.0, announce_delay=0.5)
    now = 0.0
    withdrawn_at: float | None = None
    for gap, action in actions:
        now += gap
        if action == "withdraw":
            t.withdraw("ams", now)
            withdrawn_at = now if withdrawn_at is None else withdrawn_at
        elif action == "announce":
            t.announce("ams", now)
            withdrawn_at = None
        elif action in ("ok", "fail"):
            t.observe("ams", action == "ok", now)
        if withdrawn_at is not None and now - withdrawn_at > 1.0 + EPSILON:
            assert not t.routed("ams", now)
        assert t.routed("fra", now)  # nothing ever touched fra
