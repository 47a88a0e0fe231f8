"""The reconnect policy of the most used peer connector (cloudflared), as a pure model.

What the policy predicts for a link fault, computed from the policy itself (no sockets, no
clock: the caller passes a seeded ``random.Random``). The algorithm is the one recorded in
/work/shared/research/cloudflared.md section 2.3 (``retry/backoffhandler.go``,
``supervisor/tunnel.go``, ``supervisor/supervisor.go``):

* **Per-connection backoff** (base 1 s, ``--retries`` 5, retry forever). Before each wait the
  retry count is reset to 0 if the reset deadline has passed, then raised by one unless it is at
  the maximum; the wait is uniform in ``[0, base * 2**retries)`` ("full jitter"). A connection
  that registers calls ``ResetNow`` (deadline = now), so right after a healthy connection drops
  the wait is U(0, 2 s), then U(0, 4 s) ... U(0, 32 s), then capped at U(0, 32 s).
* **Supervisor layer** (base 10 s, same retry count). After the per-connection wait the
  connection's ``Serve`` returns its error to the supervisor, which queues the index and arms
  one *shared* timer U(0, 10 s * 2**k) if none is armed; when it fires every queued index is
  dialled again. So every attempt after a drop waits the per-connection jitter plus (a share of)
  the supervisor jitter.

A fault is modelled as: the affected connections drop ``detection`` seconds after the fault
starts (0 for a reset or a link taken down; a heartbeat or idle timeout for a black hole), every
attempt while the link is broken fails after ``attempt_failure`` seconds (about 0 when the
link refuses or resets; the dial timeout when it swallows the handshake), and the first attempt
that starts at or after the heal succeeds at once. The result is, per trial, the time from the
heal to the first and to the last affected connection being registered again.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

#: cloudflared's dial timeout (section 2.5): what an attempt into a black hole costs.
PEER_DIAL_TIMEOUT = 15.0


@dataclass
class BackoffHandler:
    """cloudflared's ``retry.BackoffHandler`` (retry forever), times in seconds."""

    base: float
    max_retries: int
    retries: int = 0
    reset_deadline: float | None = None

    def timer(self, now: float, rng: random.Random) -> float:
        """``BackoffTimer()``: the wait before the next attempt (and the state change)."""
        if self.reset_deadline is not None and now > self.reset_deadline:
            self.retries = 0
            self.reset_deadline = None
        if self.retries < self.max_retries:
            self.retries += 1
        return rng.uniform(0.0, self.base * 2**self.retries)

    def max_backoff(self, now: float) -> float:
        """``GetMaxBackoffDuration()``: the "retrying in up to" figure cloudflared logs."""
        if self.reset_deadline is not None and now > self.reset_deadline:
            return 1.0
        return self.base * 2 ** (self.retries + 1)

    def reset_now(self, now: float) -> None:
        """``ResetNow()``: called when the connection registers."""
        self.reset_deadline = now

    def set_grace_period(self, now: float, rng: random.Random) -> None:
        """``SetGracePeriod()``: keep the retry count for U(0, base * 2**(retries+2))."""
        self.reset_deadline = now + rng.uniform(0.0, self.base * 2 ** (self.retries + 2))


@dataclass(frozen=True)
class PeerPolicy:
    """The policy's parameters (cloudflared defaults)."""

    connection_base: float = 1.0
    supervisor_base: float = 10.0
    retries: int = 5
    supervisor: bool = True

    @property
    def connection_cap(self) -> float:
        """The largest per-connection wait bound (32 s with the defaults)."""
        return self.connection_base * 2**self.retries

    @property
    def supervisor_cap(self) -> float:
        """The largest supervisor wait bound (320 s with the defaults)."""
        return self.supervisor_base * 2**self.retries


@dataclass(frozen=True)
class LinkFault:
    """One trial: the link breaks at 0 and heals at ``duration``."""

    duration: float
    detection: float = 0.0
    attempt_failure: float = 0.0

    def __post_init__(self) -> None:
        if self.duration <= 0 or self.detection < 0 or self.attempt_failure < 0:
            raise ValueError(
                f"a fault needs duration > 0, detection >= 0 and attempt_failure >= 0, got "
                f"{self.duration}, {self.detection}, {self.attempt_failure}"
            )


@dataclass(frozen=True)
class Reconnect:
    """Seconds from the heal until the first / the last affected connection is registered.

    Both are 0 when the fault ended before it was detected (nothing dropped). ``attempts`` counts
    the dials made during and after the fault.
    """

    first: float
    last: float
    attempts: int
    dropped: bool = True


@dataclass(order=True)
class _Event:
    at: float
    order: int
    kind: str = field(compare=False)
    index: int = field(compare=False, default=-1)


MAX_EVENTS = 100_000


def simulate(
    fault: LinkFault,
    connections: int,
    rng: random.Random,
    policy: PeerPolicy | None = None,
) -> Reconnect:
    """What ``policy`` predicts for ``connections`` connections that go through the link."""
    policy = policy or PeerPolicy()
    if connections < 1:
        raise ValueError("at least one connection must go through the faulted link")
    heal = fault.duration
    if fault.detection >= heal:
        return Reconnect(0.0, 0.0, 0, dropped=False)
    per_connection = [
        BackoffHandler(policy.connection_base, policy.retries, reset_deadline=-1.0)
        for _ in range(connections)
    ]
    supervisor = BackoffHandler(policy.supervisor_base, policy.retries)
    events: list[_Event] = []
    counter = 0

    def push(at: float, kind: str, index: int = -1) -> None:
        nonlocal counter
        counter += 1
        heapq.heappush(events, _Event(at, counter, kind, index))

    def serve_returned(now: float, index: int) -> None:
        """``Serve`` failed: per-connection wait, then hand the index to the supervisor."""
        wait = per_connection[index].timer(now, rng)
        push(now + wait, "to_supervisor" if policy.supervisor else "dial", index)

    for index in range(connections):
        serve_returned(fault.detection, index)
    waiting: list[int] = []
    timer_armed = False
    registered: dict[int, float] = {}
    attempts = 0
    for _ in range(MAX_EVENTS):
        if len(registered) == connections or not events:
            break
        event = heapq.heappop(events)
        now = event.at
        if event.kind == "to_supervisor":
            waiting.append(event.index)
            if not timer_armed:
                timer_armed = True
                push(now + supervisor.timer(now, rng), "supervisor_fires")
        elif event.kind == "supervisor_fires":
            timer_armed = False
            for index in waiting:
                push(now, "dial", index)
            waiting = []
        elif event.kind == "dial":
            attempts += 1
            if now >= heal:
                registered[event.index] = now
                per_connection[event.index].reset_now(now)
            else:
                serve_returned(now + fault.attempt_failure, event.index)
    else:
        raise RuntimeError(f"the model did not converge within {MAX_EVENTS} events")
    if len(registered) < connections:
        raise RuntimeError("the model ran out of events before every connection registered")
    times = sorted(t - heal for t in registered.values())
    return Reconnect(times[0], times[-1], attempts)


def predict(
    faults: list[LinkFault],
    connections: int,
    seed: int = 0,
    policy: PeerPolicy | None = None,
) -> list[Reconnect]:
    """:func:`simulate` for every trial, from one seeded random source (reproducible)."""
    rng = random.Random(seed)
    return [simulate(fault, connections, rng, policy) for fault in faults]
