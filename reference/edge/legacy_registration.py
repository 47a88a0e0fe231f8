"""Legacy ("classic") registrations: the edge asks the control plane, synchronously.

Named tunnels are authenticated from the edge's cache alone (``registration.py``). A legacy
registration carries the account's API token instead of a proof, and only the control plane can
check a token and create the hostname's DNS record, so the edge calls
``POST /client/v4/zones/{zone}/legacy_tunnels`` through its ``--api`` link for every legacy
connection. When that call fails the connection is refused with a retryable cause: the legacy
tunnel stays down until the control plane answers again. See docs/legacy.md.

Outcomes (``reason`` is the metrics label):

=============================  ============  ==============================================
reason                         should_retry  when
=============================  ============  ==============================================
``ok``                         -             the control plane registered it
``control_plane_unavailable``  yes           no answer, timeout, 5xx
``invalid_token``              no            token unknown, rolled or missing (401)
``forbidden``                  no            the token has no access to the zone (403)
``bad_request``                no            apex, hostname outside the zone, bad fields
``record_exists``              no            another record holds the hostname
``already_active``             yes (2 s)     another connector holds the legacy tunnel
=============================  ============  ==============================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp

from reference.edge.registration import RegistrationDecision
from reference.wire.messages import RefusalCause, RegistrationRequest

Address = tuple[str, int]

#: How long the edge waits for the control plane (below the connector's 5 s registration
#: timeout, so the connector hears "control plane unavailable" rather than a timeout).
DEFAULT_LEGACY_API_TIMEOUT = 3.0
#: Retry hint when another connector still holds the legacy tunnel (its connections may be
#: half-dead and about to time out).
ALREADY_ACTIVE_RETRY_AFTER = 2.0

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_TOKEN_CODES = frozenset({10001, 10002, 10003})
_BAD_REQUEST_CODES = frozenset({1000, 1001, 1002, 1004, 1012, 1013, 1018})
#: Prefix of the causes that carry the control plane's refusal message (the connector shows it).
LEGACY_REFUSED = "legacy registration refused: "
CODE_FORBIDDEN = 10000
CODE_RECORD_EXISTS = 1003
CODE_ALREADY_ACTIVE = 1019


@dataclass(frozen=True)
class LegacyOutcome:
    """The decision, and on success the configuration payloads to apply before routing."""

    decision: RegistrationDecision
    config: list[tuple[str, bytes]] = field(default_factory=list)


def decision_for_answer(status: int, code: int | None, message: str) -> RegistrationDecision:
    """Map a control-plane refusal (HTTP status, v4 error code, message) to a registration
    refusal whose cause carries the control plane's message (it says what to do)."""
    if status == 401 or code in _TOKEN_CODES:
        return RegistrationDecision.refuse(
            "invalid_token", f"{RefusalCause.INVALID_TOKEN}: {message}", should_retry=False
        )
    if status == 403 or code == CODE_FORBIDDEN:
        return RegistrationDecision.refuse(
            "forbidden", f"{LEGACY_REFUSED}unauthorized: {message}", should_retry=False
        )
    if code == CODE_ALREADY_ACTIVE:
        return RegistrationDecision.refuse(
            "already_active",
            message,
            should_retry=True,
            retry_after=ALREADY_ACTIVE_RETRY_AFTER,
        )
    if code == CODE_RECORD_EXISTS:
        return RegistrationDecision.refuse(
            "record_exists", f"{LEGACY_REFUSED}{message}", should_retry=False
        )
    if status >= 500 or status == 429 or status == 0:
        return unavailable()
    if code in _BAD_REQUEST_CODES or 400 <= status < 500:
        return RegistrationDecision.refuse(
            "bad_request", f"{LEGACY_REFUSED}{message}", should_retry=False
        )
    return unavailable()


def unavailable() -> RegistrationDecision:
    """The control plane did not answer usefully: retry, the tunnel stays down meanwhile (the
    cause is the agreed, stable text; the caller logs what went wrong)."""
    return RegistrationDecision.refuse(
        "control_plane_unavailable", RefusalCause.CONTROL_PLANE_UNAVAILABLE, should_retry=True
    )


class LegacyRegistrar:
    """Calls the control plane for legacy registrations (one HTTP client for the edge's life)."""

    def __init__(
        self,
        api: Address,
        pop: str,
        *,
        timeout: float = DEFAULT_LEGACY_API_TIMEOUT,
        on_call: Callable[[str], None] | None = None,
    ) -> None:
        self.base_url = f"http://{api[0]}:{api[1]}"
        self.pop = pop
        self.timeout = timeout
        self.on_call = on_call or (lambda _kind: None)
        self.last_error: str | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> LegacyRegistrar:
        # A fresh TCP connection per call: a kept-alive one may be a dead socket after the
        # link flapped, and legacy registrations are rare.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            trust_env=False,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def register(self, request: RegistrationRequest) -> LegacyOutcome:
        """Ask the control plane to register ``request`` (which must carry ``legacy``)."""
        legacy = request.legacy
        assert legacy is not None
        if not _HEX32.match(legacy.zone_id):
            return LegacyOutcome(
                RegistrationDecision.refuse(
                    "bad_request",
                    f"{LEGACY_REFUSED}the origin certificate names no valid zone; "
                    "run `outlast tunnel login --force` again",
                    should_retry=False,
                )
            )
        body = {
            "hostname": legacy.hostname,
            "tunnel_id": request.tunnel_id,
            "connector_id": request.connector_id,
            "conn_index": request.conn_index,
            "pop": self.pop,
        }
        answer = await self._call(
            "POST",
            f"/client/v4/zones/{legacy.zone_id}/legacy_tunnels",
            token=legacy.api_token,
            body=body,
            kind="legacy",
        )
        if answer is None:
            return LegacyOutcome(unavailable())
        status, envelope = answer
        if status != 200 or not envelope.get("success"):
            code, message = _first_error(envelope, status)
            return LegacyOutcome(decision_for_answer(status, code, message))
        result = envelope.get("result") or {}
        if result.get("tunnel_id") != request.tunnel_id:
            return LegacyOutcome(
                RegistrationDecision.refuse(
                    "bad_request",
                    f"{LEGACY_REFUSED}the control plane registered tunnel "
                    f"{result.get('tunnel_id')}, not {request.tunnel_id}",
                    should_retry=False,
                )
            )
        config = [  # signed by the control plane, verified by the cache like broker messages
            (str(item["topic"]), item["message"].encode())
            for item in result.get("config") or []
            if isinstance(item, dict) and "topic" in item and isinstance(item.get("message"), str)
        ]
        return LegacyOutcome(RegistrationDecision.accept(), config)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        token: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any]] | None:
        """``(status, JSON body)``, or None when the control plane did not answer."""
        assert self._session is not None, "use LegacyRegistrar as an async context manager"
        self.on_call(kind)
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self._session.request(
                method, self.base_url + path, json=body, headers=headers
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return None
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        self.last_error = None
        return status, data


def _first_error(envelope: dict[str, Any], status: int) -> tuple[int | None, str]:
    errors = envelope.get("errors") or []
    if errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        return (code if isinstance(code, int) else None), str(errors[0].get("message", ""))
    return None, f"HTTP {status} without an error message"
