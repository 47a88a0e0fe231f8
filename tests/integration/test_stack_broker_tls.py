"""The local stack's broker link over TLS, end to end, for the embedded broker and mosquitto.

Configuration reaches the edges only through the broker, so a hostname served through every
PoP of a fresh stack proves the control plane and both edges talk TLS to it. The broker's port
answers no plaintext MQTT, and its clients run with ids bound to their usernames.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from harness.stack.local import LocalStack
from reference.broker.auth import CONTROLPLANE_USER, BrokerCredential
from reference.broker.mosquitto import find_mosquitto
from reference.broker.probe import ConnectionClosed, RawMqttClient
from reference.broker.tls import client_context

pytestmark = pytest.mark.timeout(180)

IMPLEMENTATIONS = [
    pytest.param("embedded", id="embedded"),
    pytest.param(
        "mosquitto",
        id="mosquitto",
        marks=pytest.mark.skipif(
            find_mosquitto() is None, reason="mosquitto is not installed (CI installs it)"
        ),
    ),
]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
async def test_the_stack_runs_end_to_end_over_a_tls_broker(
    implementation: str, tmp_path: Path
) -> None:
    async with LocalStack(tmp_path / "stack", broker_implementation=implementation) as stack:
        data = stack.endpoints()
        hostname = data["tunnels"][0]["hostname"]
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            for url in [data["visitor_url"], *(p["visitor_url"] for p in data["pops"].values())]:
                response = await http.get(f"{url}/hello", headers={"Host": hostname})
                assert response.status_code == 200, (url, response.text)
            metrics = await http.get(f"{data['api_url']}/metrics")
        assert "outlast_controlplane_broker_connected 1.0" in metrics.text
        host, port = data["broker"].rsplit(":", 1)
        credential = BrokerCredential.load(Path(data["broker_credentials"][CONTROLPLANE_USER]))
        plain = await RawMqttClient.open(host, int(port), credential=credential)
        async with plain:
            with pytest.raises((ConnectionClosed, ConnectionError, TimeoutError)):
                await plain.connect("plaintext-probe", timeout=5.0)
        tls = client_context(Path(data["broker_ca"]))
        async with await RawMqttClient.open(host, int(port), tls=tls) as anonymous:
            assert (await anonymous.connect("anonymous-probe")).return_code == 5
        users = json.loads((stack.broker_auth_dir / "broker-users.json").read_text())
        assert users["bind_client_ids"] is True
