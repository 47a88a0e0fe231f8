"""Embedded-broker behaviour that mosquitto does differently or that needs its internals.

The broker runs in-process (real TCP sockets on 127.0.0.1, real files), so each test can
restart it instantly and look at its state.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from harness.stack.ports import free_port
from harness.stack.process import ManagedProcess, outlast_argv
from reference.broker.packets import (
    Connack,
    Connect,
    Pingreq,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Will,
    encode,
)
from reference.broker.persistence import STATE_FILE_NAME
from reference.broker.probe import RawMqttClient
from reference.broker.server import EmbeddedBroker

HOST = "127.0.0.1"


def _queued_json() -> dict[str, object]:
    return {"topic": "events/x", "qos": 1, "retain": False, "payload": "cXVldWVk"}


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker(HOST, 0, tmp_path, connect_timeout=1.0) as running:
        yield running


async def raw(broker: EmbeddedBroker) -> RawMqttClient:
    return await RawMqttClient.open(HOST, broker.port)


async def test_mqtt5_connect_is_refused_with_return_code_1(broker: EmbeddedBroker) -> None:
    async with await raw(broker) as client:
        body = b"\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x02c5"
        client.send_bytes(bytes([0x10, len(body)]) + body)
        assert await client.wait_closed_by_broker() == [Connack(False, 1)]


async def test_aiomqtt_with_mqtt5_gets_a_clear_refusal(broker: EmbeddedBroker) -> None:
    client = aiomqtt.Client(HOST, broker.port, identifier="v5", protocol=aiomqtt.ProtocolVersion.V5)
    with pytest.raises(aiomqtt.MqttError, match="Unsupported protocol version"):
        async with client:
            pass  # pragma: no cover


async def test_first_packet_must_be_connect(broker: EmbeddedBroker) -> None:
    async with await raw(broker) as client:
        client.send(Pingreq())
        assert await client.wait_closed_by_broker() == []


async def test_a_connection_that_never_sends_connect_is_closed(broker: EmbeddedBroker) -> None:
    async with await raw(broker) as client:
        started = time.monotonic()
        assert await client.wait_closed_by_broker(timeout=10) == []
        assert time.monotonic() - started >= 0.9  # connect_timeout=1.0


async def test_second_connect_closes_the_connection(broker: EmbeddedBroker) -> None:
    async with await raw(broker) as client:
        await client.connect("twice")
        client.send(Connect("twice"))
        assert await client.wait_closed_by_broker() == []


async def test_invalid_filter_gets_0x80_while_the_others_are_granted(
    broker: EmbeddedBroker,
) -> None:
    async with await raw(broker) as client:
        await client.connect("filters")
        client.send(Subscribe(3, (("ok/+", 1), ("bad/#/x", 1), ("fine/#", 2))))
        assert await client.expect(Suback) == Suback(3, (1, 0x80, 2))


async def test_publish_to_a_wildcard_topic_is_a_protocol_error_and_fires_the_will(
    broker: EmbeddedBroker,
) -> None:
    async with await raw(broker) as watcher, await raw(broker) as offender:
        await watcher.connect("watcher")
        watcher.send(Subscribe(1, (("wills/#", 0),)))
        await watcher.expect(Suback)
        await offender.connect("offender", will=Will("wills/offender", b"protocol error"))
        offender.send(Publish("a/+", b"x"))
        await offender.wait_closed_by_broker()
        will = await watcher.expect(Publish)
        assert will.payload == b"protocol error"


async def test_garbage_and_oversized_packets_close_only_their_connection(
    tmp_path: Path,
) -> None:
    async with EmbeddedBroker(HOST, 0, None, max_packet_size=1024) as small:
        async with await raw(small) as healthy:
            await healthy.connect("healthy")
            async with await raw(small) as garbage:
                garbage.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                await garbage.wait_closed_by_broker()
            async with await raw(small) as big:
                await big.connect("big")
                big.send(Publish("t", b"x" * 2000))
                await big.wait_closed_by_broker()
            healthy.send(Publish("t", b"fine", qos=1, packet_id=1))
            assert await healthy.expect(Puback) == Puback(1)


async def test_packets_split_across_many_tcp_writes_are_reassembled(
    broker: EmbeddedBroker,
) -> None:
    async with await raw(broker) as client:
        wire = encode(Connect("dribble")) + encode(Subscribe(1, (("d", 1),)))
        wire += encode(Publish("d", b"payload" * 50, qos=1, packet_id=2))
        for index in range(len(wire)):
            client.send_bytes(wire[index : index + 1])
            if index % 50 == 0:
                await client.writer.drain()
        assert await client.expect(Connack) == Connack(False, 0)
        assert await client.expect(Suback) == Suback(1, (1,))
        received = {type(await client.receive()).__name__ for _ in range(2)}
        assert received == {"Puback", "Publish"}


async def test_state_is_saved_debounced_and_loaded_at_start(tmp_path: Path) -> None:
    async with EmbeddedBroker(HOST, 0, tmp_path, save_interval=0.05) as first:
        async with aiomqtt.Client(HOST, first.port, identifier="cp", clean_session=False) as cp:
            await cp.subscribe("events/#", qos=1)
        async with aiomqtt.Client(HOST, first.port, identifier="pub") as pub:
            for index in range(20):
                await pub.publish(f"cfg/{index}", b"v", qos=1, retain=True)
            await pub.publish("events/x", b"queued", qos=1)
        assert first.saver is not None
        path = tmp_path / STATE_FILE_NAME

        def saved_everything() -> bool:
            if not path.exists():
                return False
            saved = json.loads(path.read_bytes())
            queued = [s["queue"] for s in saved["sessions"] if s["client_id"] == "cp"]
            return len(saved["retained"]) == 20 and queued == [[_queued_json()]]

        deadline = time.monotonic() + 10
        while not saved_everything():  # debounced: 20 quick changes lead to a few saves
            assert time.monotonic() < deadline, "state not saved within 10 s"
            await asyncio.sleep(0.02)
        assert first.saver.saves < 20
    async with EmbeddedBroker(HOST, 0, tmp_path) as second:
        assert len(second.core.retained) == 20
        async with aiomqtt.Client(HOST, second.port, identifier="cp", clean_session=False) as cp:
            async with asyncio.timeout(10):
                message = await anext(aiter(cp.messages))
        assert message.payload == b"queued"


async def test_cli_refuses_a_corrupt_state_file_with_a_clear_message(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / STATE_FILE_NAME).write_text("{ not json")
    process = ManagedProcess(
        "broker",
        outlast_argv(
            "serve",
            "broker",
            "--listen",
            f"{HOST}:{free_port()}",
            "--data-dir",
            str(data_dir),
            "--implementation",
            "embedded",
            "--allow-anonymous",
        ),
        tmp_path / "broker.log",
    )
    async with process:
        assert await process.wait(timeout=30) == 1
    output = process.log_tail()
    assert STATE_FILE_NAME in output and "Move the file away" in output


async def test_cli_reports_a_busy_port(tmp_path: Path, broker: EmbeddedBroker) -> None:
    process = ManagedProcess(
        "broker",
        outlast_argv(
            "serve",
            "broker",
            "--listen",
            f"{HOST}:{broker.port}",
            "--data-dir",
            str(tmp_path / "other"),
            "--implementation",
            "embedded",
            "--allow-anonymous",
        ),
        tmp_path / "busy.log",
    )
    async with process:
        assert await process.wait(timeout=30) == 1
    assert f"cannot listen on {HOST}:{broker.port}" in process.log_tail()
