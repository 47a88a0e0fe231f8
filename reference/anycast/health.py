"""Periodic health checks of every PoP: ``GET <health_url>``; 200 is healthy, anything else (a
status, a refused connection, a timeout — e.g. a paused PoP) is not. Each result goes to the
router as one observation."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

import aiohttp

from reference.anycast.router import Router


@dataclass(frozen=True)
class HealthTarget:
    """Where and how to check one PoP."""

    url: str
    host_header: str | None = None


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one check."""

    ok: bool
    detail: str


async def check_once(
    session: aiohttp.ClientSession, target: HealthTarget, timeout: float
) -> CheckOutcome:
    """One ``GET``; never raises for a network problem."""
    headers = {"Host": target.host_header} if target.host_header else {}
    try:
        async with asyncio.timeout(timeout):
            async with session.get(target.url, headers=headers, allow_redirects=False) as resp:
                await resp.read()
                return CheckOutcome(resp.status == 200, f"status {resp.status}")
    except TimeoutError:
        return CheckOutcome(False, f"timeout after {timeout:g} s")
    except (aiohttp.ClientError, OSError) as exc:
        return CheckOutcome(False, f"{type(exc).__name__}: {exc}")


class HealthChecker:
    """Checks every PoP every ``interval`` seconds while the ``async with`` block runs."""

    def __init__(
        self,
        router: Router,
        targets: Mapping[str, HealthTarget],
        *,
        interval: float = 0.2,
        timeout: float = 0.5,
    ) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("health interval and timeout must be > 0")
        self.router = router
        self.targets = dict(targets)
        self.interval = interval
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def _check_forever(self, pop: str, target: HealthTarget) -> None:
        assert self._session is not None
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            outcome = await check_once(self._session, target, self.timeout)
            self.router.observe(pop, outcome.ok, source="health", detail=outcome.detail)
            await asyncio.sleep(max(0.0, started + self.interval - loop.time()))

    async def __aenter__(self) -> HealthChecker:
        # A fresh connection per check: a dead or paused listener must show, not hide behind
        # a pooled keep-alive connection.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=0),
            trust_env=False,
        )
        self._tasks = [
            asyncio.create_task(self._check_forever(pop, target), name=f"anycast-health-{pop}")
            for pop, target in self.targets.items()
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
