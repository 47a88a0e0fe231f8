"""`outlast serve broker` as a real process, with real aiomqtt clients, for BOTH implementations.

Every test runs against the embedded broker and against mosquitto. The mosquitto case needs the
`mosquitto` binary (CI installs it); where it is missing that case is reported as SKIPPED with
the reason, never passed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from harness.stack.ports import free_port
from harness.stack.process import ManagedProcess, outlast_argv
from harness.stack.readiness import wait_tcp
from reference.broker.auth import (
    CONTROLPLANE_USER,
    BrokerCredential,
    BrokerUsers,
    edge_username,
    new_user,
    outlast_users,
)
from reference.broker.mosquitto import PERSISTENCE_FILE_NAME, find_mosquitto
from reference.broker.packets import (
    Connack,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Will,
)
from reference.broker.persistence import STATE_FILE_NAME
from reference.broker.probe import ConnectionClosed, RawMqttClient
from reference.broker.tls import client_context, provision_broker_tls

HOST = "127.0.0.1"
MOSQUITTO_MISSING = (
    "mosquitto is not installed on this machine, so the mosquitto half of this test cannot "
    "run; CI installs it (apt-get install mosquitto) and runs it there"
)
IMPLEMENTATIONS = [
    pytest.param("embedded", id="embedded"),
    pytest.param(
        "mosquitto",
        id="mosquitto",
        marks=pytest.mark.skipif(find_mosquitto() is None, reason=MOSQUITTO_MISSING),
    ),
]


TESTER = "tester"


def write_users_file(path: Path, *, bind_client_ids: bool) -> dict[str, BrokerCredential]:
    """The Outlast users (control plane, edge-ams, edge-fra) plus ``tester``, who may publish
    and subscribe anything (for the protocol tests); returns every client's credential.

    The protocol tests open many ``tester`` clients with ids of their own, so they run with
    ``bind_client_ids`` off; the stack's users file has it on."""
    users, credentials = outlast_users(["ams", "fra"])
    tester, credentials[TESTER] = new_user(TESTER, ["#"], ["#"])
    BrokerUsers([*users.users.values(), tester], bind_client_ids=bind_client_ids).write(path)
    return credentials


class BrokerProcess:
    """One `outlast serve broker` process, restartable on the same port and data dir."""

    def __init__(self, implementation: str, tmp_path: Path, *, hardened: bool = False) -> None:
        """``hardened``: as the stack runs it, a TLS-only listener and client ids bound to
        users; else plaintext and free client ids (the protocol tests)."""
        self.implementation = implementation
        self.port = free_port()
        self.data_dir = tmp_path / "broker-data"
        self.users_file = tmp_path / "broker-users.json"
        self.credentials = write_users_file(self.users_file, bind_client_ids=hardened)
        self.tls: ssl.SSLContext | None = None
        tls_args: tuple[str, ...] = ()
        if hardened:
            files = provision_broker_tls(tmp_path / "pki", ip_addresses=(HOST,))
            self.tls = client_context(files.ca_file)
            tls_args = ("--tls-cert", str(files.cert_file), "--tls-key", str(files.key_file))
        self.process = ManagedProcess(
            f"broker-{implementation}",
            outlast_argv(
                "serve",
                "broker",
                "--listen",
                f"{HOST}:{self.port}",
                "--data-dir",
                str(self.data_dir),
                "--implementation",
                implementation,
                "--users-file",
                str(self.users_file),
                *tls_args,
            ),
            tmp_path / "broker.log",
        )

    @property
    def state_file(self) -> Path:
        name = PERSISTENCE_FILE_NAME if self.implementation == "mosquitto" else STATE_FILE_NAME
        return self.data_dir / name

    async def start(self) -> None:
        await self.process.start()
        await wait_tcp(HOST, self.port, timeout=20, process=self.process)

    async def restart(self, *, hard: bool = False) -> None:
        if hard:
            await self.process.kill()
        else:
            assert await self.process.stop() == 0, self.process.log_tail()
        await self.start()

    def client(
        self, identifier: str | None = None, *, user: str = TESTER, **kwargs: object
    ) -> aiomqtt.Client:
        """An aiomqtt client logged in as ``user`` (``tester`` may do anything)."""
        credential = self.credentials[user]
        return aiomqtt.Client(
            HOST,
            self.port,
            identifier=identifier or f"t-{uuid.uuid4().hex[:12]}",
            username=credential.username,
            password=credential.password,
            tls_context=self.tls,
            **kwargs,  # type: ignore[arg-type]
        )

    async def raw(self, user: str | None = TESTER) -> RawMqttClient:
        """A packet-level client whose CONNECT carries ``user``'s credential (None: none)."""
        credential = self.credentials[user] if user is not None else None
        return await RawMqttClient.open(HOST, self.port, credential=credential, tls=self.tls)


@pytest.fixture(params=IMPLEMENTATIONS)
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BrokerProcess]:
    under_test = BrokerProcess(request.param, tmp_path)
    async with under_test.process:
        await under_test.start()
        yield under_test


async def receive(
    client: aiomqtt.Client, count: int, timeout: float = 10.0
) -> list[aiomqtt.Message]:
    """The next ``count`` messages the client receives."""
    received: list[aiomqtt.Message] = []
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            received.append(message)
            if len(received) == count:
                break
    return received


async def receive_until(
    client: aiomqtt.Client, sentinel_topic: str, timeout: float = 10.0
) -> list[aiomqtt.Message]:
    """Messages up to and excluding the first one on ``sentinel_topic``."""
    received: list[aiomqtt.Message] = []
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            if message.topic.value == sentinel_topic:
                return received
            received.append(message)
    raise AssertionError("message iteration ended")  # pragma: no cover


def payload_of(message: aiomqtt.Message) -> bytes:
    assert isinstance(message.payload, bytes), message.payload
    return message.payload


def as_tuples(messages: list[aiomqtt.Message]) -> list[tuple[str, bytes, int, bool]]:
    return [(m.topic.value, payload_of(m), m.qos, m.retain) for m in messages]


# ----------------------------------------------------------------------------- pub/sub


async def test_publish_subscribe_with_wildcards_and_qos_downgrade(broker: BrokerProcess) -> None:
    async with broker.client() as sub, broker.client() as pub:
        await sub.subscribe([("t/+/x", 1), ("w/#", 0), ("done", 0)])
        for topic in ("t/a/x", "t/a/y", "t/a/x/deeper", "w", "w/deep/er", "other", "$t/a/x"):
            await pub.publish(topic, topic.encode(), qos=1)
        await pub.publish("done", b"", qos=1)
        received = await receive_until(sub, "done")
    assert sorted(as_tuples(received)) == [
        ("t/a/x", b"t/a/x", 1, False),
        ("w", b"w", 0, False),  # '#' matches the parent level; QoS min(1, 0)
        ("w/deep/er", b"w/deep/er", 0, False),
    ]


async def test_retained_messages_are_delivered_on_subscribe_and_cleared(
    broker: BrokerProcess,
) -> None:
    async with broker.client() as pub:
        await pub.publish("cfg/a", b"A1", qos=1, retain=True)
        await pub.publish("cfg/a", b"A2", qos=1, retain=True)  # replaces A1
        await pub.publish("cfg/b", b"B", qos=1, retain=True)
        async with broker.client() as sub:
            await sub.subscribe("cfg/#", qos=1)
            retained = await receive(sub, 2)
            await pub.publish("cfg/c", b"live", qos=1)
            live = await receive(sub, 1)
        assert sorted(as_tuples(retained)) == [
            ("cfg/a", b"A2", 1, True),
            ("cfg/b", b"B", 1, True),
        ]
        assert as_tuples(live) == [("cfg/c", b"live", 1, False)]

        await pub.publish("cfg/a", b"", qos=1, retain=True)  # clears
        async with broker.client() as late:
            await late.subscribe([("cfg/#", 1), ("sentinel", 1)])
            await pub.publish("sentinel", b"", qos=1)
            after_clear = await receive_until(late, "sentinel")
        assert as_tuples(after_clear) == [("cfg/b", b"B", 1, True)]


# ----------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill-after-autosave"])
async def test_restart_keeps_retained_messages(broker: BrokerProcess, hard: bool) -> None:
    async with broker.client() as pub:
        await pub.publish("outlast/v1/tunnels/t1", b'{"version": 7}', qos=1, retain=True)
        await pub.publish("outlast/v1/tunnels/t2", b"gone", qos=1, retain=True)
        await pub.publish("outlast/v1/tunnels/t2", b"", qos=1, retain=True)
        acked_at = time.time_ns()
    if hard:
        # A hard kill only keeps what was saved: wait for the next periodic/debounced save.
        deadline = time.monotonic() + 10
        while not (broker.state_file.exists() and broker.state_file.stat().st_mtime_ns > acked_at):
            assert time.monotonic() < deadline, "the broker did not save its state within 10 s"
            await asyncio.sleep(0.05)
    await broker.restart(hard=hard)
    async with broker.client() as sub:
        await sub.subscribe([("outlast/v1/tunnels/+", 1), ("sentinel", 0)])
        async with broker.client() as pub:
            await pub.publish("sentinel", b"", qos=0)
        restored = await receive_until(sub, "sentinel")
    assert as_tuples(restored) == [("outlast/v1/tunnels/t1", b'{"version": 7}', 1, True)]


async def test_persistent_session_queues_qos1_while_offline_and_across_restart(
    broker: BrokerProcess,
) -> None:
    subscriber_id = f"controlplane-{uuid.uuid4().hex[:8]}"
    async with broker.client(subscriber_id, clean_session=False) as sub:
        await sub.subscribe("outlast/v1/events/+", qos=1)
    async with broker.client() as pub:
        for index in range(5):
            await pub.publish("outlast/v1/events/ams", str(index).encode(), qos=1)
        await pub.publish("outlast/v1/events/fra", b"qos0 is not queued", qos=0)
    await broker.restart()  # queued messages survive a clean restart too
    async with broker.client() as pub:
        await pub.publish("outlast/v1/events/fra", b"5", qos=1)
    async with broker.client(subscriber_id, clean_session=False) as sub:  # no re-subscribe
        received = await receive(sub, 6)
    assert [(m.payload, m.qos) for m in received] == [
        (str(index).encode(), 1) for index in range(6)
    ]


async def test_session_present_flag_and_clean_session_discard(broker: BrokerProcess) -> None:
    client_id = f"raw-{uuid.uuid4().hex[:8]}"
    async with await broker.raw() as first:
        assert await first.connect(client_id, clean_session=False) == Connack(False, 0)
        first.disconnect()
    async with await broker.raw() as second:
        assert await second.connect(client_id, clean_session=False) == Connack(True, 0)
        second.disconnect()
    async with await broker.raw() as clean:
        assert await clean.connect(client_id, clean_session=True) == Connack(False, 0)
        clean.disconnect()
    async with await broker.raw() as third:
        assert await third.connect(client_id, clean_session=False) == Connack(False, 0)
        third.disconnect()


async def test_empty_client_id_needs_a_clean_session(broker: BrokerProcess) -> None:
    async with await broker.raw() as raw:
        assert await raw.connect("", clean_session=False) == Connack(False, 2)
        await raw.wait_closed_by_broker()
    async with await broker.raw() as raw:
        assert await raw.connect("", clean_session=True) == Connack(False, 0)


# ----------------------------------------------------------------------------- wills


async def test_will_is_published_on_abrupt_disconnect_and_retained(broker: BrokerProcess) -> None:
    will = Will("outlast/v1/edges/ams/connections", b'{"online": false}', qos=1, retain=True)
    async with broker.client() as watcher:
        await watcher.subscribe("outlast/v1/edges/+/connections", qos=1)
        raw = await broker.raw()
        assert (await raw.connect("edge-ams", will=will, keepalive=30)).return_code == 0
        raw.abort()  # no DISCONNECT
        [message] = await receive(watcher, 1)
    assert (message.topic.value, message.payload) == (will.topic, will.payload)
    async with broker.client() as late:
        await late.subscribe("outlast/v1/edges/+/connections", qos=1)
        [retained] = await receive(late, 1)
    assert retained.retain and retained.payload == will.payload


async def test_no_will_after_disconnect_packet(broker: BrokerProcess) -> None:
    async with broker.client() as watcher:
        await watcher.subscribe([("wills/#", 0), ("sentinel", 0)])
        async with await broker.raw() as raw:
            await raw.connect("polite", will=Will("wills/polite", b"died"))
            raw.disconnect()
            await raw.wait_closed_by_broker()
        async with broker.client() as pub:
            await pub.publish("sentinel", b"", qos=1)
        assert await receive_until(watcher, "sentinel") == []


# ----------------------------------------------------------------------------- connections


async def test_same_client_id_takes_over_and_closes_the_old_connection(
    broker: BrokerProcess,
) -> None:
    async with await broker.raw() as old:
        assert (await old.connect("edge-fra")).return_code == 0
        async with broker.client("edge-fra") as new:
            await old.wait_closed_by_broker(timeout=10)
            await new.subscribe("echo", qos=1)
            await new.publish("echo", b"still here", qos=1)
            [message] = await receive(new, 1)
    assert message.payload == b"still here"


async def test_keepalive_timeout_closes_a_silent_client_and_fires_its_will(
    broker: BrokerProcess,
) -> None:
    async with broker.client() as watcher:
        await watcher.subscribe("wills/silent", qos=0)
        async with await broker.raw() as silent:
            await silent.connect("silent", keepalive=1, will=Will("wills/silent", b"timed out"))
            started = time.monotonic()
            await silent.wait_closed_by_broker(timeout=10)
            elapsed = time.monotonic() - started
        [message] = await receive(watcher, 1)
    assert message.payload == b"timed out"
    assert elapsed >= 0.9, f"closed after {elapsed:.2f} s, before the keepalive expired"


async def test_a_client_that_pings_stays_connected(broker: BrokerProcess) -> None:
    async with await broker.raw() as pinger:
        await pinger.connect("pinger", keepalive=1)
        for _ in range(8):  # 2.4 s > 1.5 x keepalive
            pinger.send(Pingreq())
            await pinger.expect(Pingresp)
            await asyncio.sleep(0.3)
        pinger.send(Pingreq())
        await pinger.expect(Pingresp)


async def test_malformed_packet_closes_only_that_connection(broker: BrokerProcess) -> None:
    async with broker.client() as healthy:
        await healthy.subscribe("ok", qos=1)
        async with await broker.raw() as bad:
            await bad.connect("bad")
            bad.send_bytes(b"\x36\x05\x00\x01a\x00\x01")  # PUBLISH with QoS 3
            await bad.wait_closed_by_broker()
        await healthy.publish("ok", b"alive", qos=1)
        [message] = await receive(healthy, 1)
    assert message.payload == b"alive"


async def test_qos2_flows_in_both_directions(broker: BrokerProcess) -> None:
    async with await broker.raw() as sub, await broker.raw() as pub:
        await sub.connect("q2-sub")
        sub.send(Subscribe(1, (("q2", 2),)))
        assert await sub.expect(Suback) == Suback(1, (2,))
        await pub.connect("q2-pub")
        pub.send(Publish("q2", b"exactly once", qos=2, packet_id=77))
        assert await pub.expect(Pubrec) == Pubrec(77)
        pub.send(Publish("q2", b"exactly once", qos=2, packet_id=77, dup=True))  # resend
        assert await pub.expect(Pubrec) == Pubrec(77)
        pub.send(Pubrel(77))
        assert await pub.expect(Pubcomp) == Pubcomp(77)

        delivered = await sub.expect(Publish)
        assert (delivered.payload, delivered.qos) == (b"exactly once", 2)
        assert delivered.packet_id is not None
        sub.send(Pubrec(delivered.packet_id))
        assert await sub.expect(Pubrel) == Pubrel(delivered.packet_id)
        sub.send(Pubcomp(delivered.packet_id))
        # Exactly once: the duplicate PUBLISH was not routed again.
        pub.send(Publish("q2", b"next", qos=1, packet_id=78))
        assert await pub.expect(Puback) == Puback(78)
        following = await sub.expect(Publish)
        assert following.payload == b"next"


# ----------------------------------------------------------------------------- process


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def wait_all_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    remaining = set(pids)
    for _ in range(int(timeout / 0.05)):
        remaining = {pid for pid in remaining if alive(pid)}
        if not remaining:
            break
        await asyncio.sleep(0.05)
    return remaining


async def test_sigterm_exits_cleanly_and_leaves_no_child_process(broker: BrokerProcess) -> None:
    pid = broker.process.pid
    assert pid is not None
    children = descendants(pid)
    if broker.implementation == "mosquitto":
        assert len(children) == 1, "expected mosquitto as the only child"
    else:
        assert children == set()
    broker.process.send_signal(signal.SIGTERM)  # the main process only, not its group
    assert await broker.process.wait(timeout=15) == 0, broker.process.log_tail()
    assert await wait_all_gone(children) == set()


@pytest.mark.skipif(find_mosquitto() is None, reason=MOSQUITTO_MISSING)
async def test_mosquitto_dies_with_a_killed_wrapper(tmp_path: Path) -> None:
    under_test = BrokerProcess("mosquitto", tmp_path)
    async with under_test.process:
        await under_test.start()
        pid = under_test.process.pid
        assert pid is not None
        children = descendants(pid)
        assert len(children) == 1
        os.kill(pid, signal.SIGKILL)  # the wrapper only: it cannot forward anything
        await under_test.process.wait(timeout=10)
        assert await wait_all_gone(children) == set(), "mosquitto outlived its wrapper"


# ----------------------------------------------------------------------- authentication and ACLs

NOT_AUTHORIZED = 5
EDGE_AMS, EDGE_FRA = edge_username("ams"), edge_username("fra")


async def test_anonymous_and_wrong_password_connects_are_refused(broker: BrokerProcess) -> None:
    async with await broker.raw(user=None) as anonymous:
        assert (await anonymous.connect("anon")).return_code == NOT_AUTHORIZED
        await anonymous.wait_closed_by_broker()
    async with await broker.raw(user=None) as guesser:
        connack = await guesser.connect("guess", username=EDGE_AMS, password=b"not-the-password")
        assert connack.return_code == NOT_AUTHORIZED
    async with await broker.raw(user=None) as unknown:
        connack = await unknown.connect("who", username="nobody", password=b"x")
        assert connack.return_code == NOT_AUTHORIZED
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(HOST, broker.port, identifier="anon-aiomqtt"):
            pass
    async with broker.client(user=EDGE_AMS):  # the right password is accepted
        pass


async def test_an_edge_cannot_publish_config_nor_another_pops_topics(
    broker: BrokerProcess,
) -> None:
    """edge-ams's forged config, fra event and fra snapshot never reach a subscriber, and
    nothing it tried to retain is retained; its own event and snapshot go through."""
    forged = [
        ("outlast/v1/tunnels/c1744f8b-faa1-48a4-9e5c-02ac921467fa", True),
        ("outlast/v1/zones/023e105f4ecef8ad9ca31a8372d0c353", True),
        ("outlast/v1/dns/023e105f4ecef8ad9ca31a8372d0c353/e1f2", True),
        ("outlast/v1/events/fra", False),
        ("outlast/v1/edges/fra/connections", True),
    ]
    async with broker.client(user=TESTER) as everything, broker.client(user=EDGE_AMS) as edge:
        await everything.subscribe("#", qos=1)
        for topic, retain in forged:
            await edge.publish(topic, b"forged", qos=1, retain=retain)  # acknowledged, dropped
            await edge.publish(topic, b"forged-qos0", qos=0)
        await edge.publish("outlast/v1/edges/ams/connections", b"own snapshot", qos=1)
        await edge.publish("outlast/v1/events/ams", b"own event", qos=1)
        received = await receive_until(everything, "outlast/v1/events/ams")
    assert as_tuples(received) == [("outlast/v1/edges/ams/connections", b"own snapshot", 1, False)]
    async with broker.client(user=TESTER) as late:
        await late.subscribe("outlast/v1/#", qos=1)
        await late.publish("sentinel/late", b"", qos=1)
        await late.subscribe("sentinel/late", qos=1)
        await late.publish("sentinel/late", b"", qos=1)
        assert await receive_until(late, "sentinel/late") == []  # nothing forged was retained


async def test_an_edge_reads_configuration_but_not_other_pops_events(
    broker: BrokerProcess,
) -> None:
    """Even subscribed to ``outlast/v1/#`` (refused with 0x80 by the embedded broker; granted
    and filtered per message by mosquitto), edge-ams gets configuration only."""
    async with (
        broker.client(user=EDGE_AMS) as edge,
        broker.client(user=EDGE_FRA) as other,
        broker.client(CONTROLPLANE_USER, user=CONTROLPLANE_USER) as cp,
    ):
        await edge.subscribe("outlast/v1/#", qos=1)
        await edge.subscribe("outlast/v1/tunnels/+", qos=1)
        await cp.subscribe("outlast/v1/events/+", qos=1)
        await other.publish("outlast/v1/events/fra", b"fra event", qos=1)
        await cp.publish("outlast/v1/tunnels/t1", b"config", qos=1)
        await cp.publish("outlast/v1/tunnels/done", b"", qos=1)
        received = await receive_until(edge, "outlast/v1/tunnels/done")
        [event] = await receive(cp, 1)
    assert [(m.topic.value, payload_of(m)) for m in received] == [
        ("outlast/v1/tunnels/t1", b"config")
    ]
    assert (event.topic.value, payload_of(event)) == ("outlast/v1/events/fra", b"fra event")


async def test_an_edge_cannot_subscribe_to_another_pops_events(broker: BrokerProcess) -> None:
    async with await broker.raw(user=EDGE_AMS) as edge:
        assert (await edge.connect("edge-ams-raw")).return_code == 0
        edge.send(Subscribe(7, (("outlast/v1/events/fra", 1), ("outlast/v1/zones/+", 1))))
        suback = await edge.expect(Suback)
    if broker.implementation == "embedded":
        assert suback.return_codes == (0x80, 1)
    else:  # mosquitto 2.0 grants the SUBACK and checks read access on every message
        assert suback.return_codes[1] == 1


async def test_an_edges_will_on_another_pops_topic_never_reaches_a_subscriber(
    broker: BrokerProcess,
) -> None:
    """A will is a publish too: edge-ams may not announce fra offline (embedded: CONNECT
    refused with 5; mosquitto: accepted, the will dropped when it fires)."""
    will = Will("outlast/v1/edges/fra/connections", b'{"online": false}', qos=1, retain=True)
    async with broker.client(user=TESTER) as watcher:
        await watcher.subscribe([("outlast/v1/edges/+/connections", 1), ("sentinel", 1)])
        raw = await broker.raw(user=EDGE_AMS)
        connack = await raw.connect("edge-ams-will", will=will, keepalive=30)
        assert connack.return_code in (0, NOT_AUTHORIZED)
        raw.abort()
        await asyncio.sleep(0.5)
        await watcher.publish("sentinel", b"", qos=1)
        assert await receive_until(watcher, "sentinel") == []


async def test_a_broker_needs_a_users_file_or_an_explicit_allow_anonymous(
    tmp_path: Path,
) -> None:
    process = await asyncio.create_subprocess_exec(
        *outlast_argv(
            "serve",
            "broker",
            "--listen",
            f"{HOST}:{free_port()}",
            "--data-dir",
            str(tmp_path / "d"),
            "--implementation",
            "embedded",
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 2
    assert b"--users-file" in stderr and b"--allow-anonymous" in stderr


@pytest.fixture(params=IMPLEMENTATIONS)
async def hardened_broker(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[BrokerProcess]:
    """The broker as the stack runs it: TLS only, client ids bound to usernames."""
    under_test = BrokerProcess(request.param, tmp_path, hardened=True)
    async with under_test.process:
        await under_test.start()
        yield under_test


async def test_a_tls_broker_refuses_plaintext_clients(hardened_broker: BrokerProcess) -> None:
    """No plaintext listener: a plaintext CONNECT (right password) gets no CONNACK."""
    credential = hardened_broker.credentials[CONTROLPLANE_USER]
    plain = await RawMqttClient.open(HOST, hardened_broker.port, credential=credential)
    async with plain:
        with pytest.raises((ConnectionClosed, ConnectionError, TimeoutError)):
            await plain.connect(CONTROLPLANE_USER, timeout=5.0)
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(
            HOST,
            hardened_broker.port,
            identifier=CONTROLPLANE_USER,
            username=credential.username,
            password=credential.password,
            timeout=5.0,
        ):
            pass
    async with await hardened_broker.raw(user=CONTROLPLANE_USER) as over_tls:
        assert (await over_tls.connect(CONTROLPLANE_USER)).return_code == 0


async def test_a_client_that_does_not_trust_the_broker_ca_fails(
    hardened_broker: BrokerProcess, tmp_path: Path
) -> None:
    """A broker certificate from another CA (or none) is refused by the client: the
    verifying context the control plane and the edges use fails the handshake."""
    other = provision_broker_tls(tmp_path / "other-pki", ip_addresses=(HOST,))
    with pytest.raises(ssl.SSLCertVerificationError):
        await RawMqttClient.open(HOST, hardened_broker.port, tls=client_context(other.ca_file))
    with pytest.raises(ssl.SSLCertVerificationError):  # the system's CAs do not help either
        await RawMqttClient.open(HOST, hardened_broker.port, tls=ssl.create_default_context())
    credential = hardened_broker.credentials[EDGE_AMS]
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(
            HOST,
            hardened_broker.port,
            identifier=EDGE_AMS,
            username=credential.username,
            password=credential.password,
            tls_context=client_context(other.ca_file),
            timeout=5.0,
        ):
            pass


async def test_a_user_cannot_take_over_another_clients_session(
    hardened_broker: BrokerProcess,
) -> None:
    """edge-ams connecting with the control plane's client id must not kick the control plane
    off (MQTT session takeover). Embedded: CONNACK 5; mosquitto (use_username_as_clientid):
    accepted, but as client id ``edge-ams``. Either way the control plane keeps its session."""
    async with hardened_broker.client(CONTROLPLANE_USER, user=CONTROLPLANE_USER) as cp:
        await cp.subscribe("outlast/v1/events/+", qos=1)
        async with await hardened_broker.raw(user=EDGE_AMS) as attacker:
            connack = await attacker.connect(CONTROLPLANE_USER, keepalive=30)
            if hardened_broker.implementation == "embedded":
                assert connack.return_code == NOT_AUTHORIZED
            else:
                assert connack.return_code == 0
            await asyncio.sleep(0.5)  # a takeover would have closed cp's connection by now
        async with hardened_broker.client(EDGE_FRA, user=EDGE_FRA) as fra:
            await fra.publish("outlast/v1/events/fra", b"still here", qos=1)
        [event] = await receive(cp, 1)  # raises MqttError if cp was disconnected
        assert payload_of(event) == b"still here"
        await cp.publish("outlast/v1/tunnels/after", b"", qos=1)  # the session still works


async def test_client_ids_are_the_usernames(hardened_broker: BrokerProcess) -> None:
    """A client id equal to the username (what the stack's clients send) and an empty one
    (given the username) are accepted; embedded refuses any other id with CONNACK 5."""
    async with await hardened_broker.raw(user=EDGE_AMS) as own:
        assert (await own.connect(EDGE_AMS)).return_code == 0
    async with await hardened_broker.raw(user=EDGE_AMS) as empty:
        assert (await empty.connect("")).return_code == 0
    if hardened_broker.implementation == "embedded":
        async with await hardened_broker.raw(user=EDGE_AMS) as other:
            assert (await other.connect("edge-ams-2")).return_code == NOT_AUTHORIZED
