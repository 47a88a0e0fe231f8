"""Sessions, subscriptions, retained messages and routing of the embedded broker (no I/O).

:class:`BrokerCore` is the whole state of the broker. The network layer calls it when packets
arrive and gives each online session a :class:`Connection` to send packets through; everything
here is synchronous, so one call runs to completion before the next packet is handled.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from reference.broker.packets import SUBACK_FAILURE, Packet, Publish, Pubrel
from reference.broker.topics import is_valid_topic_filter, topic_matches
from reference.logs import log_event

logger = logging.getLogger("reference.broker.sessions")

DEFAULT_MAX_INFLIGHT = 20
# Retained messages sent on SUBSCRIBE go through the same per-client window and queue, so the
# bound must exceed the number of configuration objects an edge subscribes to at once.
DEFAULT_MAX_QUEUED = 100_000


@dataclass(frozen=True)
class Message:
    """An application message as the broker stores and routes it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool = False


@dataclass
class InflightMessage:
    """A QoS 1/2 message sent to a client and not yet fully acknowledged."""

    packet_id: int
    message: Message
    # "publish": waiting for PUBACK (QoS 1) or PUBREC (QoS 2); "pubrel": waiting for PUBCOMP.
    state: Literal["publish", "pubrel"] = "publish"


class Connection(Protocol):
    """What the core needs from an online client's network connection."""

    def send(self, packet: Packet) -> None:
        """Queue ``packet`` for sending (never blocks)."""

    def can_take_qos0(self) -> bool:
        """False when the client reads so slowly that QoS 0 messages should be dropped."""

    def take_over(self) -> Message | None:
        """Close because another connection took the client id; return the will, if any."""


@dataclass
class Session:
    """One client id's state: subscriptions and messages owed to it."""

    client_id: str
    persistent: bool
    subscriptions: dict[str, int] = field(default_factory=dict)
    inflight: dict[int, InflightMessage] = field(default_factory=dict)
    queue: deque[Message] = field(default_factory=deque)
    incoming_qos2: set[int] = field(default_factory=set)
    connection: Connection | None = None
    dropped_messages: int = 0
    next_packet_id: int = 1

    @property
    def online(self) -> bool:
        return self.connection is not None

    def allocate_packet_id(self) -> int:
        """A packet id not used by any message in flight to this client."""
        for _ in range(0x10000):
            candidate = self.next_packet_id
            self.next_packet_id = candidate % 0xFFFF + 1
            if candidate not in self.inflight:
                return candidate
        raise RuntimeError(f"session {self.client_id!r}: all 65535 packet ids are in flight")


class BrokerCore:
    """All sessions and retained messages, and the rules that move messages between them."""

    def __init__(
        self,
        *,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        max_queued: int = DEFAULT_MAX_QUEUED,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.sessions: dict[str, Session] = {}
        self.retained: dict[str, Message] = {}
        self._on_change = on_change or (lambda: None)

    # ------------------------------------------------------------------ persistence hooks

    def _changed(self, session: Session | None = None) -> None:
        """Tell the persistence layer that durable state changed."""
        if session is None or session.persistent:
            self._on_change()

    # ------------------------------------------------------------------ connections

    def connect(
        self, client_id: str, clean_session: bool, connection: Connection
    ) -> tuple[Session, bool]:
        """Attach ``connection`` to the session of ``client_id``; return (session, present).

        A connection already using the id is closed first (session take-over). Its will is
        published when either side is a clean session (as mosquitto does); a persistent client
        that merely reconnects does not announce its own death. The caller must send CONNACK
        and then call :meth:`resume` without yielding to the event loop in between.
        """
        existing = self.sessions.get(client_id)
        if existing is not None and existing.connection is not None:
            previous = existing.connection
            existing.connection = None
            will = previous.take_over()
            log_event(logger, "session taken over", client_id=client_id)
            if not existing.persistent:
                del self.sessions[client_id]
            if will is not None and (not existing.persistent or clean_session):
                self.publish(will)
            existing = self.sessions.get(client_id)
        if clean_session:
            if existing is not None:
                del self.sessions[client_id]
                self._changed(existing)
            session = Session(client_id, persistent=False)
            present = False
        elif existing is not None:
            session, present = existing, True
        else:
            session, present = Session(client_id, persistent=True), False
            self._changed(session)
        self.sessions[client_id] = session
        session.connection = connection
        return session, present

    def resume(self, session: Session) -> None:
        """Resend what is in flight (DUP set) and start draining the offline queue."""
        connection = session.connection
        if connection is None:
            return
        for inflight in session.inflight.values():
            if inflight.state == "pubrel":
                connection.send(Pubrel(inflight.packet_id))
            else:
                connection.send(self._publish_packet(inflight, dup=True))
        self._pump(session)

    def disconnect(self, session: Session, connection: Connection) -> None:
        """``connection`` went away; a clean session ends with it."""
        if session.connection is not connection:
            return  # already taken over by a newer connection
        session.connection = None
        if not session.persistent and self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, session: Session, requests: Iterable[tuple[str, int]]) -> list[int]:
        """Add or replace subscriptions; return one SUBACK code per request."""
        codes: list[int] = []
        for topic_filter, qos in requests:
            if not is_valid_topic_filter(topic_filter) or qos not in (0, 1, 2):
                codes.append(SUBACK_FAILURE)
                continue
            session.subscriptions[topic_filter] = qos
            codes.append(qos)
        self._changed(session)
        return codes

    def deliver_retained(self, session: Session, granted: Iterable[tuple[str, int]]) -> None:
        """Send the retained messages matching newly granted filters (RETAIN flag set)."""
        best: dict[str, int] = {}
        for topic_filter, qos in granted:
            for topic in self.retained:
                if topic_matches(topic_filter, topic):
                    best[topic] = max(best.get(topic, -1), qos)
        for topic, qos in best.items():
            message = self.retained[topic]
            self._deliver(session, message, min(message.qos, qos), retain=True)

    def unsubscribe(self, session: Session, topic_filters: Iterable[str]) -> None:
        """Remove subscriptions (unknown filters are ignored)."""
        for topic_filter in topic_filters:
            session.subscriptions.pop(topic_filter, None)
        self._changed(session)

    # ------------------------------------------------------------------ publishing

    def publish(self, message: Message) -> None:
        """Store ``message`` if retained and route it to every matching subscription."""
        if message.retain:
            if message.payload:
                self.retained[message.topic] = message
            else:
                self.retained.pop(message.topic, None)
            self._changed()
        for session in list(self.sessions.values()):
            granted = -1
            for topic_filter, qos in session.subscriptions.items():
                if qos > granted and topic_matches(topic_filter, message.topic):
                    granted = qos
            if granted >= 0:
                self._deliver(session, message, min(message.qos, granted), retain=False)

    def _deliver(self, session: Session, message: Message, qos: int, *, retain: bool) -> None:
        outgoing = Message(message.topic, message.payload, qos, retain)
        connection = session.connection
        if qos == 0:
            if connection is not None and connection.can_take_qos0():
                connection.send(Publish(outgoing.topic, outgoing.payload, 0, retain))
            return
        if connection is not None and len(session.inflight) < self.max_inflight:
            self._send_new(session, connection, outgoing)
        elif len(session.queue) < self.max_queued:
            session.queue.append(outgoing)
        else:
            session.dropped_messages += 1
            if session.dropped_messages in (1, 10, 100) or session.dropped_messages % 1000 == 0:
                log_event(
                    logger,
                    "session queue full, message dropped",
                    level=logging.WARNING,
                    client_id=session.client_id,
                    max_queued=self.max_queued,
                    dropped_total=session.dropped_messages,
                )
            return
        self._changed(session)

    def _send_new(self, session: Session, connection: Connection, message: Message) -> None:
        inflight = InflightMessage(session.allocate_packet_id(), message)
        session.inflight[inflight.packet_id] = inflight
        connection.send(self._publish_packet(inflight, dup=False))

    @staticmethod
    def _publish_packet(inflight: InflightMessage, *, dup: bool) -> Publish:
        message = inflight.message
        return Publish(
            message.topic, message.payload, message.qos, message.retain, dup, inflight.packet_id
        )

    def _pump(self, session: Session) -> None:
        """Move queued messages into flight while the window allows."""
        connection = session.connection
        if connection is None:
            return
        moved = False
        while session.queue and len(session.inflight) < self.max_inflight:
            self._send_new(session, connection, session.queue.popleft())
            moved = True
        if moved:
            self._changed(session)

    # ------------------------------------------------------------------ acknowledgements

    def puback(self, session: Session, packet_id: int) -> None:
        """The client acknowledged a QoS 1 message."""
        inflight = session.inflight.get(packet_id)
        if inflight is not None and inflight.message.qos == 1:
            del session.inflight[packet_id]
            self._changed(session)
            self._pump(session)

    def pubrec(self, session: Session, packet_id: int) -> None:
        """The client received a QoS 2 message: release it (PUBREL)."""
        inflight = session.inflight.get(packet_id)
        if inflight is not None and inflight.message.qos == 2 and inflight.state == "publish":
            inflight.state = "pubrel"
            self._changed(session)
        if session.connection is not None:
            session.connection.send(Pubrel(packet_id))

    def pubcomp(self, session: Session, packet_id: int) -> None:
        """The client completed a QoS 2 exchange."""
        inflight = session.inflight.get(packet_id)
        if inflight is not None and inflight.message.qos == 2:
            del session.inflight[packet_id]
            self._changed(session)
            self._pump(session)

    def incoming_qos2(self, session: Session, packet_id: int) -> bool:
        """Record an incoming QoS 2 PUBLISH; False if it is a duplicate not to route again."""
        if packet_id in session.incoming_qos2:
            return False
        session.incoming_qos2.add(packet_id)
        self._changed(session)
        return True

    def release_qos2(self, session: Session, packet_id: int) -> None:
        """The client released an incoming QoS 2 message (PUBREL)."""
        if packet_id in session.incoming_qos2:
            session.incoming_qos2.discard(packet_id)
            self._changed(session)
