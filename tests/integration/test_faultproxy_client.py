"""The typed async client against the embedded server: calls, context managers, errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from harness.faultproxy import (
    BadRequest,
    Conflict,
    FaultProxyClient,
    FaultProxyError,
    FaultProxyServer,
    FaultProxyUnavailable,
    NotFound,
    Proxy,
    Toxic,
)
from harness.faultproxy.testing import echo_server
from harness.stack.ports import free_port


@pytest.fixture
async def client() -> AsyncIterator[FaultProxyClient]:
    async with (
        FaultProxyServer(("127.0.0.1", 0)) as server,
        FaultProxyClient(server.url, timeout=5) as fp_client,
    ):
        yield fp_client


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    async with echo_server() as port:
        yield f"127.0.0.1:{port}"


async def test_proxy_lifecycle(client: FaultProxyClient, upstream: str) -> None:
    assert (await client.version()).startswith("2.")
    proxy = await client.create_proxy("web", "127.0.0.1:0", upstream)
    assert isinstance(proxy, Proxy) and proxy.enabled and proxy.listen_port > 0
    assert proxy.listen_host == "127.0.0.1"
    assert (await client.proxies()).keys() == {"web"}
    fetched = await client.get_proxy("web")
    assert fetched == proxy
    await proxy.disable()
    assert not proxy.enabled
    await proxy.enable()
    assert proxy.enabled and proxy.listen == fetched.listen
    await proxy.delete()
    with pytest.raises(NotFound) as caught:
        await client.get_proxy("web")
    assert caught.value.status == 404 and caught.value.message == "proxy not found"


async def test_toxics_and_context_managers(client: FaultProxyClient, upstream: str) -> None:
    proxy = await client.create_proxy("web", "127.0.0.1:0", upstream)
    added = await proxy.add_toxic("latency", {"latency": 10}, stream="upstream", toxicity=0.5)
    assert added == Toxic(
        "latency_upstream", "latency", "upstream", 0.5, {"latency": 10, "jitter": 0}
    )
    updated = await proxy.update_toxic("latency_upstream", {"jitter": 3})
    assert updated.attributes == {"latency": 10, "jitter": 3} and updated.toxicity == 0.5
    await proxy.remove_toxic("latency_upstream")
    async with proxy.toxic("bandwidth", rate=50, name="slow") as toxic:
        assert toxic.name == "slow"
        assert [t.name for t in await proxy.list_toxics()] == ["slow"]
        await proxy.refresh()
        assert [t.name for t in proxy.toxics] == ["slow"]
    assert await proxy.list_toxics() == []
    async with proxy.toxic("timeout"):
        await client.reset()  # removed behind the context manager's back: not an error
    async with proxy.down():
        assert not (await client.get_proxy("web")).enabled
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", proxy.listen_port)
    assert (await client.get_proxy("web")).enabled


async def test_down_restores_even_on_error(client: FaultProxyClient, upstream: str) -> None:
    proxy = await client.create_proxy("web", "127.0.0.1:0", upstream)
    with pytest.raises(RuntimeError):
        async with proxy.down():
            raise RuntimeError("scenario failed")
    assert (await client.get_proxy("web")).enabled


async def test_populate_returns_typed_proxies(client: FaultProxyClient, upstream: str) -> None:
    config = [{"name": "a", "upstream": upstream}, {"name": "b", "upstream": upstream}]
    first = await client.populate(config)
    second = await client.populate(config)
    assert [p.name for p in first] == ["a", "b"]
    assert [p.listen for p in second] == [p.listen for p in first]


async def test_errors_carry_status_and_message(client: FaultProxyClient, upstream: str) -> None:
    proxy = await client.create_proxy("web", "127.0.0.1:0", upstream)
    with pytest.raises(Conflict) as conflict:
        await client.create_proxy("web", "127.0.0.1:0", upstream)
    assert (conflict.value.status, conflict.value.message) == (409, "proxy already exists")
    with pytest.raises(BadRequest) as bad:
        await proxy.add_toxic("nonsense")
    assert bad.value.status == 400 and bad.value.message == "invalid toxic type"
    with pytest.raises(NotFound):
        await proxy.remove_toxic("missing")
    with pytest.raises(FaultProxyError) as server_error:
        taken = (await client.get_proxy("web")).listen
        await client.create_proxy("clash", taken, upstream)
    assert server_error.value.status == 500
    assert "address already in use" in server_error.value.message


async def test_unreachable_server_is_reported_quickly() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with FaultProxyClient(url, timeout=2) as fp_client:
        with pytest.raises(FaultProxyUnavailable) as caught:
            await fp_client.proxies()
    assert caught.value.status == 0 and url in caught.value.message


async def test_every_call_has_a_timeout() -> None:
    release = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await release.wait()
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with FaultProxyClient(f"http://127.0.0.1:{port}", timeout=0.5) as fp_client:
            started = time.monotonic()
            with pytest.raises(FaultProxyUnavailable, match="did not answer"):
                await fp_client.reset()
            assert time.monotonic() - started < 5
    finally:
        release.set()
        server.close()
