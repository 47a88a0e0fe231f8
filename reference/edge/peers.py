"""What an edge PoP knows of the other PoPs' registrations, learnt over the inter-PoP links.

Every PoP publishes a *registration summary* — how many connections it holds per tunnel, under a
version that grows with every change and an epoch that is new at every start — on its peer
listener (``GET /peer/v1/registrations``, a long poll: it answers as soon as the version passes
the one the caller has). Every PoP polls each peer over that peer's ``pop-<self>-<peer>``
fault-proxy link and keeps the answers in a :class:`PeerDirectory`. Neither the control plane nor
the broker takes part (decision record: docs/inter-pop-registrations.md).

:class:`PeerDirectory` is pure state (no I/O, no clock reads: ``now`` comes in), so it is tested
without sockets; :class:`RegistrationPoller` is the thin asyncio/HTTP layer around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web

from reference.logs import log_event

logger = logging.getLogger("reference.edge.peers")

REGISTRATIONS_PATH = "/peer/v1/registrations"
#: Header a PoP puts on a visitor request it forwards; the receiving PoP never forwards it again.
FORWARDED_FROM_HEADER = "X-Outlast-Forwarded-From"
Address = tuple[str, int]


@dataclass(frozen=True)
class RegistrationSummary:
    """One PoP's connections per tunnel, as published to its peers."""

    pop: str
    epoch: str
    version: int
    tunnels: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "pop": self.pop,
            "epoch": self.epoch,
            "version": self.version,
            "tunnels": self.tunnels,
        }

    @classmethod
    def from_json(cls, data: Any) -> RegistrationSummary:
        """Parse a peer's answer; ``ValueError`` names what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("registration summary is not a JSON object")
        pop, epoch, version, tunnels = (
            data.get("pop"),
            data.get("epoch"),
            data.get("version"),
            data.get("tunnels"),
        )
        if not isinstance(pop, str) or not isinstance(epoch, str):
            raise ValueError("registration summary needs string 'pop' and 'epoch'")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise ValueError("registration summary 'version' must be a non-negative integer")
        if not isinstance(tunnels, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
            for k, v in tunnels.items()
        ):
            raise ValueError("registration summary 'tunnels' must map tunnel id -> count")
        return cls(pop, epoch, version, dict(tunnels))


@dataclass
class _PeerState:
    summary: RegistrationSummary | None = None
    reachable: bool = False
    changed_at: float = 0.0
    failures: int = 0


@dataclass
class PeerDirectory:
    """The latest registration summary of every peer, and whether the peer is reachable.

    A peer's summary counts only while the peer is reachable: when a poll fails (refused, reset,
    timed out) the PoP stops forwarding there until a poll succeeds again.
    """

    peers: tuple[str, ...]
    _state: dict[str, _PeerState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._state = {pop: _PeerState() for pop in self.peers}

    def update(self, summary: RegistrationSummary, now: float) -> bool:
        """Record a peer's answer; True when what it holds changed."""
        state = self._state.get(summary.pop)
        if state is None:
            return False
        before = (state.reachable, state.summary.tunnels if state.summary else None)
        state.summary = summary
        state.reachable = True
        state.failures = 0
        changed = before != (True, summary.tunnels)
        if changed:
            state.changed_at = now
        return changed

    def mark_unreachable(self, pop: str, now: float) -> bool:
        """A poll of ``pop`` failed; True when the peer was reachable until now."""
        state = self._state.get(pop)
        if state is None:
            return False
        state.failures += 1
        if not state.reachable:
            return False
        state.reachable = False
        state.changed_at = now
        return True

    def known_version(self, pop: str) -> tuple[str, int] | None:
        """(epoch, version) of the last summary from ``pop``, for the next long poll."""
        state = self._state.get(pop)
        if state is None or state.summary is None:
            return None
        return state.summary.epoch, state.summary.version

    def holders(self, tunnel_id: str) -> list[str]:
        """Reachable peers that hold at least one connection of ``tunnel_id``, most first."""
        found = [
            (state.summary.tunnels.get(tunnel_id, 0), pop)
            for pop, state in self._state.items()
            if state.reachable and state.summary is not None
        ]
        return [pop for count, pop in sorted(found, key=lambda c: (-c[0], c[1])) if count > 0]

    def reachable(self, pop: str) -> bool:
        state = self._state.get(pop)
        return state is not None and state.reachable

    def snapshot(self, now: float) -> dict[str, Any]:
        """Every peer's state, for ``/ready`` and diagnosis."""
        return {
            pop: {
                "reachable": state.reachable,
                "version": state.summary.version if state.summary else None,
                "tunnels": dict(state.summary.tunnels) if state.summary else {},
                "seconds_since_change": round(now - state.changed_at, 3),
            }
            for pop, state in self._state.items()
        }


class RegistrationBoard:
    """This PoP's own summary: a version bumped on every change, and a long poll on it."""

    def __init__(self, pop: str, counts: Callable[[], dict[str, int]]) -> None:
        self.pop = pop
        self.epoch = uuid.uuid4().hex
        self.version = 0
        self._counts = counts
        self._changed = asyncio.Event()
        self._closed = False

    def close(self) -> None:
        """Answer every waiting long poll now and the later ones at once (the PoP is stopping:
        its peer listener must not wait for polls to time out)."""
        self._closed = True
        self._changed.set()

    def changed(self) -> None:
        """Call after every registration or unregistration."""
        self.version += 1
        self._changed.set()
        if not self._closed:
            self._changed = asyncio.Event()

    def summary(self) -> RegistrationSummary:
        return RegistrationSummary(self.pop, self.epoch, self.version, self._counts())

    async def wait_newer(self, epoch: str | None, version: int, wait: float) -> None:
        """Return when the summary is newer than ``(epoch, version)``, or after ``wait`` s."""
        if epoch != self.epoch or self.version > version or self._closed:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._changed.wait()

    async def handle(self, request: web.Request) -> web.Response:
        """``GET /peer/v1/registrations?epoch=E&since=V&wait=S``."""
        try:
            since = int(request.query.get("since", "-1"))
            wait = min(max(float(request.query.get("wait", "0")), 0.0), 30.0)
        except ValueError:
            return web.json_response(
                {"error": "since must be an integer and wait a number of seconds"}, status=400
            )
        await self.wait_newer(request.query.get("epoch"), since, wait)
        return web.json_response(self.summary().to_json())


class RegistrationPoller:
    """Polls every peer's registration summary and keeps ``directory`` current.

    ``async with RegistrationPoller(...)`` runs one long-poll loop per peer until the block ends.
    """

    def __init__(
        self,
        pop: str,
        peers: dict[str, Address],
        directory: PeerDirectory,
        *,
        wait: float = 5.0,
        retry: float = 0.25,
        min_interval: float = 0.1,
        on_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.pop = pop
        # During a reconnect storm the summary changes thousands of times a second; polling at
        # most every ``min_interval`` coalesces those changes into one answer.
        self.min_interval = min_interval
        self.peers = dict(peers)
        self.directory = directory
        self.wait = wait
        self.retry = retry
        self.on_change = on_change
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), trust_env=False
        )
        self._tasks = [
            asyncio.create_task(self._poll(peer, address), name=f"peer-poll-{peer}")
            for peer, address in self.peers.items()
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _poll(self, peer: str, address: Address) -> None:
        assert self._session is not None
        loop = asyncio.get_running_loop()
        url = f"http://{address[0]}:{address[1]}{REGISTRATIONS_PATH}"
        # Connect and idle bounds are short so a black-holed link is noticed within seconds.
        timeout = aiohttp.ClientTimeout(total=self.wait + 2.0, sock_connect=1.0)
        last_poll = -self.min_interval
        while True:
            await asyncio.sleep(max(0.0, last_poll + self.min_interval - loop.time()))
            last_poll = loop.time()
            known = self.directory.known_version(peer)
            reachable = self.directory.reachable(peer)
            params = {"wait": str(self.wait if reachable and known else 0)}
            if known is not None:
                params.update(epoch=known[0], since=str(known[1]))
            try:
                async with self._session.get(url, params=params, timeout=timeout) as response:
                    response.raise_for_status()
                    summary = RegistrationSummary.from_json(await response.json())
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
                if self.directory.mark_unreachable(peer, loop.time()):
                    log_event(
                        logger,
                        "peer PoP unreachable; not forwarding there",
                        logging.WARNING,
                        pop=self.pop,
                        peer=peer,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    if self.on_change:
                        self.on_change(peer, False)
                await asyncio.sleep(self.retry)
                continue
            was_reachable = self.directory.reachable(peer)
            if self.directory.update(summary, loop.time()):
                if not was_reachable:
                    log_event(logger, "peer PoP reachable", pop=self.pop, peer=peer)
                if self.on_change:
                    self.on_change(peer, True)
