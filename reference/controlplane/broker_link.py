"""The control plane's MQTT session: publish configuration, consume edge events and snapshots.

Follows docs/config-distribution.md: retained QoS 1 payloads for tunnels, zones and DNS records
(everything republished on every (re)connect), a persistent session (client id
``outlast-controlplane``, ``clean_session=False``) subscribed to ``outlast/v1/events/+`` and
``outlast/v1/edges/+/connections``. While the broker is unreachable the link keeps retrying with
capped, jittered exponential backoff; the API never waits for it, and publishing catches up on
the next connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
from typing import Any

import aiomqtt

from reference import config_topics
from reference.broker.auth import BrokerCredential
from reference.config_signing import ConfigSigner
from reference.controlplane.connections import ConnectionView, SnapshotError
from reference.controlplane.metrics import ControlPlaneMetrics
from reference.controlplane.models import Actor
from reference.controlplane.store import ConfigObject, Store
from reference.logs import log_event

logger = logging.getLogger("outlast.controlplane.broker")

CLIENT_ID = "outlast-controlplane"
PUBLISH_BATCH = 50
AUDIT_FIELDS = (
    "pop",
    "connection_id",
    "conn_index",
    "connector_id",
    "connector_version",
    "arch",
    "origin_ip",
    "reason",
)


def config_topic(obj: ConfigObject) -> str:
    """The retained topic of one configuration object."""
    payload = obj.payload
    if obj.kind == "tunnel":
        return config_topics.tunnel_topic(payload["tunnel_id"])
    if obj.kind == "zone":
        return config_topics.zone_topic(payload["zone_id"])
    return config_topics.dns_topic(payload["zone_id"], payload["record_id"])


class BrokerLink:
    """Keeps one MQTT session alive for as long as :meth:`run` runs."""

    def __init__(
        self,
        host: str,
        port: int,
        store: Store,
        view: ConnectionView,
        metrics: ControlPlaneMetrics,
        *,
        client_id: str = CLIENT_ID,
        backoff_base: float = 0.1,
        backoff_cap: float = 2.0,
        keepalive: int = 5,
        signer: ConfigSigner | None = None,
        credential: BrokerCredential | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.credential = credential
        self.tls = tls
        """Verifying TLS context for the broker (``--broker-ca``); None: plaintext MQTT."""
        """Username and password at the broker; None only for an anonymous (test) broker."""
        self.signer = signer
        """Signs every configuration message (edges apply only signed ones); None only in
        tests of the link itself."""
        self.host = host
        self.port = port
        self.store = store
        self.view = view
        self.metrics = metrics
        self.client_id = client_id
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.keepalive = keepalive
        self.connected = False
        self.published_version = 0
        self._changed = asyncio.Event()

    def notify(self) -> None:
        """Tell the link that the database changed (publishing happens in the background)."""
        self._changed.set()

    def _backoff(self, attempt: int) -> float:
        bound = min(self.backoff_cap, self.backoff_base * (2 ** min(attempt, 16)))
        return max(0.05, random.uniform(0, bound))

    async def run(self) -> None:
        """Connect, serve, and reconnect forever (until cancelled)."""
        attempt = 0
        while True:
            try:
                await self._session()
                error = "session ended"
            except aiomqtt.MqttError as exc:
                error = str(exc)
            except Exception as exc:  # a bug must not stop publishing for good
                logger.exception("broker link failed")
                error = f"{type(exc).__name__}: {exc}"
            was_connected = self.connected
            self._set_connected(False)
            attempt = 0 if was_connected else attempt + 1
            delay = 0.05 if was_connected else self._backoff(attempt)
            log_event(
                logger,
                "broker session lost" if was_connected else "broker unavailable",
                logging.WARNING if was_connected or attempt <= 1 else logging.INFO,
                broker=f"{self.host}:{self.port}",
                error=error,
                attempt=attempt,
                retry_in_s=round(delay, 3),
            )
            await asyncio.sleep(delay)

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        self.metrics.broker_connected.set(1 if value else 0)

    async def _session(self) -> None:
        async with aiomqtt.Client(
            self.host,
            self.port,
            # A broker that binds client ids to users accepts only the username as the id.
            identifier=self.credential.username if self.credential else self.client_id,
            username=self.credential.username if self.credential else None,
            tls_context=self.tls,
            password=self.credential.password if self.credential else None,
            clean_session=False,
            keepalive=self.keepalive,
            timeout=5.0,
            logger=logging.getLogger("outlast.controlplane.mqtt"),
        ) as client:
            await client.subscribe(config_topics.EVENTS_FILTER, qos=1)
            await client.subscribe(config_topics.EDGE_CONNECTIONS_FILTER, qos=1)
            self._set_connected(True)
            self.metrics.broker_connects.inc()
            self.published_version = 0
            log_event(logger, "broker connected", broker=f"{self.host}:{self.port}")
            publisher = asyncio.create_task(self._publish_forever(client))
            consumer = asyncio.create_task(self._consume(client))
            try:
                done, _ = await asyncio.wait(
                    {publisher, consumer}, return_when=asyncio.FIRST_EXCEPTION
                )
                for task in done:
                    task.result()
            finally:
                for task in (publisher, consumer):
                    task.cancel()
                for task in (publisher, consumer):
                    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                        await task

    async def _publish_forever(self, client: aiomqtt.Client) -> None:
        while True:
            self._changed.clear()
            objects = self.store.config_since(self.published_version)
            for start in range(0, len(objects), PUBLISH_BATCH):
                batch = objects[start : start + PUBLISH_BATCH]
                await asyncio.gather(*(self._publish(client, obj) for obj in batch))
                self.published_version = batch[-1].version
                self.metrics.config_published_version.set(self.published_version)
            if objects:
                log_event(
                    logger,
                    "configuration published",
                    objects=len(objects),
                    version=self.published_version,
                )
            await self._changed.wait()

    async def _publish(self, client: aiomqtt.Client, obj: ConfigObject) -> None:
        topic = config_topic(obj)
        message = (
            self.signer.sign(topic, obj.payload)
            if self.signer is not None
            else json.dumps(obj.payload).encode()
        )
        await client.publish(topic, message, qos=1, retain=True)
        self.metrics.config_messages.labels(obj.kind).inc()

    async def _consume(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            raw = message.payload
            try:
                payload = json.loads(raw if isinstance(raw, bytes | str) else b"")
            except (json.JSONDecodeError, UnicodeDecodeError):
                log_event(
                    logger,
                    "ignored a message that is not JSON",
                    logging.WARNING,
                    topic=str(message.topic),
                )
                continue
            if not isinstance(payload, dict):
                continue
            if message.topic.matches(config_topics.EVENTS_FILTER):
                self.handle_event(payload)
            elif message.topic.matches(config_topics.EDGE_CONNECTIONS_FILTER):
                pop = str(message.topic).split("/")[3]
                self.handle_snapshot(pop, payload)

    def handle_snapshot(self, pop: str, payload: dict[str, Any]) -> None:
        """Replace ``pop``'s connections with an edge snapshot."""
        try:
            self.view.apply_snapshot(pop, payload)
        except SnapshotError as exc:
            log_event(
                logger,
                "ignored a malformed edge snapshot",
                logging.WARNING,
                pop=pop,
                error=str(exc),
            )
            return
        self.metrics.active_connections.set(self.view.count())

    def handle_event(self, payload: dict[str, Any]) -> None:
        """Turn an edge ``registered``/``unregistered`` event into an audit entry."""
        event = payload.get("event")
        if event not in ("registered", "unregistered"):
            self.metrics.edge_events.labels(str(event), "ignored").inc()
            return
        tunnel_id = str(payload.get("tunnel_id", ""))
        tunnel = self.store.find_tunnel(tunnel_id) or self.store.legacy_tunnel(tunnel_id)
        if tunnel is None or tunnel.account_id != payload.get("account_tag"):
            log_event(
                logger,
                "ignored an event for an unknown tunnel",
                logging.WARNING,
                event=event,
                tunnel_id=payload.get("tunnel_id"),
                pop=payload.get("pop"),
            )
            self.metrics.edge_events.labels(event, "unknown_tunnel").inc()
            return
        metadata = {k: payload[k] for k in AUDIT_FIELDS if k in payload}
        connection_id = payload.get("connection_id")
        added = self.store.record_event(
            tunnel.account_id,
            "Registered" if event == "registered" else "Unregistered",
            Actor(type="edge", id=str(payload.get("pop", ""))),
            "tunnel",
            tunnel.id,
            metadata,
            when=str(payload["at"]) if payload.get("at") else None,
            dedupe_key=f"{event}:{connection_id}" if connection_id else None,
        )
        self.metrics.edge_events.labels(event, "recorded" if added else "duplicate").inc()
