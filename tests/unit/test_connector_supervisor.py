"""Pure decisions of the connection supervisor: edge choice, spread, backoff, error classes."""

from __future__ import annotations

import random

import pytest

from reference.connector.supervisor import ConnectionSupervisor, EdgeAddress, Move, RetryPolicy
from reference.wire import Disconnect, RefusalCause, RegistrationResponse

AMS = EdgeAddress("127.0.0.1", 7001)
FRA = EdgeAddress("127.0.0.1", 7002)


def supervisor(
    addresses: list[EdgeAddress] | None = None, n: int = 4, **kwargs: object
) -> ConnectionSupervisor:
    return ConnectionSupervisor(
        addresses or [AMS, FRA],
        n,
        rng=random.Random(7),
        tunnel_id="tid",
        credentials="/creds.json",
        **kwargs,  # type: ignore[arg-type]
    )


def register_all(sup: ConnectionSupervisor, locations: dict[EdgeAddress, str]) -> list[str]:
    placed = []
    for slot in range(sup.ha_connections):
        address = sup.choose_address(slot, now=0.0)
        sup.on_registered(slot, address, locations[address])
        placed.append(locations[address])
    return placed


def test_four_connections_spread_two_and_two_over_two_pops() -> None:
    sup = supervisor()
    placed = register_all(sup, {AMS: "ams", FRA: "fra"})
    assert sorted(placed) == ["ams", "ams", "fra", "fra"]
    assert sup.load(registered_only=True) == {"ams": 2, "fra": 2}


def test_slots_choosing_at_the_same_time_still_spread() -> None:
    sup = supervisor()
    chosen = [sup.choose_address(slot, now=0.0) for slot in range(4)]
    assert chosen.count(AMS) == 2 and chosen.count(FRA) == 2


def test_two_addresses_of_one_pop_do_not_count_as_a_spread() -> None:
    fra2 = EdgeAddress("127.0.0.1", 7003)
    sup = supervisor([AMS, FRA, fra2])
    locations = {AMS: "ams", FRA: "fra", fra2: "fra"}
    sup.on_registered(0, sup.choose_address(0, 0.0), "ams")
    for slot in range(1, 4):
        address = sup.choose_address(slot, 0.0)
        sup.on_registered(slot, address, locations[address])
    assert sup.load(registered_only=True) == {"ams": 2, "fra": 2}


def test_dial_failure_moves_to_another_address() -> None:
    sup = supervisor(n=1)
    first = sup.choose_address(0, now=0.0)
    decision = sup.on_dial_failed(0, first, now=0.0)
    assert not decision.permanent and decision.reason == "dial_error"
    assert sup.choose_address(0, now=0.1) != first


def test_all_addresses_failing_picks_the_one_cooling_down_soonest() -> None:
    sup = supervisor(n=1)
    sup.on_dial_failed(0, AMS, now=0.0)
    sup.on_dial_failed(0, AMS, now=0.0)  # AMS: 2 failures, longer cooldown
    sup.on_dial_failed(0, FRA, now=0.0)
    assert sup.choose_address(0, now=0.1) == FRA


def test_backoff_is_full_jitter_bounded_by_base_times_two_to_the_attempt() -> None:
    policy = RetryPolicy(base=0.1, cap=2.0)
    assert [policy.bound(n) for n in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    rng = random.Random(1)
    samples = [policy.delay(3, rng) for _ in range(2000)]
    assert min(samples) >= 0 and max(samples) <= 0.8
    assert min(samples) < 0.05 and max(samples) > 0.75, "jitter covers the whole range"


def test_attempts_grow_and_reset_on_registration() -> None:
    sup = supervisor(n=1)
    bounds = []
    for _ in range(8):
        address = sup.choose_address(0, now=0.0)
        sup.on_dial_failed(0, address, now=0.0)
        bounds.append(sup.bound(0))
    assert bounds == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    assert sup.attempts(0) == 8
    sup.on_registered(0, AMS, "ams")
    assert sup.attempts(0) == 0
    decision = sup.on_connection_lost(0, AMS, "eof", None, now=1.0)
    assert decision.delay <= 0.1, "a dropped healthy connection is re-dialled at once"


def test_retry_after_is_a_floor_for_the_delay() -> None:
    sup = supervisor(n=1)
    refusal = RegistrationResponse.refusal(
        RefusalCause.UNKNOWN_TUNNEL, should_retry=True, retry_after=1.5
    )
    decision = sup.on_refused(0, AMS, refusal, now=0.0)
    assert not decision.permanent and decision.delay >= 1.5
    disconnect = Disconnect(RefusalCause.UNAVAILABLE, should_retry=True, retry_after=0.7)
    lost = sup.on_connection_lost(0, AMS, "closed by peer", disconnect, now=0.0)
    assert lost.delay >= 0.7


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (RefusalCause.TUNNEL_DELETED, "was deleted"),
        (RefusalCause.INVALID_SECRET, "/creds.json"),
        (RefusalCause.ACCOUNT_MISMATCH, "AccountTag"),
        ("something else", "permanently"),
    ],
)
def test_permanent_refusals_stop_with_a_message_that_says_what_to_do(
    cause: str, expected: str
) -> None:
    sup = supervisor(n=1)
    decision = sup.on_refused(
        0, AMS, RegistrationResponse.refusal(cause, should_retry=False), now=0.0
    )
    assert decision.permanent and expected in decision.message and decision.reason == cause


def test_unknown_tunnel_is_retried_not_permanent() -> None:
    sup = supervisor(n=1)
    refusal = RegistrationResponse.refusal(RefusalCause.UNKNOWN_TUNNEL, should_retry=True)
    assert not sup.on_refused(0, AMS, refusal, now=0.0).permanent


def test_edge_disconnect_without_retry_is_permanent() -> None:
    sup = supervisor(n=1)
    decision = sup.on_connection_lost(
        0, AMS, "closed by peer", Disconnect(RefusalCause.TUNNEL_DELETED, False), now=0.0
    )
    assert decision.permanent and "create a new tunnel" in decision.message


def test_duplicate_connection_avoids_that_address_next_time() -> None:
    sup = supervisor(n=1)
    address = sup.choose_address(0, now=0.0)
    refusal = RegistrationResponse.refusal(RefusalCause.DUPLICATE_CONNECTION, should_retry=True)
    sup.on_refused(0, address, refusal, now=0.0)
    assert sup.choose_address(0, now=0.0) != address


def test_heartbeat_timeout_penalises_the_address() -> None:
    sup = supervisor(n=1)
    sup.on_registered(0, AMS, "ams")
    sup.on_connection_lost(0, AMS, "heartbeat timeout", None, now=0.0)
    assert sup.choose_address(0, now=0.1) == FRA


def test_rebalance_moves_one_connection_at_a_time_back_to_a_returning_pop() -> None:
    sup = supervisor()
    # FRA down at start: every slot ends up on AMS.
    for slot in range(4):
        sup.on_dial_failed(slot, FRA, now=0.0)
    for slot in range(4):
        address = sup.choose_address(slot, now=0.1)
        assert address == AMS
        sup.on_registered(slot, address, "ams")
    assert sup.rebalance(now=0.2) is None, "FRA still cooling down"
    move = sup.rebalance(now=100.0)
    assert move == Move(3, FRA)
    # the move fails: FRA still down, cooled down again
    sup.on_move_failed(FRA, now=100.0)
    assert sup.rebalance(now=100.1) is None
    # FRA is back: the move succeeds, then a second one balances 2/2
    move = sup.rebalance(now=200.0)
    assert move is not None
    sup.on_registered(move.slot, move.address, "fra")
    assert sup.load(registered_only=True) == {"ams": 3, "fra": 1}
    second = sup.rebalance(now=200.1)
    assert second is not None and second.address == FRA
    sup.on_registered(second.slot, second.address, "fra")
    assert sup.load(registered_only=True) == {"ams": 2, "fra": 2}
    assert sup.rebalance(now=300.0) is None


def test_a_failed_probe_replaces_a_long_cooldown_with_a_short_one() -> None:
    """Connections lost at a PoP escalate its cooldown (to 4 s); rebalance probes during the
    outage must not keep it there, or a healed PoP is found only seconds after the heal."""
    sup = supervisor()
    for slot in range(4):  # FRA failed many times: its cooldown is at the cap
        for _ in range(5):
            sup.on_dial_failed(slot, FRA, now=0.0)
    for slot in range(4):
        sup.on_registered(slot, sup.choose_address(slot, now=0.1), "ams")
    assert sup.rebalance(now=3.9) is None, "still in the 4 s cooldown"
    move = sup.rebalance(now=4.0)
    assert move is not None and move.address == FRA
    sup.on_move_failed(FRA, now=4.0)
    assert sup.rebalance(now=4.0 + 0.49) is None
    again = sup.rebalance(now=4.0 + RetryPolicy().probe_cooldown)
    assert again is not None and again.address == FRA


def test_a_probe_refused_with_a_hint_waits_the_hint() -> None:
    """An edge that refuses a rebalance probe with retry_after 2 s is not probed again sooner
    (the short probe cooldown would otherwise hammer it every half second)."""
    sup = supervisor()
    for slot in range(4):  # fra failed once: every slot registers at ams
        sup.on_dial_failed(slot, FRA, now=0.0)
    for slot in range(4):
        sup.on_registered(slot, sup.choose_address(slot, now=0.1), "ams")
    move = sup.rebalance(now=10.0)
    assert move is not None and move.address == FRA
    refusal = RegistrationResponse.refusal(
        RefusalCause.UNKNOWN_TUNNEL, should_retry=True, retry_after=2.0
    )
    sup.on_move_failed(FRA, now=10.0, refusal=refusal)
    assert sup.rebalance(now=10.0 + RetryPolicy().probe_cooldown) is None
    assert sup.rebalance(now=11.99) is None
    again = sup.rebalance(now=12.0)
    assert again is not None and again.address == FRA


def test_no_rebalance_while_a_slot_is_reconnecting() -> None:
    sup = supervisor()
    register_all(sup, {AMS: "ams", FRA: "ams"})
    sup.release(0)
    assert sup.rebalance(now=10.0) is None


def test_known_locations_come_from_memory() -> None:
    sup = supervisor(locations={AMS: "ams", FRA: "fra"})
    assert sup.location_of(AMS) == "ams" and sup.known_locations() == {AMS: "ams", FRA: "fra"}


def test_invalid_arguments_are_explained() -> None:
    with pytest.raises(ValueError, match="--edge"):
        ConnectionSupervisor([], 4)
    with pytest.raises(ValueError, match="must be > 0"):
        RetryPolicy(base=0, cap=1)
