"""Pure decisions of the HA connection supervisor: which edge address next, how long to wait,
when to give up, and when to move a connection to spread over PoPs. No sockets, no clock:
callers pass ``now`` and a random source, so every rule is unit-testable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from reference.addresses import parse_hostport
from reference.connector.legacy import legacy_permanent_message
from reference.wire import Disconnect, RefusalCause, RegistrationResponse


@dataclass(frozen=True, order=True)
class EdgeAddress:
    """One edge tunnel endpoint."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> EdgeAddress:
        host, port = parse_hostport(text)
        return cls(host, port)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt ``n`` waits U(0, min(cap, base * 2**n)).

    Defaults (base 0.1 s, cap 2 s): a connection that just dropped is re-dialled within 0.1 s,
    and after a long outage a healed link is tried again within 2 s (1 s on average).
    ``address_cooldown_*``: how long a failing address is avoided while others exist.
    ``probe_cooldown``: the longest a failed rebalance probe keeps an address cooling. A probe
    is make-before-break (every slot is serving elsewhere), so a failed one costs no traffic and
    the healed PoP is found within one probe period instead of at the end of a long cooldown.
    """

    base: float = 0.1
    cap: float = 2.0
    address_cooldown_base: float = 0.5
    address_cooldown_cap: float = 4.0
    probe_cooldown: float = 0.5

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError(
                f"retry base ({self.base} s) must be > 0 and not above the cap ({self.cap} s)"
            )

    def bound(self, attempt: int) -> float:
        """The upper bound of the wait before attempt ``attempt`` (0-based)."""
        return min(self.cap, self.base * 2 ** min(attempt, 30))

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, self.bound(attempt))

    def cooldown(self, failures: int) -> float:
        return min(
            self.address_cooldown_cap, self.address_cooldown_base * 2 ** max(failures - 1, 0)
        )


@dataclass(frozen=True)
class Decision:
    """What a connection slot does after a failure."""

    delay: float
    permanent: bool = False
    message: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Move:
    """Rebalance: re-home ``slot`` on ``address`` (make-before-break)."""

    slot: int
    address: EdgeAddress


@dataclass
class _AddressState:
    failures: int = 0
    cooldown_until: float = 0.0
    location: str | None = None


@dataclass
class _SlotState:
    address: EdgeAddress | None = None
    registered: bool = False
    attempt: int = 0
    avoid: set[EdgeAddress] = field(default_factory=set)


def permanent_message(cause: str, tunnel_id: str, credentials: str) -> str:
    """What to tell the user when the edge refuses the tunnel for good."""
    if cause == RefusalCause.TUNNEL_DELETED:
        return (
            f"tunnel {tunnel_id} was deleted, so its credentials are revoked: create a new tunnel "
            "with `outlast tunnel create NAME`, route DNS to it with `outlast tunnel route dns`, "
            "and run that one"
        )
    if cause == RefusalCause.INVALID_SECRET:
        return (
            f"the edge rejected the tunnel secret in {credentials} for tunnel {tunnel_id}: the "
            "file does not belong to this tunnel (or the tunnel was re-created). Use the "
            "credentials file written by `outlast tunnel create`, or fetch it again with "
            "`outlast tunnel token --cred-file FILE TUNNEL`"
        )
    if cause == RefusalCause.ACCOUNT_MISMATCH:
        return (
            f"tunnel {tunnel_id} does not belong to the account in {credentials} (AccountTag): "
            "use the credentials file of this tunnel's account"
        )
    legacy = legacy_permanent_message(cause, credentials)
    if legacy is not None:
        return legacy
    return (
        f"the edge refused tunnel {tunnel_id} permanently ({cause}); check the tunnel with "
        "`outlast tunnel info` and the credentials file, then start the connector again"
    )


def hinted_wait(refusal: RegistrationResponse) -> float:
    """How long an edge that refused a registration asked to be left alone (its
    ``retry_after``; 0 without a hint)."""
    return refusal.retry_after or 0.0


class ConnectionSupervisor:
    """Bookkeeping for ``ha_connections`` slots over a list of edge addresses."""

    def __init__(
        self,
        addresses: list[EdgeAddress],
        ha_connections: int,
        *,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        locations: dict[EdgeAddress, str] | None = None,
        tunnel_id: str = "",
        credentials: str = "",
    ) -> None:
        if not addresses:
            raise ValueError("no edge addresses: pass --edge HOST:PORT (one per PoP)")
        if ha_connections < 1:
            raise ValueError("--ha-connections must be at least 1")
        self.addresses = list(dict.fromkeys(addresses))
        self.policy = policy or RetryPolicy()
        self.rng = rng or random.Random()
        self.tunnel_id = tunnel_id
        self.credentials = credentials
        self._addresses = {a: _AddressState() for a in self.addresses}
        for address, location in (locations or {}).items():
            if address in self._addresses:
                self._addresses[address].location = location
        self._slots = [_SlotState() for _ in range(ha_connections)]

    # --- queries ------------------------------------------------------------------------------

    @property
    def ha_connections(self) -> int:
        return len(self._slots)

    def location_of(self, address: EdgeAddress) -> str | None:
        return self._addresses[address].location

    def known_locations(self) -> dict[EdgeAddress, str]:
        return {a: s.location for a, s in self._addresses.items() if s.location}

    def slot_address(self, slot: int) -> EdgeAddress | None:
        return self._slots[slot].address

    def attempts(self, slot: int) -> int:
        """Failed attempts of ``slot`` since it was last registered."""
        return self._slots[slot].attempt

    def bound(self, slot: int) -> float:
        """Upper bound of the wait ``slot`` was last given (for "retrying in up to" logs)."""
        return self.policy.bound(max(self._slots[slot].attempt - 1, 0))

    def registered_slots(self) -> list[int]:
        return [i for i, s in enumerate(self._slots) if s.registered]

    def _key(self, address: EdgeAddress) -> str:
        return self._addresses[address].location or f"address {address}"

    def load(self, *, registered_only: bool = False) -> dict[str, int]:
        """Slots per location (an address of unknown location counts as its own location)."""
        out: dict[str, int] = {}
        for slot in self._slots:
            if slot.address is not None and (slot.registered or not registered_only):
                key = self._key(slot.address)
                out[key] = out.get(key, 0) + 1
        return out

    # --- choosing -----------------------------------------------------------------------------

    def choose_address(self, slot: int, now: float) -> EdgeAddress:
        """The address ``slot`` should dial now: not cooling down if possible, on the least used
        location, then the least failing address; the slot's position breaks ties so
        simultaneous slots spread."""
        state = self._slots[slot]
        state.address = None  # do not count this slot's old place while choosing
        load = self.load()
        usable = [
            a
            for a in self.addresses
            if self._addresses[a].cooldown_until <= now and a not in state.avoid
        ]
        if not usable:
            usable = [a for a in self.addresses if a not in state.avoid] or list(self.addresses)
            soonest = min(self._addresses[a].cooldown_until for a in usable)
            usable = [a for a in usable if self._addresses[a].cooldown_until == soonest]
        ordered = (
            self.addresses[slot % len(self.addresses) :]
            + self.addresses[: slot % len(self.addresses)]
        )

        def rank(address: EdgeAddress) -> tuple[int, int, int]:
            return (
                load.get(self._key(address), 0),
                self._addresses[address].failures,
                ordered.index(address),
            )

        choice = min(usable, key=rank)
        state.address = choice
        state.registered = False
        state.avoid.clear()
        return choice

    # --- outcomes -----------------------------------------------------------------------------

    def on_registered(self, slot: int, address: EdgeAddress, location: str) -> None:
        state = self._slots[slot]
        state.address, state.registered, state.attempt = address, True, 0
        addr = self._addresses[address]
        addr.failures, addr.cooldown_until, addr.location = 0, 0.0, location

    def _backoff(self, slot: int, reason: str, floor: float = 0.0) -> Decision:
        state = self._slots[slot]
        delay = max(floor, self.policy.delay(state.attempt, self.rng))
        state.attempt += 1
        return Decision(delay=delay, reason=reason)

    def _penalise(self, address: EdgeAddress, now: float) -> None:
        addr = self._addresses[address]
        addr.failures += 1
        addr.cooldown_until = now + self.policy.cooldown(addr.failures)

    def on_dial_failed(self, slot: int, address: EdgeAddress, now: float) -> Decision:
        """TCP/TLS failed or the handshake hung: avoid this address for a while."""
        self._penalise(address, now)
        self._slots[slot].registered = False
        return self._backoff(slot, "dial_error")

    def on_refused(
        self, slot: int, address: EdgeAddress, response: RegistrationResponse, now: float
    ) -> Decision:
        """The edge refused the registration."""
        state = self._slots[slot]
        state.registered = False
        cause = response.cause or "unspecified"
        if not response.should_retry:
            return Decision(
                delay=0.0,
                permanent=True,
                reason=cause,
                message=permanent_message(cause, self.tunnel_id, self.credentials),
            )
        if cause == RefusalCause.DUPLICATE_CONNECTION and len(self.addresses) > 1:
            state.avoid.add(address)
        return self._backoff(slot, cause, floor=hinted_wait(response))

    def on_connection_lost(
        self,
        slot: int,
        address: EdgeAddress,
        reason: str,
        disconnect: Disconnect | None,
        now: float,
    ) -> Decision:
        """A registered connection ended (``disconnect``: what the edge said, if anything)."""
        self._slots[slot].registered = False
        if disconnect is not None and not disconnect.should_retry:
            return Decision(
                delay=0.0,
                permanent=True,
                reason=disconnect.cause,
                message=permanent_message(disconnect.cause, self.tunnel_id, self.credentials),
            )
        if reason == "heartbeat timeout" or reason.startswith("connection lost"):
            self._penalise(address, now)
        floor = disconnect.retry_after if disconnect and disconnect.retry_after else 0.0
        return self._backoff(slot, reason, floor=floor)

    def release(self, slot: int) -> None:
        """The slot holds no connection (it is waiting to retry, or stopped)."""
        self._slots[slot].registered = False

    # --- spreading ----------------------------------------------------------------------------

    def rebalance(self, now: float) -> Move | None:
        """One move that spreads connections over more PoPs, or None.

        Only while every slot is registered. A location with two or more connections more than
        an unused (or less used) address's location gives one connection to that address —
        e.g. after a PoP came back, 4+0 becomes 3+1, then 2+2.
        """
        if not all(s.registered for s in self._slots):
            return None
        load = self.load(registered_only=True)
        busiest = max(load, key=lambda key: (load[key], key))
        for address in self.addresses:
            state = self._addresses[address]
            if state.cooldown_until > now:
                continue
            key = self._key(address)
            if load[busiest] - load.get(key, 0) < 2:
                continue
            slot = max(
                i
                for i, s in enumerate(self._slots)
                if s.address is not None and self._key(s.address) == busiest
            )
            return Move(slot, address)
        return None

    def on_move_failed(
        self, address: EdgeAddress, now: float, refusal: RegistrationResponse | None = None
    ) -> None:
        """A rebalance probe failed: count it, but cool the address for ``probe_cooldown`` at
        most (it replaces a longer cooldown left by the connections lost there) -- or as long
        as the edge's ``retry_after`` asked, when it refused the probe with a hint."""
        addr = self._addresses[address]
        addr.failures += 1
        cooldown = min(self.policy.probe_cooldown, self.policy.cooldown(addr.failures))
        if refusal is not None:
            cooldown = max(cooldown, hinted_wait(refusal))
        addr.cooldown_until = now + cooldown
