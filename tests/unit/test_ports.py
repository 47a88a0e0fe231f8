"""Port allocation for stacks: outside the ephemeral range, never a bound port, never a port
another Outlast process reserved."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from harness.stack import ports


@pytest.fixture
def small_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> range:
    """Five candidate ports (a free block found now) and reservations under tmp_path."""
    base = next(
        p
        for p in range(20000, 30000, 7)
        if all(ports._bindable("127.0.0.1", p + i) for i in range(5))
    )
    candidates = range(base, base + 5)
    monkeypatch.setattr(ports, "_candidate_range", lambda: candidates)
    monkeypatch.setattr(ports, "_RESERVATIONS", tmp_path / "reservations")
    monkeypatch.setattr(ports, "_handed_out", set())
    return candidates


def test_ports_come_from_below_the_ephemeral_range() -> None:
    low, _ = ports._ephemeral_range()
    picked = [ports.free_port() for _ in range(20)]
    assert len(set(picked)) == 20
    assert all(1024 < p < low for p in picked) or all(p >= 61000 for p in picked)


def test_a_bound_port_is_never_handed_out(small_range: range) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", small_range[0]))
        held.listen()
        picked = {ports.free_port() for _ in range(4)}
    assert picked == set(small_range[1:])


def test_another_process_reservations_are_respected(
    small_range: range, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = {ports.free_port() for _ in range(3)}
    monkeypatch.setattr(ports, "_handed_out", set())  # as a second process would start
    second = {ports.free_port() for _ in range(2)}
    assert first.isdisjoint(second) and first | second == set(small_range)
    with pytest.raises(RuntimeError, match="no free port"):
        ports.free_port()


def test_stale_reservations_expire(small_range: range, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = {ports.free_port() for _ in range(5)}
    monkeypatch.setattr(ports, "_handed_out", set())
    monkeypatch.setattr(ports, "_RESERVATION_TTL", 0.0)
    assert ports.free_port() in taken
