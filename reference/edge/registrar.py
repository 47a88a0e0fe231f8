"""The edge's registration policy, shared by every tunnel transport.

The reference wire (``reference.wire``) and cloudflared's HTTP/2 + Cap'n Proto transport
(``reference.edge.cloudflared``) both hand a :class:`RegistrationRequest` to
:meth:`Registrar.authenticate`, so both are refused, logged and counted
(``outlast_edge_registrations_total{result,reason}``) by the same code.

Named tunnels are decided from the replicated configuration alone
(``reference.edge.registration.decide_registration``); legacy registrations ask the control
plane when the edge has ``--api`` (``reference.edge.legacy_registration``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from reference.edge.config_cache import ConfigCache
from reference.edge.legacy_registration import LegacyRegistrar
from reference.edge.metrics import EdgeMetrics
from reference.edge.registration import (
    DEFAULT_UNKNOWN_TUNNEL_RETRY_AFTER,
    RegistrationDecision,
    decide_registration,
)
from reference.logs import log_event
from reference.wire.messages import RefusalCause, RegistrationRequest, RegistrationResponse

logger = logging.getLogger("reference.edge")

#: Apply one configuration message (topic, signed payload) as if it came from the broker.
ApplyConfig = Callable[[str, bytes], None]


@dataclass
class RegistrarState:
    """What the policy reads from the running edge (set as the edge starts and stops)."""

    metrics: EdgeMetrics | None = None
    legacy: LegacyRegistrar | None = None
    broker_connected: Callable[[], bool] = lambda: False
    stopping: bool = False


class Registrar:
    """Accept or refuse a registration; count and log the outcome."""

    def __init__(
        self,
        pop: str,
        cache: Callable[[], ConfigCache],
        apply_config: ApplyConfig,
        *,
        unknown_tunnel_retry_after: float = DEFAULT_UNKNOWN_TUNNEL_RETRY_AFTER,
    ) -> None:
        self.pop = pop
        self._cache = cache
        self._apply_config = apply_config
        self.unknown_tunnel_retry_after = unknown_tunnel_retry_after
        self.state = RegistrarState()

    async def authenticate(
        self,
        origin_ip: str,
        request: RegistrationRequest,
        nonce: str | None,
        *,
        transport: str = "wire",
    ) -> RegistrationResponse:
        """Decide ``request``. ``nonce`` is the challenge this connection was sent, or None for
        a transport without one (cloudflared's): then the secret alone must match."""
        state = self.state
        fields = {
            "tunnel_id": request.tunnel_id,
            "connIndex": request.conn_index,
            "connector_id": request.connector_id,
            "attempt": request.attempt,
            "origin_ip": origin_ip,
            "location": self.pop,
        }
        if transport != "wire":
            fields["transport"] = transport
        if state.stopping:
            self.count("failed", "edge_stopping")
            return RegistrationResponse.refusal(
                RefusalCause.UNAVAILABLE, should_retry=True, retry_after=1.0
            )
        if request.legacy is not None and state.legacy is not None:
            decision = await self._decide_legacy(request)
        else:
            decision = decide_registration(
                self._cache(),
                request,
                nonce,
                unknown_tunnel_retry_after=self.unknown_tunnel_retry_after,
            )
        if not decision.accepted:
            self.count("failed", decision.reason)
            log_event(
                logger,
                "registration refused",
                logging.WARNING,
                reason=decision.reason,
                cause=decision.cause,
                should_retry=decision.should_retry,
                retry_after=decision.retry_after,
                **fields,
            )
            return RegistrationResponse.refusal(
                decision.cause or "refused",
                should_retry=decision.should_retry,
                retry_after=decision.retry_after,
            )
        self.count("ok", "ok")
        return RegistrationResponse.success(str(uuid.uuid4()), self.pop)

    async def _decide_legacy(self, request: RegistrationRequest) -> RegistrationDecision:
        """Ask the control plane (synchronously); on success apply the tunnel and DNS record it
        returns, so this edge routes the hostname at once (other edges get them over MQTT)."""
        legacy = self.state.legacy
        assert legacy is not None and request.legacy is not None
        outcome = await legacy.register(request)
        decision = outcome.decision
        if decision.reason == "control_plane_unavailable":
            log_event(
                logger,
                "legacy registration: control plane unavailable",
                logging.WARNING,
                tunnel_id=request.tunnel_id,
                hostname=request.legacy.hostname,
                error=legacy.last_error,
                location=self.pop,
            )
        for topic, message in outcome.config:
            self._apply_config(topic, message)
        return decision

    def count(self, result: str, reason: str) -> None:
        """Count one registration outcome (the metrics label pair)."""
        if self.state.metrics is not None:
            self.state.metrics.registrations.labels(result=result, reason=reason).inc()
