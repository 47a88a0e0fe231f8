"""Saving and loading the embedded broker's durable state (real files in a temp dir)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from reference.broker.persistence import (
    STATE_FILE_NAME,
    StateFileError,
    StateSaver,
    dump_state,
    load_state,
)
from reference.broker.sessions import BrokerCore, Message
from tests.unit.test_broker_sessions import RecordingConnection


def populated_core() -> BrokerCore:
    core = BrokerCore()
    core.publish(Message("cfg/a", b"\x00\xffbinary", qos=1, retain=True))
    core.publish(Message("cfg/b", b"text", qos=0, retain=True))
    conn = RecordingConnection()
    session, _ = core.connect("persistent", False, conn)
    core.subscribe(session, [("events/#", 1), ("cfg/+", 2)])
    core.publish(Message("events/1", b"in flight", qos=1))
    core.incoming_qos2(session, 9)
    core.disconnect(session, conn)
    core.publish(Message("events/2", b"queued", qos=1))
    core.connect("clean", True, RecordingConnection())  # not durable
    return core


def test_state_round_trips_retained_and_persistent_sessions() -> None:
    original = populated_core()
    restored = BrokerCore()
    load_state(restored, dump_state(original))
    assert restored.retained == original.retained
    assert set(restored.sessions) == {"persistent"}
    session = restored.sessions["persistent"]
    before = original.sessions["persistent"]
    assert session.subscriptions == before.subscriptions
    assert list(session.queue) == list(before.queue)
    assert {k: (v.message, v.state) for k, v in session.inflight.items()} == {
        k: (v.message, v.state) for k, v in before.inflight.items()
    }
    assert session.incoming_qos2 == {9}
    assert session.connection is None


@pytest.mark.parametrize(
    "data",
    [b"not json", b"{}", b'{"format": "outlast-embedded-broker-state", "version": 1}', b"[]"],
)
def test_invalid_state_is_refused_with_a_clear_error(tmp_path: Path, data: bytes) -> None:
    (tmp_path / STATE_FILE_NAME).write_bytes(data)
    with pytest.raises(StateFileError, match="Move the file away"):
        StateSaver(BrokerCore(), tmp_path).load()


async def test_saver_coalesces_changes_and_writes_atomically_with_tight_mode(
    tmp_path: Path,
) -> None:
    core = BrokerCore()
    saver = StateSaver(core, tmp_path, interval=0.05)
    core = BrokerCore(on_change=saver.mark_dirty)
    saver.core = core
    for index in range(50):
        core.publish(Message(f"t/{index}", b"x", qos=1, retain=True))
    assert saver.saves == 0  # nothing written synchronously
    for _ in range(200):
        if saver.saves:
            break
        await asyncio.sleep(0.01)
    assert saver.saves == 1
    path = tmp_path / STATE_FILE_NAME
    assert len(json.loads(path.read_bytes())["retained"]) == 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == [STATE_FILE_NAME]  # no temp files left

    core.publish(Message("t/0", b"", qos=0, retain=True))
    await saver.flush()
    reloaded = BrokerCore()
    StateSaver(reloaded, tmp_path).load()
    assert len(reloaded.retained) == 49
