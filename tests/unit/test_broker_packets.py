"""MQTT packet codec: known wire bytes, and every malformation the server must refuse."""

from __future__ import annotations

import pytest

from reference.broker.packets import (
    Connack,
    Connect,
    Disconnect,
    MalformedPacket,
    PacketDecoder,
    PacketTooLarge,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Pubrel,
    Suback,
    Subscribe,
    Unsubscribe,
    UnsupportedProtocolVersion,
    Will,
    encode,
    encode_remaining_length,
)


def decode_one(data: bytes) -> object:
    packets = PacketDecoder().feed(data)
    assert len(packets) == 1, packets
    return packets[0]


@pytest.mark.parametrize(
    ("length", "wire"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_encoding_matches_the_specification(length: int, wire: bytes) -> None:
    assert encode_remaining_length(length) == wire


@pytest.mark.parametrize(
    ("packet", "wire"),
    [
        (Pingreq(), b"\xc0\x00"),
        (Pingresp(), b"\xd0\x00"),
        (Disconnect(), b"\xe0\x00"),
        (Connack(True, 0), b"\x20\x02\x01\x00"),
        (Puback(10), b"\x40\x02\x00\x0a"),
        (Pubrel(258), b"\x62\x02\x01\x02"),
        (Publish("a/b", b"hi", qos=1, packet_id=10), b"\x32\x09\x00\x03a/b\x00\x0ahi"),
        (Publish("a", b"", retain=True), b"\x31\x03\x00\x01a"),
        (Subscribe(1, (("a/+", 1),)), b"\x82\x08\x00\x01\x00\x03a/+\x01"),
        (Suback(1, (1, 0x80)), b"\x90\x04\x00\x01\x01\x80"),
        (Unsubscribe(2, ("x",)), b"\xa2\x05\x00\x02\x00\x01x"),
        (
            Connect("test", clean_session=True, keepalive=60),
            b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04test",
        ),
    ],
)
def test_known_packets_encode_and_decode(packet: object, wire: bytes) -> None:
    assert encode(packet) == wire  # type: ignore[arg-type]
    assert decode_one(wire) == packet


def test_connect_with_will_and_credentials_round_trips() -> None:
    packet = Connect(
        "edge-ams",
        clean_session=False,
        keepalive=5,
        will=Will("outlast/v1/edges/ams/connections", b'{"online":false}', qos=1, retain=True),
        username="user",
        password=b"pw",
    )
    wire = encode(packet)
    assert wire[9] == 0b1110_1100  # username, password, will retain, will QoS 1, will; not clean
    assert decode_one(wire) == packet


def test_decoder_returns_nothing_until_a_packet_is_complete() -> None:
    decoder = PacketDecoder()
    wire = encode(Publish("t", b"x" * 300, qos=1, packet_id=7))
    assert decoder.feed(wire[:1]) == []
    assert decoder.feed(wire[1:3]) == []  # two-byte remaining length, now complete
    assert decoder.feed(wire[3:-1]) == []
    assert decoder.feed(wire[-1:] + encode(Pingreq())) == [
        Publish("t", b"x" * 300, qos=1, packet_id=7),
        Pingreq(),
    ]
    assert decoder.buffered == 0


def mqtt5_connect() -> bytes:
    body = b"\x00\x04MQTT\x05\x02\x00\x3c" + b"\x00" + b"\x00\x02c5"  # empty properties
    return bytes([0x10, len(body)]) + body


def test_mqtt5_connect_is_reported_as_unsupported_version() -> None:
    with pytest.raises(UnsupportedProtocolVersion) as caught:
        PacketDecoder().feed(mqtt5_connect())
    assert caught.value.protocol_level == 5
    assert "3.1.1" in str(caught.value)


def test_mqtt31_connect_is_accepted() -> None:
    packet = Connect("old", protocol_name="MQIsdp", protocol_level=3)
    assert decode_one(encode(packet)) == packet


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"\x00\x00", "reserved"),  # packet type 0
        (b"\xf0\x00", "reserved"),  # packet type 15
        (b"\x60\x02\x00\x01", "flags"),  # PUBREL must carry flags 0010
        (b"\x80\x06\x00\x01\x00\x01a\x00", "flags"),  # SUBSCRIBE must carry flags 0010
        (b"\xc1\x00", "flags"),  # PINGREQ with a flag set
        (b"\x36\x05\x00\x01a\x00\x01", "QoS 3"),
        (b"\x38\x03\x00\x01a", "DUP"),
        (b"\x30\xff\xff\xff\xff\x01", "four bytes"),
        (b"\x40\x02\x00\x00", "packet id 0"),
        (b"\x40\x03\x00\x01\x00", "trailing"),
        (b"\x30\x04\x00\x02\xc3\x28", "UTF-8"),
        (b"\x30\x04\x00\x02a\x00", r"U\+0000"),
        (b"\x30\x04\x00\x05abc", "truncated"),
        (b"\x82\x02\x00\x01", "no topic filter"),
        (b"\x82\x06\x00\x01\x00\x01a\x03", "QoS byte"),
        (b"\xa2\x02\x00\x01", "no topic filter"),
        (b"\x10\x0c\x00\x04MQTT\x04\x03\x00\x3c\x00\x00", "reserved flag"),
        (b"\x10\x0c\x00\x04MQTT\x04\x0a\x00\x3c\x00\x00", "without a will"),
        (b"\x10\x0c\x00\x04MQTT\x04\x42\x00\x3c\x00\x00", "password without a user name"),
        (b"\x10\x0c\x00\x04HTTP\x04\x02\x00\x3c\x00\x00", "unknown protocol name"),
        (b"\x20\x02\x02\x00", "reserved acknowledge flags"),
    ],
)
def test_malformed_packets_are_refused(wire: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket, match=reason):
        PacketDecoder().feed(wire)


def test_oversized_packet_is_refused_from_its_header_alone() -> None:
    decoder = PacketDecoder(max_packet_size=1024)
    with pytest.raises(PacketTooLarge):
        decoder.feed(b"\x30" + encode_remaining_length(1025))


def test_encoder_refuses_impossible_packets() -> None:
    with pytest.raises(ValueError, match="packet id"):
        encode(Publish("t", b"", qos=1))
    with pytest.raises(ValueError, match="65535"):
        encode(Puback(0))
    with pytest.raises(ValueError, match="MQTT string"):
        encode(Publish("t" * 70_000, b""))
