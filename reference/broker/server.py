"""The embedded MQTT 3.1.1 broker: an asyncio TCP server around :class:`BrokerCore`.

Each TCP connection is a :class:`ClientConnection`: it decodes packets
(:mod:`reference.broker.packets`), enforces the protocol rules that concern one connection
(CONNECT first, keepalive at 1.5x, no server-only packets) and hands everything else to the
core. A malformed packet or a protocol violation closes that connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import uuid
from pathlib import Path
from types import TracebackType

from reference.broker.auth import BrokerUser, BrokerUsers
from reference.broker.packets import (
    DEFAULT_MAX_PACKET_SIZE,
    SUBACK_FAILURE,
    Connack,
    ConnackCode,
    Connect,
    Disconnect,
    MalformedPacket,
    Packet,
    PacketDecoder,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    UnsupportedProtocolVersion,
    encode,
)
from reference.broker.persistence import DEFAULT_SAVE_INTERVAL, StateSaver
from reference.broker.sessions import (
    DEFAULT_MAX_INFLIGHT,
    DEFAULT_MAX_QUEUED,
    BrokerCore,
    Message,
    Session,
)
from reference.broker.tls import TLS_HANDSHAKE_TIMEOUT
from reference.broker.topics import InvalidTopic, validate_topic_name
from reference.logs import log_event

logger = logging.getLogger("reference.broker.server")

KEEPALIVE_FACTOR = 1.5
DEFAULT_CONNECT_TIMEOUT = 10.0
# Above this many unsent bytes for one client, QoS 0 messages to it are dropped.
QOS0_WRITE_BUFFER_LIMIT = 4 * 1024 * 1024
READ_CHUNK = 64 * 1024


class ProtocolViolation(Exception):
    """A well-formed packet that breaks the protocol's rules; closes the connection."""


class _ConnectionEnded(Exception):
    """The connection ends for an ordinary reason (EOF, DISCONNECT, take-over, shutdown)."""


class ClientConnection:
    """One client's TCP connection (implements :class:`reference.broker.sessions.Connection`)."""

    def __init__(
        self, broker: EmbeddedBroker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.broker = broker
        self.reader = reader
        self.writer = writer
        self.decoder = PacketDecoder(broker.max_packet_size)
        self.peer = _peer_name(writer)
        self.client_id: str | None = None
        self.session: Session | None = None
        self.will: Message | None = None
        self.keepalive = 0
        self.user: BrokerUser | None = None
        """The authenticated user; None on a broker that allows anonymous clients."""
        self._denied_publishes = 0
        self._closed_by_server: str | None = None

    # ---------------------------------------------------------------- Connection protocol

    def send(self, packet: Packet) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(packet))

    def can_take_qos0(self) -> bool:
        transport = self.writer.transport
        return transport.get_write_buffer_size() < QOS0_WRITE_BUFFER_LIMIT

    def take_over(self) -> Message | None:
        will, self.will = self.will, None
        self.close("session taken over by a new connection")
        return will

    # ---------------------------------------------------------------- lifecycle

    def close(self, reason: str) -> None:
        """Close from the server side; the session is detached, no will is published here."""
        if self._closed_by_server is None:
            self._closed_by_server = reason
        self.writer.close()

    async def run(self) -> None:
        """Serve the connection until it ends; never raises."""
        reason = "connection closed by the client"
        publish_will = True
        try:
            await self._serve()
        except _ConnectionEnded as ended:
            reason = str(ended)
            publish_will = False
        except UnsupportedProtocolVersion as exc:
            reason = f"connection refused: {exc}"
            if self.session is None:
                self.send(Connack(False, ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION))
        except (MalformedPacket, ProtocolViolation) as exc:
            reason = f"protocol error: {exc}"
        except TimeoutError:
            reason = (
                f"keepalive timeout ({self.keepalive} s x {KEEPALIVE_FACTOR})"
                if self.session is not None
                else f"no CONNECT within {self.broker.connect_timeout:g} s"
            )
        except (ConnectionError, OSError) as exc:
            reason = f"connection lost: {exc}"
        except Exception as exc:  # a bug must cost one connection, never the broker
            logger.exception("internal error while serving a client")
            reason = f"protocol error: internal error {type(exc).__name__}: {exc}"
        if self._closed_by_server is not None:
            reason, publish_will = self._closed_by_server, False
        self._finish(reason, publish_will)
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)

    def _finish(self, reason: str, publish_will: bool) -> None:
        session = self.session
        abnormal = reason.startswith(("protocol error", "keepalive"))
        level = logging.WARNING if abnormal else logging.INFO
        if session is None:
            log_event(
                logger,
                "connection closed before CONNECT",
                level=level,
                peer=self.peer,
                reason=reason,
            )
            return
        self.broker.core.disconnect(session, self)
        will, self.will = self.will, None
        log_event(
            logger,
            "client disconnected",
            level=level,
            client_id=self.client_id,
            peer=self.peer,
            reason=reason,
            will_published=bool(will and publish_will),
        )
        if will is not None and publish_will:
            self.broker.core.publish(will)

    # ---------------------------------------------------------------- reading

    async def _read_packets(self, within: float | None) -> list[Packet]:
        """The next packets from the socket; TimeoutError if none completes ``within`` s."""
        deadline = None if within is None else time.monotonic() + within
        while True:
            if self._closed_by_server is not None:
                raise _ConnectionEnded(self._closed_by_server)
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            data = await asyncio.wait_for(self.reader.read(READ_CHUNK), remaining)
            if self._closed_by_server is not None:
                raise _ConnectionEnded(self._closed_by_server)
            if not data:
                if self.decoder.buffered:
                    raise ProtocolViolation("connection closed in the middle of a packet")
                raise ConnectionError("connection closed by the client without DISCONNECT")
            packets = self.decoder.feed(data)
            if packets:
                return packets

    async def _serve(self) -> None:
        packets = await self._read_packets(self.broker.connect_timeout)
        connect = packets.pop(0)
        if not isinstance(connect, Connect):
            raise ProtocolViolation(
                f"the first packet must be CONNECT, not {type(connect).__name__}"
            )
        if not self._accept(connect):
            return
        while True:
            for packet in packets:
                self._handle(packet)
            timeout = self.keepalive * KEEPALIVE_FACTOR if self.keepalive else None
            packets = await self._read_packets(timeout)

    def _accept(self, connect: Connect) -> bool:
        """Handle CONNECT: refuse (False) or attach the session and send CONNACK (True)."""
        client_id = connect.client_id
        if not client_id:
            if not connect.clean_session:
                self.send(Connack(False, ConnackCode.IDENTIFIER_REJECTED))
                log_event(
                    logger,
                    "connection refused: empty client id needs clean session",
                    level=logging.WARNING,
                    peer=self.peer,
                )
                return False
            client_id = f"outlast-auto-{uuid.uuid4().hex}"
        if not self._authenticate(connect):
            return False
        if self.user is not None and self.broker.users is not None:
            if self.broker.users.bind_client_ids:
                if connect.client_id not in ("", self.user.username):
                    # Another client's id would take its session over (and kick it off).
                    self._refuse_not_authorized(
                        connect,
                        f"client id {connect.client_id!r} is not the username "
                        f"{self.user.username!r} (client ids are bound to users)",
                    )
                    return False
                client_id = self.user.username
        if connect.will is not None:
            try:
                validate_topic_name(connect.will.topic)
            except InvalidTopic as exc:
                raise ProtocolViolation(f"will topic: {exc}") from None
            if not self._may_publish(connect.will.topic):
                self._refuse_not_authorized(connect, f"will topic {connect.will.topic!r} denied")
                return False
            will = connect.will
            self.will = Message(will.topic, will.payload, will.qos, will.retain)
        self.client_id = client_id
        self.keepalive = connect.keepalive
        core = self.broker.core
        session, present = core.connect(client_id, connect.clean_session, self)
        self.session = session
        self.send(Connack(present, ConnackCode.ACCEPTED))
        core.resume(session)
        log_event(
            logger,
            "client connected",
            client_id=client_id,
            peer=self.peer,
            clean_session=connect.clean_session,
            keepalive=connect.keepalive,
            session_present=present,
            protocol_level=connect.protocol_level,
        )
        return True

    def _authenticate(self, connect: Connect) -> bool:
        """Check username/password when the broker has users; refuse with code 5 if wrong."""
        users = self.broker.users
        if users is None:
            return True
        self.user = users.authenticate(connect.username, connect.password)
        if self.user is None:
            reason = "no username" if connect.username is None else "wrong username or password"
            self._refuse_not_authorized(connect, reason)
            return False
        return True

    def _refuse_not_authorized(self, connect: Connect, reason: str) -> None:
        self.send(Connack(False, ConnackCode.NOT_AUTHORIZED))
        log_event(
            logger,
            "connection refused: not authorized",
            level=logging.WARNING,
            peer=self.peer,
            client_id=connect.client_id,
            username=connect.username,
            reason=reason,
        )

    def _may_publish(self, topic: str) -> bool:
        return self.broker.users is None or (self.user is not None and self.user.may_publish(topic))

    def _may_subscribe(self, topic_filter: str) -> bool:
        return self.broker.users is None or (
            self.user is not None and self.user.may_subscribe(topic_filter)
        )

    def _subscribe(self, session: Session, packet: Subscribe) -> tuple[int, ...]:
        """SUBACK codes: 0x80 for a filter the user may not subscribe to, else the core's."""
        permitted = [self._may_subscribe(topic_filter) for topic_filter, _ in packet.subscriptions]
        allowed = [r for r, ok in zip(packet.subscriptions, permitted, strict=True) if ok]
        granted = iter(self.broker.core.subscribe(session, allowed))
        denied = [r[0] for r, ok in zip(packet.subscriptions, permitted, strict=True) if not ok]
        if denied:
            log_event(
                logger,
                "subscription denied by ACL",
                level=logging.WARNING,
                client_id=self.client_id,
                username=self.user.username if self.user else None,
                filters=denied,
            )
        return tuple(next(granted) if ok else SUBACK_FAILURE for ok in permitted)

    # ---------------------------------------------------------------- packets

    def _handle(self, packet: Packet) -> None:
        core = self.broker.core
        session = self.session
        assert session is not None
        if isinstance(packet, Publish):
            self._handle_publish(session, packet)
        elif isinstance(packet, Puback):
            core.puback(session, packet.packet_id)
        elif isinstance(packet, Pubrec):
            core.pubrec(session, packet.packet_id)
        elif isinstance(packet, Pubrel):
            core.release_qos2(session, packet.packet_id)
            self.send(Pubcomp(packet.packet_id))
        elif isinstance(packet, Pubcomp):
            core.pubcomp(session, packet.packet_id)
        elif isinstance(packet, Subscribe):
            codes = self._subscribe(session, packet)
            self.send(Suback(packet.packet_id, codes))
            granted = [
                (topic_filter, code)
                for (topic_filter, _), code in zip(packet.subscriptions, codes, strict=True)
                if code != SUBACK_FAILURE
            ]
            core.deliver_retained(session, granted)
        elif isinstance(packet, Unsubscribe):
            core.unsubscribe(session, packet.topic_filters)
            self.send(Unsuback(packet.packet_id))
        elif isinstance(packet, Pingreq):
            self.send(Pingresp())
        elif isinstance(packet, Disconnect):
            self.will = None
            raise _ConnectionEnded("client sent DISCONNECT")
        elif isinstance(packet, Connect):
            raise ProtocolViolation("a second CONNECT on the same connection")
        else:
            raise ProtocolViolation(f"{type(packet).__name__} is sent by servers, not clients")

    def _handle_publish(self, session: Session, packet: Publish) -> None:
        try:
            validate_topic_name(packet.topic)
        except InvalidTopic as exc:
            raise ProtocolViolation(f"PUBLISH: {exc}") from None
        message = Message(packet.topic, packet.payload, packet.qos, packet.retain)
        core = self.broker.core
        if not self._may_publish(packet.topic):
            # As mosquitto: dropped, yet acknowledged, so the client is not told what exists.
            self._denied_publishes += 1
            if self._denied_publishes in (1, 10, 100) or self._denied_publishes % 1000 == 0:
                log_event(
                    logger,
                    "publish denied by ACL, dropped",
                    level=logging.WARNING,
                    client_id=self.client_id,
                    username=self.user.username if self.user else None,
                    topic=packet.topic,
                    denied_total=self._denied_publishes,
                )
            if packet.qos == 1:
                assert packet.packet_id is not None
                self.send(Puback(packet.packet_id))
            elif packet.qos == 2:
                assert packet.packet_id is not None
                self.send(Pubrec(packet.packet_id))
            return
        if packet.qos == 0:
            core.publish(message)
        elif packet.qos == 1:
            assert packet.packet_id is not None
            core.publish(message)
            self.send(Puback(packet.packet_id))
        else:
            assert packet.packet_id is not None
            if core.incoming_qos2(session, packet.packet_id):
                core.publish(message)
            self.send(Pubrec(packet.packet_id))


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


class EmbeddedBroker:
    """The embedded broker on ``host:port``; ``async with`` starts and stops it.

    With ``data_dir`` set, retained messages and persistent sessions are loaded at start and
    saved (debounced by ``save_interval`` seconds, and at stop) to a file in it. With ``users``
    set, CONNECT needs a known username and its password (else CONNACK 5, not authorized) and
    every PUBLISH, will and SUBSCRIBE is checked against that user's ACL; ``users=None`` lets
    anonymous clients do anything (in-process tests, ``--allow-anonymous``). When the users
    file binds client ids, a client id other than the username is refused (CONNACK 5) so no
    user can take another client's session over. With ``tls`` set the listener speaks TLS only.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: Path | None = None,
        *,
        save_interval: float = DEFAULT_SAVE_INTERVAL,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        max_queued: int = DEFAULT_MAX_QUEUED,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        users: BrokerUsers | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.users = users
        self.tls = tls
        self.requested_port = port
        self.max_packet_size = max_packet_size
        self.connect_timeout = connect_timeout
        self.saver: StateSaver | None = None
        self.core = BrokerCore(
            max_inflight=max_inflight, max_queued=max_queued, on_change=self._state_changed
        )
        if data_dir is not None:
            self.saver = StateSaver(self.core, Path(data_dir), save_interval)
        self._server: asyncio.Server | None = None
        self._connections: dict[ClientConnection, asyncio.Task[None]] = {}
        self._stopping = False

    def _state_changed(self) -> None:
        if self.saver is not None and not self._stopping:
            self.saver.mark_dirty()

    @property
    def port(self) -> int:
        """The TCP port actually listened on (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the broker is not listening; call start() first")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Load saved state and start listening."""
        if self.saver is not None:
            self.saver.path.parent.mkdir(parents=True, exist_ok=True)
            self.saver.load()
        self._server = await asyncio.start_server(
            self._on_client,
            self.host,
            self.requested_port,
            reuse_address=True,
            ssl=self.tls,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if self.tls is not None else None,
        )
        log_event(
            logger,
            "embedded MQTT broker listening",
            host=self.host,
            port=self.port,
            persistence=str(self.saver.path) if self.saver else None,
            authentication="users file" if self.users is not None else "anonymous allowed",
            tls=self.tls is not None,
        )

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._stopping:
            writer.close()
            return
        connection = ClientConnection(self, reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._connections[connection] = task
        try:
            await connection.run()
        finally:
            self._connections.pop(connection, None)

    async def stop(self) -> None:
        """Stop listening, close every connection (no wills), save the state."""
        if self._stopping:
            return
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close("broker shutting down")
        tasks = list(self._connections.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5.0)
            for task in pending:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        if self.saver is not None:
            await self.saver.flush()
        log_event(logger, "embedded MQTT broker stopped")

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
