"""compose/mosquitto/mosquitto.conf on a real mosquitto, with the files `setup` writes (no engine).

The Compose broker runs this very file; here its paths are pointed at a temporary directory and
its listener at a free loopback port, and the host's mosquitto runs it. Skipped (with the
reason) where mosquitto is not installed.
"""

from __future__ import annotations

import asyncio
import os
import pwd
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from harness.compose import plan
from harness.compose.steps import write_broker_auth
from harness.stack.ports import free_port
from harness.stack.process import ManagedProcess
from harness.stack.readiness import wait_tcp
from reference.broker.auth import BrokerCredential
from reference.broker.mosquitto import find_mosquitto
from reference.broker.probe import ConnectionClosed, RawMqttClient
from reference.broker.tls import client_context

pytestmark = pytest.mark.skipif(
    find_mosquitto() is None, reason="mosquitto is not installed (CI installs it)"
)
HOST = "127.0.0.1"
COMPOSE_CONF = Path(__file__).resolve().parents[2] / "compose" / "mosquitto" / "mosquitto.conf"


class ComposeBroker:
    def __init__(self, tmp_path: Path) -> None:
        self.auth = tmp_path / "broker-auth"
        write_broker_auth(self.auth)
        self.port = free_port()
        data = tmp_path / "data"
        data.mkdir()
        conf = COMPOSE_CONF.read_text()
        conf = conf.replace(plan.BROKER_FILES_DIR, str(self.auth / "broker"))
        conf = conf.replace("/mosquitto/data/", f"{data}/")
        conf = conf.replace("listener 1883 0.0.0.0", f"listener {self.port} {HOST}")
        if os.geteuid() == 0:  # as root mosquitto would drop to a user that cannot read them
            conf += f"user {pwd.getpwuid(0).pw_name}\n"
        (tmp_path / "mosquitto.conf").write_text(conf)
        binary = find_mosquitto()
        assert binary is not None
        self.process = ManagedProcess(
            "compose-mosquitto",
            [binary, "-c", str(tmp_path / "mosquitto.conf")],
            tmp_path / "mosquitto.log",
        )
        self.tls = client_context(self.auth / "broker" / plan.BROKER_CA_FILE)

    def credential(self, client: str) -> BrokerCredential:
        return BrokerCredential.load(self.auth / client / plan.BROKER_CREDENTIALS_FILE)

    def client(self, user: str, identifier: str | None = None) -> aiomqtt.Client:
        credential = self.credential(user)
        return aiomqtt.Client(
            "localhost",  # the certificate names localhost, broker and toxiproxy
            self.port,
            identifier=identifier or user,
            username=credential.username,
            password=credential.password,
            tls_context=self.tls,
            timeout=5.0,
        )


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[ComposeBroker]:
    under_test = ComposeBroker(tmp_path)
    async with under_test.process:
        await under_test.process.start()
        await wait_tcp(HOST, under_test.port, timeout=20, process=under_test.process)
        yield under_test


async def test_plaintext_and_anonymous_clients_are_refused(broker: ComposeBroker) -> None:
    credential = broker.credential("controlplane")
    async with await RawMqttClient.open(HOST, broker.port, credential=credential) as plain:
        with pytest.raises((ConnectionClosed, ConnectionError, TimeoutError)):
            await plain.connect("controlplane", timeout=5.0)
    async with await RawMqttClient.open(HOST, broker.port, tls=broker.tls) as anonymous:
        assert (await anonymous.connect("anonymous")).return_code == 5
    async with broker.client("controlplane"):
        pass


async def test_an_edge_can_neither_publish_config_nor_take_the_control_planes_session(
    broker: ComposeBroker,
) -> None:
    async with broker.client("controlplane") as cp, broker.client("edge-fra") as reader:
        await reader.subscribe("outlast/v1/tunnels/+", qos=1)
        await cp.subscribe("outlast/v1/events/+", qos=1)
        async with broker.client("edge-ams", identifier="controlplane") as attacker:
            await attacker.publish("outlast/v1/tunnels/forged", b"forged", qos=1, retain=True)
            await attacker.publish("outlast/v1/events/ams", b"from ams", qos=1)
            await asyncio.sleep(0.5)
        await cp.publish("outlast/v1/tunnels/real", b"real", qos=1)
        async with asyncio.timeout(10):
            async for message in reader.messages:  # the forged one never arrives first
                assert (message.topic.value, message.payload) == (
                    "outlast/v1/tunnels/real",
                    b"real",
                )
                break
            async for message in cp.messages:  # cp kept its session (else MqttError)
                assert message.payload == b"from ams"
                break
