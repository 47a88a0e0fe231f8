"""Property tests of the MQTT codec: round trips, arbitrary chunking, and fuzzed input."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reference.broker.packets import (
    Connack,
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
    Will,
    encode,
)
from reference.broker.topics import topic_matches

mqtt_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
    max_size=30,
)
packet_ids = st.integers(min_value=1, max_value=0xFFFF)
qos = st.integers(min_value=0, max_value=2)
payloads = st.binary(max_size=600)  # > 127 bytes exercises multi-byte remaining lengths


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    level = draw(qos)
    return Publish(
        topic=draw(mqtt_text),
        payload=draw(payloads),
        qos=level,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if level else False,
        packet_id=draw(packet_ids) if level else None,
    )


@st.composite
def connects(draw: st.DrawFn) -> Connect:
    name, level = draw(st.sampled_from([("MQTT", 4), ("MQIsdp", 3)]))
    will = draw(
        st.none()
        | st.builds(Will, topic=mqtt_text, payload=payloads, qos=qos, retain=st.booleans())
    )
    username = draw(st.none() | mqtt_text)
    password = draw(st.none() | st.binary(max_size=40))
    assume(not (level == 4 and password is not None and username is None))
    return Connect(
        client_id=draw(mqtt_text),
        clean_session=draw(st.booleans()),
        keepalive=draw(st.integers(min_value=0, max_value=0xFFFF)),
        will=will,
        username=username,
        password=password,
        protocol_name=name,
        protocol_level=level,
    )


packets: st.SearchStrategy[Packet] = st.one_of(
    connects(),
    st.builds(Connack, session_present=st.booleans(), return_code=st.integers(0, 5)),
    publishes(),
    st.builds(Puback, packet_ids),
    st.builds(Pubrec, packet_ids),
    st.builds(Pubrel, packet_ids),
    st.builds(Pubcomp, packet_ids),
    st.builds(
        Subscribe,
        packet_ids,
        st.lists(st.tuples(mqtt_text, qos), min_size=1, max_size=5).map(tuple),
    ),
    st.builds(
        Suback,
        packet_ids,
        st.lists(st.sampled_from([0, 1, 2, 0x80]), max_size=5).map(tuple),
    ),
    st.builds(Unsubscribe, packet_ids, st.lists(mqtt_text, min_size=1, max_size=5).map(tuple)),
    st.builds(Unsuback, packet_ids),
    st.just(Pingreq()),
    st.just(Pingresp()),
    st.just(Disconnect()),
)


@given(packets)
def test_every_packet_round_trips(packet: Packet) -> None:
    assert PacketDecoder().feed(encode(packet)) == [packet]


@given(st.lists(packets, max_size=8), st.data())
@settings(max_examples=200)
def test_a_stream_split_at_arbitrary_points_decodes_to_the_same_packets(
    stream: list[Packet], data: st.DataObject
) -> None:
    wire = b"".join(encode(packet) for packet in stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    decoder = PacketDecoder()
    decoded: list[Packet] = []
    start = 0
    for cut in [*cuts, len(wire)]:
        decoded += decoder.feed(wire[start:cut])
        start = cut
    assert decoded == stream
    assert decoder.buffered == 0


@given(st.lists(packets, min_size=1, max_size=4))
def test_byte_at_a_time_decoding(stream: list[Packet]) -> None:
    wire = b"".join(encode(packet) for packet in stream)
    decoder = PacketDecoder()
    decoded: list[Packet] = []
    for index in range(len(wire)):
        decoded += decoder.feed(wire[index : index + 1])
    assert decoded == stream


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_arbitrary_bytes_decode_or_raise_malformed_only(data: bytes) -> None:
    decoder = PacketDecoder(max_packet_size=4096)
    try:
        decoded = decoder.feed(data)
    except MalformedPacket:
        return
    # Whatever decoded must re-encode to something that decodes to the same packets.
    for packet in decoded:
        assert PacketDecoder().feed(encode(packet)) == [packet]


@given(packets, st.integers(min_value=0, max_value=7), st.integers(min_value=0, max_value=255))
def test_corrupting_one_byte_never_crashes_the_decoder(
    packet: Packet, position_seed: int, value: int
) -> None:
    wire = bytearray(encode(packet))
    wire[position_seed % len(wire)] = value
    try:
        PacketDecoder().feed(bytes(wire))
    except MalformedPacket:
        pass


topic_level = st.sampled_from(["a", "b", "", "$x", "sport"])


@given(st.lists(topic_level, min_size=1, max_size=5))
def test_every_topic_matches_itself_and_hash(levels: list[str]) -> None:
    topic = "/".join(levels)
    assume(topic)
    assert topic_matches(topic, topic)
    assert topic_matches("#", topic) is (not topic.startswith("$"))
    plus_filter = "/".join("+" for _ in levels)
    assert topic_matches(plus_filter, topic) is (not topic.startswith("$"))
