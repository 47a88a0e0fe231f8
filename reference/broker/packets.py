"""MQTT 3.1.1 control packets: bytes in -> packet objects, packet objects -> bytes (sans-I/O).

Nothing here touches a socket. :class:`PacketDecoder` takes arbitrary chunks of a byte stream and
returns the complete packets they finish; :func:`encode` turns a packet back into bytes. Anything
the specification says a receiver must treat as a protocol violation raises
:class:`MalformedPacket`; a CONNECT for a protocol level we do not speak (MQTT 5.0, say) raises
:class:`UnsupportedProtocolVersion` so the server can answer with CONNACK return code 1 first.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

# Largest value a four-byte "remaining length" can hold (MQTT 3.1.1 section 2.2.3).
MAX_REMAINING_LENGTH = 268_435_455
DEFAULT_MAX_PACKET_SIZE = 8 * 1024 * 1024

PROTOCOL_MQTT_311 = ("MQTT", 4)
PROTOCOL_MQTT_31 = ("MQIsdp", 3)
SUPPORTED_PROTOCOLS = frozenset({PROTOCOL_MQTT_311, PROTOCOL_MQTT_31})


class PacketType(enum.IntEnum):
    """Control packet types (high nibble of the first byte)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class ConnackCode(enum.IntEnum):
    """CONNACK return codes of MQTT 3.1.1."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


SUBACK_FAILURE = 0x80


class MalformedPacket(ValueError):
    """The byte stream violates MQTT 3.1.1; the connection that sent it must be closed."""


class PacketTooLarge(MalformedPacket):
    """A packet's remaining length exceeds the configured maximum packet size."""


class UnsupportedProtocolVersion(MalformedPacket):
    """A CONNECT asked for a protocol level we do not implement (answer CONNACK code 1)."""

    def __init__(self, protocol_name: str, protocol_level: int) -> None:
        super().__init__(
            f"protocol {protocol_name!r} level {protocol_level} is not supported "
            "(this broker speaks MQTT 3.1.1, level 4, and MQTT 3.1, level 3)"
        )
        self.protocol_name = protocol_name
        self.protocol_level = protocol_level


@dataclass(frozen=True)
class Will:
    """The will message carried by a CONNECT."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True)
class Connect:
    """CONNECT: the first packet a client sends."""

    client_id: str
    clean_session: bool = True
    keepalive: int = 60
    will: Will | None = None
    username: str | None = None
    password: bytes | None = None
    protocol_name: str = "MQTT"
    protocol_level: int = 4


@dataclass(frozen=True)
class Connack:
    """CONNACK: the server's answer to CONNECT."""

    session_present: bool
    return_code: int


@dataclass(frozen=True)
class Publish:
    """PUBLISH in either direction. ``packet_id`` is None exactly when ``qos`` is 0."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None


@dataclass(frozen=True)
class Puback:
    """PUBACK: QoS 1 acknowledgement."""

    packet_id: int


@dataclass(frozen=True)
class Pubrec:
    """PUBREC: QoS 2, publish received."""

    packet_id: int


@dataclass(frozen=True)
class Pubrel:
    """PUBREL: QoS 2, publish release."""

    packet_id: int


@dataclass(frozen=True)
class Pubcomp:
    """PUBCOMP: QoS 2, publish complete."""

    packet_id: int


@dataclass(frozen=True)
class Subscribe:
    """SUBSCRIBE: ``subscriptions`` is a tuple of ``(topic_filter, requested_qos)``."""

    packet_id: int
    subscriptions: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Suback:
    """SUBACK: one return code (granted QoS or 0x80) per requested filter."""

    packet_id: int
    return_codes: tuple[int, ...]


@dataclass(frozen=True)
class Unsubscribe:
    """UNSUBSCRIBE."""

    packet_id: int
    topic_filters: tuple[str, ...]


@dataclass(frozen=True)
class Unsuback:
    """UNSUBACK."""

    packet_id: int


@dataclass(frozen=True)
class Pingreq:
    """PINGREQ."""


@dataclass(frozen=True)
class Pingresp:
    """PINGRESP."""


@dataclass(frozen=True)
class Disconnect:
    """DISCONNECT: a clean goodbye from the client (its will is discarded)."""


Packet = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
)

# Fixed-header flag nibble each non-PUBLISH packet type must carry (section 2.2.2).
_REQUIRED_FLAGS = {
    PacketType.PUBREL: 0b0010,
    PacketType.SUBSCRIBE: 0b0010,
    PacketType.UNSUBSCRIBE: 0b0010,
}


# --------------------------------------------------------------------------- encoding


def encode_remaining_length(length: int) -> bytes:
    """The variable-length encoding of a packet's remaining length."""
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {length} is outside 0..{MAX_REMAINING_LENGTH}")
    out = bytearray()
    while True:
        digit, length = length % 128, length // 128
        out.append(digit | 0x80 if length else digit)
        if not length:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"string of {len(raw)} bytes does not fit an MQTT string (max 65535)")
    return len(raw).to_bytes(2, "big") + raw


def _binary(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError(f"binary field of {len(data)} bytes is too long (max 65535)")
    return len(data).to_bytes(2, "big") + data


def _packet_id(packet_id: int) -> bytes:
    if not 1 <= packet_id <= 0xFFFF:
        raise ValueError(f"packet id {packet_id} is outside 1..65535")
    return packet_id.to_bytes(2, "big")


def _frame(packet_type: PacketType, flags: int, body: bytes) -> bytes:
    return bytes([(packet_type << 4) | flags]) + encode_remaining_length(len(body)) + body


def encode(packet: Packet) -> bytes:
    """Serialise one packet to its wire form."""
    if isinstance(packet, Publish):
        return _encode_publish(packet)
    if isinstance(packet, Connect):
        return _encode_connect(packet)
    if isinstance(packet, Connack):
        body = bytes([1 if packet.session_present else 0, packet.return_code])
        return _frame(PacketType.CONNACK, 0, body)
    if isinstance(packet, Puback):
        return _frame(PacketType.PUBACK, 0, _packet_id(packet.packet_id))
    if isinstance(packet, Pubrec):
        return _frame(PacketType.PUBREC, 0, _packet_id(packet.packet_id))
    if isinstance(packet, Pubrel):
        return _frame(PacketType.PUBREL, 0b0010, _packet_id(packet.packet_id))
    if isinstance(packet, Pubcomp):
        return _frame(PacketType.PUBCOMP, 0, _packet_id(packet.packet_id))
    if isinstance(packet, Subscribe):
        requests = bytearray(_packet_id(packet.packet_id))
        for topic_filter, qos in packet.subscriptions:
            requests += _utf8(topic_filter) + bytes([qos])
        return _frame(PacketType.SUBSCRIBE, 0b0010, bytes(requests))
    if isinstance(packet, Suback):
        return _frame(
            PacketType.SUBACK, 0, _packet_id(packet.packet_id) + bytes(packet.return_codes)
        )
    if isinstance(packet, Unsubscribe):
        filters = bytearray(_packet_id(packet.packet_id))
        for topic_filter in packet.topic_filters:
            filters += _utf8(topic_filter)
        return _frame(PacketType.UNSUBSCRIBE, 0b0010, bytes(filters))
    if isinstance(packet, Unsuback):
        return _frame(PacketType.UNSUBACK, 0, _packet_id(packet.packet_id))
    if isinstance(packet, Pingreq):
        return _frame(PacketType.PINGREQ, 0, b"")
    if isinstance(packet, Pingresp):
        return _frame(PacketType.PINGRESP, 0, b"")
    if isinstance(packet, Disconnect):
        return _frame(PacketType.DISCONNECT, 0, b"")
    raise TypeError(f"not an MQTT packet: {packet!r}")


def _encode_publish(packet: Publish) -> bytes:
    if packet.qos not in (0, 1, 2):
        raise ValueError(f"QoS {packet.qos} is not 0, 1 or 2")
    flags = (0b1000 if packet.dup else 0) | (packet.qos << 1) | (1 if packet.retain else 0)
    body = bytearray(_utf8(packet.topic))
    if packet.qos:
        if packet.packet_id is None:
            raise ValueError("a QoS 1/2 PUBLISH needs a packet id")
        body += _packet_id(packet.packet_id)
    body += packet.payload
    return _frame(PacketType.PUBLISH, flags, bytes(body))


def _encode_connect(packet: Connect) -> bytes:
    flags = 0b10 if packet.clean_session else 0
    if packet.will is not None:
        flags |= 0b100 | (packet.will.qos << 3) | (0b10_0000 if packet.will.retain else 0)
    if packet.password is not None:
        flags |= 0b100_0000
    if packet.username is not None:
        flags |= 0b1000_0000
    body = bytearray(_utf8(packet.protocol_name))
    body += bytes([packet.protocol_level, flags]) + packet.keepalive.to_bytes(2, "big")
    body += _utf8(packet.client_id)
    if packet.will is not None:
        body += _utf8(packet.will.topic) + _binary(packet.will.payload)
    if packet.username is not None:
        body += _utf8(packet.username)
    if packet.password is not None:
        body += _binary(packet.password)
    return _frame(PacketType.CONNECT, 0, bytes(body))


# --------------------------------------------------------------------------- decoding


class _Reader:
    """Cursor over one packet body; every read checks bounds."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, count: int) -> bytes:
        if count > self.remaining():
            raise MalformedPacket(f"{self.what}: truncated (needs {count} more bytes)")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def uint16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def packet_id(self) -> int:
        value = self.uint16()
        if value == 0:
            raise MalformedPacket(f"{self.what}: packet id 0 is not allowed")
        return value

    def binary(self) -> bytes:
        return self.take(self.uint16())

    def string(self) -> str:
        raw = self.binary()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPacket(f"{self.what}: a string is not valid UTF-8") from None
        if "\x00" in text:
            raise MalformedPacket(f"{self.what}: a string contains U+0000")
        return text

    def rest(self) -> bytes:
        return self.take(self.remaining())

    def finish(self) -> None:
        if self.remaining():
            raise MalformedPacket(f"{self.what}: {self.remaining()} unexpected trailing bytes")


def _check_first_byte(first_byte: int) -> PacketType:
    """The packet type of a fixed header's first byte, after checking its flag nibble."""
    try:
        packet_type = PacketType(first_byte >> 4)
    except ValueError:
        raise MalformedPacket(f"packet type {first_byte >> 4} is reserved") from None
    flags = first_byte & 0x0F
    if packet_type is not PacketType.PUBLISH and flags != _REQUIRED_FLAGS.get(packet_type, 0):
        raise MalformedPacket(f"{packet_type.name}: fixed-header flags {flags:#06b} are invalid")
    return packet_type


def decode_packet(first_byte: int, body: bytes) -> Packet:
    """Decode one packet from its first byte and its body (everything after the length)."""
    packet_type = _check_first_byte(first_byte)
    flags = first_byte & 0x0F
    reader = _Reader(body, packet_type.name)
    packet = _DECODERS[packet_type](reader, flags)
    reader.finish()
    return packet


def _decode_connect(reader: _Reader, _flags: int) -> Connect:
    protocol_name = reader.string()
    protocol_level = reader.byte()
    if protocol_name not in ("MQTT", "MQIsdp"):
        raise MalformedPacket(f"CONNECT: unknown protocol name {protocol_name!r}")
    if (protocol_name, protocol_level) not in SUPPORTED_PROTOCOLS:
        raise UnsupportedProtocolVersion(protocol_name, protocol_level)
    flags = reader.byte()
    if flags & 0b1:
        raise MalformedPacket("CONNECT: the reserved flag bit is set")
    clean_session = bool(flags & 0b10)
    will_flag = bool(flags & 0b100)
    will_qos = (flags >> 3) & 0b11
    will_retain = bool(flags & 0b10_0000)
    has_password = bool(flags & 0b100_0000)
    has_username = bool(flags & 0b1000_0000)
    if not will_flag and (will_qos or will_retain):
        raise MalformedPacket("CONNECT: will QoS/retain set without a will")
    if will_qos == 3:
        raise MalformedPacket("CONNECT: will QoS 3 is not allowed")
    if has_password and not has_username and protocol_level == 4:
        raise MalformedPacket("CONNECT: a password without a user name")
    keepalive = reader.uint16()
    client_id = reader.string()
    will = None
    if will_flag:
        will_topic = reader.string()
        will = Will(will_topic, reader.binary(), will_qos, will_retain)
    username = reader.string() if has_username else None
    password = reader.binary() if has_password else None
    return Connect(
        client_id=client_id,
        clean_session=clean_session,
        keepalive=keepalive,
        will=will,
        username=username,
        password=password,
        protocol_name=protocol_name,
        protocol_level=protocol_level,
    )


def _decode_connack(reader: _Reader, _flags: int) -> Connack:
    ack_flags = reader.byte()
    if ack_flags & 0xFE:
        raise MalformedPacket("CONNACK: reserved acknowledge flags are set")
    return Connack(bool(ack_flags & 1), reader.byte())


def _decode_publish(reader: _Reader, flags: int) -> Publish:
    dup = bool(flags & 0b1000)
    qos = (flags >> 1) & 0b11
    retain = bool(flags & 0b1)
    if qos == 3:
        raise MalformedPacket("PUBLISH: QoS 3 is not allowed")
    if qos == 0 and dup:
        raise MalformedPacket("PUBLISH: DUP is set on a QoS 0 message")
    topic = reader.string()
    packet_id = reader.packet_id() if qos else None
    return Publish(topic, reader.rest(), qos, retain, dup, packet_id)


def _decode_subscribe(reader: _Reader, _flags: int) -> Subscribe:
    packet_id = reader.packet_id()
    subscriptions: list[tuple[str, int]] = []
    while reader.remaining():
        topic_filter = reader.string()
        requested = reader.byte()
        if requested > 2:
            raise MalformedPacket(f"SUBSCRIBE: requested QoS byte {requested:#04x} is invalid")
        subscriptions.append((topic_filter, requested))
    if not subscriptions:
        raise MalformedPacket("SUBSCRIBE: no topic filter")
    return Subscribe(packet_id, tuple(subscriptions))


def _decode_suback(reader: _Reader, _flags: int) -> Suback:
    packet_id = reader.packet_id()
    codes = tuple(reader.rest())
    if any(code not in (0, 1, 2, SUBACK_FAILURE) for code in codes):
        raise MalformedPacket("SUBACK: invalid return code")
    return Suback(packet_id, codes)


def _decode_unsubscribe(reader: _Reader, _flags: int) -> Unsubscribe:
    packet_id = reader.packet_id()
    filters: list[str] = []
    while reader.remaining():
        filters.append(reader.string())
    if not filters:
        raise MalformedPacket("UNSUBSCRIBE: no topic filter")
    return Unsubscribe(packet_id, tuple(filters))


_DECODERS: dict[PacketType, Callable[[_Reader, int], Packet]] = {
    PacketType.CONNECT: _decode_connect,
    PacketType.CONNACK: _decode_connack,
    PacketType.PUBLISH: _decode_publish,
    PacketType.PUBACK: lambda r, _f: Puback(r.packet_id()),
    PacketType.PUBREC: lambda r, _f: Pubrec(r.packet_id()),
    PacketType.PUBREL: lambda r, _f: Pubrel(r.packet_id()),
    PacketType.PUBCOMP: lambda r, _f: Pubcomp(r.packet_id()),
    PacketType.SUBSCRIBE: _decode_subscribe,
    PacketType.SUBACK: _decode_suback,
    PacketType.UNSUBSCRIBE: _decode_unsubscribe,
    PacketType.UNSUBACK: lambda r, _f: Unsuback(r.packet_id()),
    PacketType.PINGREQ: lambda _r, _f: Pingreq(),
    PacketType.PINGRESP: lambda _r, _f: Pingresp(),
    PacketType.DISCONNECT: lambda _r, _f: Disconnect(),
}


class PacketDecoder:
    """Incremental decoder: ``feed`` arbitrary chunks, get back the packets they complete.

    After a :class:`MalformedPacket` the stream cannot be resynchronised; the caller closes
    the connection and drops the decoder.
    """

    def __init__(self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        self.max_packet_size = max_packet_size
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a complete packet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Packet]:
        """Add ``data`` to the stream; return every packet now complete, in order."""
        self._buffer += data
        packets: list[Packet] = []
        while True:
            header = self._parse_header()
            if header is None:
                return packets
            header_length, remaining = header
            end = header_length + remaining
            if len(self._buffer) < end:
                return packets
            first_byte = self._buffer[0]
            body = bytes(self._buffer[header_length:end])
            del self._buffer[:end]
            packets.append(decode_packet(first_byte, body))

    def _parse_header(self) -> tuple[int, int] | None:
        """(header length, remaining length) if the fixed header is complete, else None."""
        if not self._buffer:
            return None
        _check_first_byte(self._buffer[0])
        multiplier = 1
        value = 0
        for index in range(1, 5):
            if index >= len(self._buffer):
                return None
            digit = self._buffer[index]
            value += (digit & 0x7F) * multiplier
            if not digit & 0x80:
                if value > self.max_packet_size:
                    raise PacketTooLarge(
                        f"packet of {value} bytes exceeds the limit of {self.max_packet_size}"
                    )
                return index + 1, value
            multiplier *= 128
        raise MalformedPacket("remaining length is longer than four bytes")
