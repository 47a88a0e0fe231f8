"""Heartbeat bookkeeping (pure: the caller supplies the clock)."""

from __future__ import annotations

from reference.wire.messages import HeartbeatConfig


class HeartbeatTracker:
    """When to send the next PING and whether the peer has gone silent for too long.

    Anything received from the peer counts as a sign of life (not only PING ACKs), so a busy
    connection is never declared dead because a PING ACK queued behind data.
    """

    def __init__(self, config: HeartbeatConfig, now: float) -> None:
        self.config = config
        self.last_received = now
        self.last_ping_sent = now
        self.rtt: float | None = None

    def received(self, now: float) -> None:
        self.last_received = now

    def ping_sent(self, now: float) -> None:
        self.last_ping_sent = now

    def ack_received(self, sent_at: float, now: float) -> None:
        self.rtt = max(0.0, now - sent_at)

    def ping_due(self, now: float) -> bool:
        return now - self.last_ping_sent >= self.config.interval

    def expired(self, now: float) -> bool:
        return now - self.last_received >= self.config.timeout

    def silence(self, now: float) -> float:
        """Seconds since anything was received."""
        return now - self.last_received

    def next_deadline(self) -> float:
        """The clock value at which ``tick`` should run next."""
        return min(
            self.last_ping_sent + self.config.interval,
            self.last_received + self.config.timeout,
        )
