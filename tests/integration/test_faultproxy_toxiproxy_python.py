"""The unmaintained ``toxiproxy-python`` package (test extra only) drives our fault proxy.

It is synchronous (requests) and keeps the server address in class attributes, so the calls
run in a worker thread and the address is restored afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import toxiproxy  # the test extra's toxiproxy-python
import toxiproxy.exceptions
from toxiproxy.api import APIConsumer

from harness.faultproxy import FaultProxyServer
from harness.faultproxy.testing import echo_server


@pytest.fixture
def restore_global_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    host, port = APIConsumer.host, APIConsumer.port
    try:
        yield
    finally:
        APIConsumer.host, APIConsumer.port = host, port


async def test_toxiproxy_python_creates_proxies_and_toxics(restore_global_host: None) -> None:
    async with echo_server() as echo_port, FaultProxyServer(("127.0.0.1", 0)) as server:
        upstream = f"127.0.0.1:{echo_port}"

        def setup() -> tuple[int, list[str], bytes]:
            tp = toxiproxy.Toxiproxy()
            tp.update_api_consumer("127.0.0.1", server.api_port)
            assert tp.running()
            version = tp.version()
            proxy = tp.create(upstream=upstream, name="legacy")
            with pytest.raises(toxiproxy.exceptions.ProxyExists):
                tp.create(upstream=upstream, name="legacy")
            proxy.add_toxic(type="latency", attributes={"latency": 300})
            toxics = sorted(proxy.toxics())
            fetched = tp.get_proxy("legacy")
            assert fetched is not None and fetched.upstream == upstream
            return int(fetched.listen.rpartition(":")[2]), toxics, version

        port, toxics, version = await asyncio.to_thread(setup)
        assert toxics == ["latency_downstream"]
        assert b"version" in version
        # the toxic it created acts on real traffic
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
        assert time.monotonic() - started >= 0.28
        writer.close()

        def teardown() -> tuple[bool, dict[str, object]]:
            tp = toxiproxy.Toxiproxy()
            proxy = tp.get_proxy("legacy")
            with proxy.down():  # its only context manager: POST /proxies/{name} enabled
                assert tp.get_proxy("legacy").enabled is False
            removed = proxy.destroy_toxic("latency_downstream")
            with pytest.raises(toxiproxy.exceptions.NotFound):
                proxy.destroy_toxic("latency_downstream")
            assert tp.reset()
            tp.destroy_all()
            return removed, tp.proxies()

        removed, remaining = await asyncio.to_thread(teardown)
        assert removed is True and remaining == {}
