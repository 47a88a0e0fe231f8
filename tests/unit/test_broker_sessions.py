"""Routing and session rules of the embedded broker core, driven without any socket."""

from __future__ import annotations

from reference.broker.packets import Packet, Publish, Pubrel
from reference.broker.sessions import BrokerCore, Message


class RecordingConnection:
    """A connection endpoint that keeps what the core sends to it."""

    def __init__(self, will: Message | None = None, *, accepts_qos0: bool = True) -> None:
        self.sent: list[Packet] = []
        self.will = will
        self.accepts_qos0 = accepts_qos0
        self.taken_over = False

    def send(self, packet: Packet) -> None:
        self.sent.append(packet)

    def can_take_qos0(self) -> bool:
        return self.accepts_qos0

    def take_over(self) -> Message | None:
        self.taken_over = True
        will, self.will = self.will, None
        return will

    def publishes(self) -> list[Publish]:
        return [packet for packet in self.sent if isinstance(packet, Publish)]


def online(core: BrokerCore, client_id: str, *, clean: bool = True) -> RecordingConnection:
    connection = RecordingConnection()
    session, _ = core.connect(client_id, clean, connection)
    core.resume(session)
    return connection


def test_delivery_qos_is_the_minimum_of_publish_and_subscription() -> None:
    core = BrokerCore()
    low = online(core, "low")
    high = online(core, "high")
    core.subscribe(core.sessions["low"], [("t", 0)])
    core.subscribe(core.sessions["high"], [("t", 2)])
    core.publish(Message("t", b"x", qos=1))
    assert [(p.qos, p.packet_id) for p in low.publishes()] == [(0, None)]
    assert [(p.qos, p.packet_id is not None) for p in high.publishes()] == [(1, True)]


def test_overlapping_subscriptions_deliver_once_at_the_highest_qos() -> None:
    core = BrokerCore()
    conn = online(core, "c")
    core.subscribe(core.sessions["c"], [("a/#", 0), ("a/+", 1), ("a/b", 0)])
    core.publish(Message("a/b", b"x", qos=2))
    assert [p.qos for p in conn.publishes()] == [1]


def test_retained_message_is_stored_cleared_and_sent_with_retain_flag_on_subscribe() -> None:
    core = BrokerCore()
    watcher = online(core, "watcher")
    core.subscribe(core.sessions["watcher"], [("cfg/#", 1)])
    core.publish(Message("cfg/a", b"v1", qos=1, retain=True))
    assert [(p.payload, p.retain) for p in watcher.publishes()] == [(b"v1", False)]
    assert core.retained["cfg/a"].payload == b"v1"

    late = online(core, "late")
    codes = core.subscribe(core.sessions["late"], [("cfg/+", 1)])
    core.deliver_retained(core.sessions["late"], [("cfg/+", codes[0])])
    assert [(p.topic, p.payload, p.retain, p.qos) for p in late.publishes()] == [
        ("cfg/a", b"v1", True, 1)
    ]

    core.publish(Message("cfg/a", b"", qos=0, retain=True))  # empty payload clears
    assert "cfg/a" not in core.retained
    assert watcher.publishes()[-1].payload == b""  # still forwarded to current subscribers


def test_dollar_topics_are_not_matched_by_leading_wildcards() -> None:
    core = BrokerCore()
    everything = online(core, "all")
    core.subscribe(core.sessions["all"], [("#", 0)])
    core.publish(Message("$internal/x", b"hidden", qos=0))
    core.publish(Message("visible", b"seen", qos=0))
    assert [p.payload for p in everything.publishes()] == [b"seen"]


def test_persistent_session_queues_while_offline_and_resends_on_resume() -> None:
    changes: list[int] = []
    core = BrokerCore(on_change=lambda: changes.append(1))
    first = RecordingConnection()
    session, present = core.connect("cp", False, first)
    assert present is False
    core.subscribe(session, [("events/#", 1)])
    core.disconnect(session, first)
    assert "cp" in core.sessions  # kept

    for index in range(3):
        core.publish(Message(f"events/{index}", str(index).encode(), qos=1))
    core.publish(Message("events/qos0", b"lost", qos=0))  # QoS 0 is not queued offline
    assert len(core.sessions["cp"].queue) == 3
    assert changes, "persistent state changes must reach the persistence layer"

    second = RecordingConnection()
    session, present = core.connect("cp", False, second)
    assert present is True
    core.resume(session)
    assert [p.payload for p in second.publishes()] == [b"0", b"1", b"2"]
    assert all(p.qos == 1 and not p.dup for p in second.publishes())


def test_inflight_messages_are_resent_with_dup_after_reconnect() -> None:
    core = BrokerCore()
    first = RecordingConnection()
    session, _ = core.connect("c", False, first)
    core.subscribe(session, [("t", 1)])
    core.publish(Message("t", b"unacked", qos=1))
    packet_id = first.publishes()[0].packet_id
    core.disconnect(session, first)

    second = RecordingConnection()
    session, _ = core.connect("c", False, second)
    core.resume(session)
    resent = second.publishes()
    assert [(p.payload, p.dup, p.packet_id) for p in resent] == [(b"unacked", True, packet_id)]
    assert packet_id is not None
    core.puback(session, packet_id)
    assert not session.inflight


def test_inflight_window_and_queue_bound() -> None:
    core = BrokerCore(max_inflight=2, max_queued=3)
    conn = online(core, "slow", clean=False)
    session = core.sessions["slow"]
    core.subscribe(session, [("t", 1)])
    for index in range(7):
        core.publish(Message("t", bytes([index]), qos=1))
    assert len(conn.publishes()) == 2  # window
    assert len(session.queue) == 3  # bound
    assert session.dropped_messages == 2  # the newest ones are dropped
    first_id = conn.publishes()[0].packet_id
    assert first_id is not None
    core.puback(session, first_id)
    assert [p.payload for p in conn.publishes()] == [b"\x00", b"\x01", b"\x02"]


def test_qos0_is_dropped_for_a_client_that_cannot_keep_up() -> None:
    core = BrokerCore()
    conn = RecordingConnection(accepts_qos0=False)
    session, _ = core.connect("c", True, conn)
    core.subscribe(session, [("t", 0)])
    core.publish(Message("t", b"x", qos=0))
    assert conn.publishes() == []


def test_outbound_qos2_flow() -> None:
    core = BrokerCore()
    conn = online(core, "c")
    session = core.sessions["c"]
    core.subscribe(session, [("t", 2)])
    core.publish(Message("t", b"x", qos=2))
    packet_id = conn.publishes()[0].packet_id
    assert packet_id is not None
    core.pubrec(session, packet_id)
    assert conn.sent[-1] == Pubrel(packet_id)
    assert session.inflight[packet_id].state == "pubrel"
    core.pubcomp(session, packet_id)
    assert not session.inflight


def test_incoming_qos2_duplicates_are_routed_once() -> None:
    core = BrokerCore()
    online(core, "pub")
    session = core.sessions["pub"]
    assert core.incoming_qos2(session, 5) is True
    assert core.incoming_qos2(session, 5) is False
    core.release_qos2(session, 5)
    assert core.incoming_qos2(session, 5) is True


def test_takeover_closes_old_connection_and_publishes_its_will_for_clean_sessions() -> None:
    core = BrokerCore()
    watcher = online(core, "watcher")
    core.subscribe(core.sessions["watcher"], [("wills/#", 0)])

    old = RecordingConnection(will=Message("wills/c", b"gone", qos=0))
    core.connect("c", True, old)
    new = RecordingConnection()
    session, present = core.connect("c", True, new)
    assert old.taken_over and present is False
    assert session.connection is new
    assert [p.payload for p in watcher.publishes()] == [b"gone"]
    core.disconnect(session, old)  # the old connection's late cleanup must not detach the new
    assert session.connection is new


def test_takeover_between_persistent_sessions_keeps_state_and_the_will() -> None:
    core = BrokerCore()
    watcher = online(core, "watcher")
    core.subscribe(core.sessions["watcher"], [("wills/#", 0)])
    old = RecordingConnection(will=Message("wills/c", b"gone", qos=0))
    session, _ = core.connect("c", False, old)
    core.subscribe(session, [("t", 1)])
    new = RecordingConnection()
    session, present = core.connect("c", False, new)
    assert old.taken_over and present is True
    assert session.subscriptions == {"t": 1}
    assert watcher.publishes() == []


def test_clean_session_discards_a_previous_persistent_session() -> None:
    core = BrokerCore()
    conn = RecordingConnection()
    session, _ = core.connect("c", False, conn)
    core.subscribe(session, [("t", 1)])
    core.disconnect(session, conn)
    session, present = core.connect("c", True, RecordingConnection())
    assert present is False and session.subscriptions == {}
    core.disconnect(session, session.connection)  # type: ignore[arg-type]
    assert "c" not in core.sessions
