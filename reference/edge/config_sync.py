"""The edge's link to the MQTT broker (docs/config-distribution.md).

Consumes the retained configuration topics (tunnels, zones, DNS records) and publishes this PoP's
registration events and its retained connections snapshot (with an MQTT will that marks the PoP
offline). Reconnects forever with full-jitter backoff; nothing here ever blocks the data plane:
registrations and visitors are served from the cache whether or not the broker is reachable.
Events raised while the broker is unreachable are queued (bounded) and sent after reconnecting.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiomqtt

from reference.broker.auth import BrokerCredential
from reference.config_topics import (
    DNS_FILTER,
    TUNNELS_FILTER,
    ZONES_FILTER,
    edge_connections_topic,
    events_topic,
)
from reference.edge.connections import utc_now_iso
from reference.logs import log_event

logger = logging.getLogger("reference.edge.broker")

CONFIG_FILTERS = (TUNNELS_FILTER, ZONES_FILTER, DNS_FILTER)
MAX_QUEUED_EVENTS = 10_000

PayloadHandler = Callable[[str, bytes], None]
SnapshotSource = Callable[[], list[dict[str, Any]]]


def offline_snapshot(pop: str) -> dict[str, Any]:
    """The retained snapshot of a PoP that is gone (also the MQTT will)."""
    return {"pop": pop, "online": False, "connections": []}


def _payload_bytes(payload: object) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return str(payload).encode()


class ConfigSync:
    """Subscriber of the configuration stream and publisher of this PoP's connection state."""

    def __init__(
        self,
        pop: str,
        broker_host: str,
        broker_port: int,
        *,
        on_payload: PayloadHandler,
        snapshot: SnapshotSource,
        backoff_base: float = 0.2,
        backoff_cap: float = 5.0,
        keepalive: int = 5,
        credential: BrokerCredential | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.pop = pop
        self.credential = credential
        self.tls = tls
        """Verifying TLS context for the broker (``--broker-ca``); None: plaintext MQTT."""
        """Username and password at the broker (``edge-<pop>``); None: anonymous (tests)."""
        self.broker_host = broker_host
        self.broker_port = broker_port
        self.on_payload = on_payload
        self.snapshot = snapshot
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.keepalive = keepalive
        self.connected = False
        self.subscribed = asyncio.Event()
        """Set once the configuration topics were subscribed at least once since start."""
        self.connect_count = 0
        self._events: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=MAX_QUEUED_EVENTS
        )
        self._snapshot_dirty = True
        self._outbox = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._going_offline = False
        self._client: aiomqtt.Client | None = None

    # ---- called by the edge -------------------------------------------------------------

    def publish_event(self, event: dict[str, Any]) -> None:
        """Queue a registration event for ``outlast/v1/events/{pop}`` (sent when connected)."""
        if len(self._events) == self._events.maxlen:
            log_event(
                logger,
                "event queue full; dropping the oldest event (the retained "
                "snapshot stays authoritative)",
                logging.WARNING,
            )
        self._events.append(event)
        self._outbox.set()

    def snapshot_changed(self) -> None:
        """The set of registered connections changed: republish the retained snapshot."""
        self._snapshot_dirty = True
        self._outbox.set()

    # ---- the link -----------------------------------------------------------------------

    def _snapshot_payload(self) -> bytes:
        return json.dumps(
            {"pop": self.pop, "online": True, "at": utc_now_iso(), "connections": self.snapshot()}
        ).encode()

    async def run(self) -> None:
        """Stay connected to the broker forever (cancel to stop)."""
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                if self.connected or failures % 50 == 0:  # not once per attempt
                    log_event(
                        logger,
                        "broker link down; serving from the cache, reconnecting",
                        logging.WARNING,
                        broker=f"{self.broker_host}:{self.broker_port}",
                        error=str(exc),
                        failed_attempts=failures,
                    )
            finally:
                self.connected = False
                self._client = None
            if time.monotonic() - started > 10.0:
                failures = 0  # the link was up for a while: start the backoff over
            bound = min(self.backoff_cap, self.backoff_base * 2 ** min(failures, 16))
            failures += 1
            await asyncio.sleep(random.uniform(0, bound))

    async def _session(self) -> None:
        will = aiomqtt.Will(
            edge_connections_topic(self.pop),
            json.dumps(offline_snapshot(self.pop)).encode(),
            qos=1,
            retain=True,
        )
        client = aiomqtt.Client(
            self.broker_host,
            self.broker_port,
            # A broker that binds client ids to users accepts only the username as the id.
            identifier=self.credential.username if self.credential else f"outlast-edge-{self.pop}",
            username=self.credential.username if self.credential else None,
            tls_context=self.tls,
            password=self.credential.password if self.credential else None,
            clean_session=True,
            keepalive=self.keepalive,
            will=will,
            timeout=5.0,
        )
        async with client:
            self._client = client
            for topic_filter in CONFIG_FILTERS:
                await client.subscribe(topic_filter, qos=1)
            self.connected = True
            self.connect_count += 1
            self.subscribed.set()
            self._snapshot_dirty = True
            self._outbox.set()
            log_event(
                logger,
                "broker link up; subscribed to configuration",
                broker=f"{self.broker_host}:{self.broker_port}",
                connects=self.connect_count,
            )
            reader = asyncio.create_task(self._read_loop(client), name="edge-mqtt-read")
            publisher = asyncio.create_task(self._publish_loop(client), name="edge-mqtt-publish")
            tasks = {reader, publisher}
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # re-raises the MqttError that ended the session
                raise aiomqtt.MqttError("broker message stream ended")
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                        await task

    async def _read_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self.on_payload(message.topic.value, _payload_bytes(message.payload))

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await self._outbox.wait()
            self._outbox.clear()
            await self._flush(client)

    async def _flush(self, client: aiomqtt.Client) -> None:
        """Send queued events, then the snapshot if it changed (or the offline snapshot once
        :meth:`publish_offline` was called). One flush at a time."""
        async with self._send_lock:
            while self._events:
                event = self._events[0]
                await client.publish(events_topic(self.pop), json.dumps(event).encode(), qos=1)
                if self._events and self._events[0] is event:
                    self._events.popleft()
            if not (self._snapshot_dirty or self._going_offline):
                return
            self._snapshot_dirty = False
            payload = (
                json.dumps(offline_snapshot(self.pop)).encode()
                if self._going_offline
                else self._snapshot_payload()
            )
            try:
                await client.publish(edge_connections_topic(self.pop), payload, qos=1, retain=True)
            except BaseException:
                self._snapshot_dirty = True
                raise

    async def publish_offline(self, limit: float = 2.0) -> bool:
        """On shutdown: flush queued events and mark this PoP offline (like the will would).
        Returns False when the broker could not be reached within ``limit`` seconds."""
        self._going_offline = True
        client = self._client
        if client is None or not self.connected:
            return False
        try:
            async with asyncio.timeout(limit):
                await self._flush(client)
        except (aiomqtt.MqttError, TimeoutError):
            return False
        return True
