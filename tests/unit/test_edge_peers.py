"""PeerDirectory and RegistrationSummary: what a PoP believes its peers hold (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from reference.edge.peers import PeerDirectory, RegistrationBoard, RegistrationSummary


def summary(pop: str, version: int, **tunnels: int) -> RegistrationSummary:
    return RegistrationSummary(pop, "epoch-1", version, dict(tunnels))


def test_holders_are_reachable_peers_with_connections_most_first() -> None:
    directory = PeerDirectory(("fra", "lhr", "par"))
    assert directory.holders("t1") == []
    directory.update(summary("fra", 1, t1=1), now=0.0)
    directory.update(summary("lhr", 1, t1=3, t2=1), now=0.0)
    directory.update(summary("par", 1, t2=2), now=0.0)
    assert directory.holders("t1") == ["lhr", "fra"]
    assert directory.holders("t2") == ["par", "lhr"]
    assert directory.holders("t3") == []


def test_an_unreachable_peer_is_no_holder_until_it_answers_again() -> None:
    directory = PeerDirectory(("fra",))
    directory.update(summary("fra", 1, t1=2), now=0.0)
    assert directory.mark_unreachable("fra", now=1.0) is True
    assert directory.mark_unreachable("fra", now=1.5) is False  # already known
    assert directory.holders("t1") == []
    assert directory.known_version("fra") == ("epoch-1", 1)
    assert directory.update(summary("fra", 1, t1=2), now=2.0) is True  # reachable again
    assert directory.holders("t1") == ["fra"]


def test_a_peer_with_zero_connections_is_no_holder() -> None:
    directory = PeerDirectory(("fra",))
    directory.update(summary("fra", 1, t1=2), now=0.0)
    assert directory.update(summary("fra", 2, t1=0), now=1.0) is True
    assert directory.holders("t1") == []
    assert directory.update(summary("fra", 3, t1=0), now=2.0) is False  # nothing changed


def test_answers_from_unknown_pops_are_ignored() -> None:
    directory = PeerDirectory(("fra",))
    assert directory.update(summary("evil", 1, t1=9), now=0.0) is False
    assert directory.holders("t1") == []


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"pop": "fra", "epoch": "e", "version": -1, "tunnels": {}},
        {"pop": "fra", "epoch": "e", "version": True, "tunnels": {}},
        {"pop": "fra", "epoch": "e", "version": 1, "tunnels": {"t": "2"}},
        {"pop": "fra", "epoch": "e", "version": 1, "tunnels": {"t": -1}},
        {"pop": 1, "epoch": "e", "version": 1, "tunnels": {}},
    ],
)
def test_malformed_summaries_are_refused(data: object) -> None:
    with pytest.raises(ValueError):
        RegistrationSummary.from_json(data)


def test_summary_round_trips() -> None:
    original = summary("fra", 7, t1=2)
    assert RegistrationSummary.from_json(original.to_json()) == original


async def test_the_board_long_poll_answers_on_change_or_after_the_wait() -> None:
    counts = {"t1": 1}
    board = RegistrationBoard("ams", lambda: dict(counts))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await board.wait_newer(board.epoch, board.version, wait=0.2)
    assert loop.time() - started >= 0.15  # nothing changed: waited
    waiter = asyncio.create_task(board.wait_newer(board.epoch, board.version, wait=5.0))
    await asyncio.sleep(0.05)
    counts["t1"] = 2
    board.changed()
    await asyncio.wait_for(waiter, 1.0)  # woken by the change, long before the wait
    assert board.summary().tunnels == {"t1": 2}
    started = loop.time()
    await board.wait_newer("another-epoch", board.version, wait=5.0)  # restarted peer: at once
    assert loop.time() - started < 0.5


async def test_closing_the_board_releases_waiting_polls_at_once() -> None:
    board = RegistrationBoard("ams", dict)
    waiter = asyncio.create_task(board.wait_newer(board.epoch, board.version, wait=30.0))
    await asyncio.sleep(0.05)
    board.close()
    await asyncio.wait_for(waiter, 1.0)  # not the 30 s wait
    await asyncio.wait_for(board.wait_newer(board.epoch, board.version, wait=30.0), 1.0)
