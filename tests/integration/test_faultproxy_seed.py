"""Same seed, same traffic -> same toxicity draws, jitter and slice sizes (two real servers)."""

from __future__ import annotations

import asyncio

from harness.faultproxy import FaultProxyClient, FaultProxyServer
from harness.faultproxy.randomness import RandomSource
from harness.faultproxy.testing import echo_server

CONNECTIONS = 24


async def affected_pattern(seed: int, upstream: str) -> tuple[list[bool], list[tuple[str, float]]]:
    """Open CONNECTIONS connections one after the other through a proxy whose toxic cuts the
    connection (limit_data 0) with toxicity 0.5; return which ones were cut, plus the draws that
    the jitter and slicer toxics made for the same traffic."""
    async with (
        FaultProxyServer(("127.0.0.1", 0), seed=seed) as server,
        FaultProxyClient(server.url) as client,
    ):
        proxy = await client.create_proxy("p", "127.0.0.1:0", upstream)
        await proxy.add_toxic(
            "limit_data", {"bytes": 0}, stream="upstream", toxicity=0.5, name="cut"
        )
        await proxy.add_toxic("latency", {"latency": 5, "jitter": 4}, name="jitter")
        await proxy.add_toxic(
            "slicer", {"average_size": 8, "size_variation": 6, "delay": 0}, name="slices"
        )
        pattern = []
        for _ in range(CONNECTIONS):
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listen_port)
            writer.write(b"0123456789abcdef" * 4)
            data = b""
            try:  # the echo comes back, or the cut connection ends
                while len(data) < 64 and (chunk := await asyncio.wait_for(reader.read(1024), 10)):
                    data += chunk
            except ConnectionResetError:
                pass
            writer.close()
            pattern.append(data == b"")
        toxics = server.proxies.proxy("p").toxics
        draws = toxics.get("jitter").toxic.random.draws()
        draws += toxics.get("slices").toxic.random.draws()
        return pattern, draws


async def test_same_seed_gives_the_same_draws() -> None:
    async with echo_server() as port:
        upstream = f"127.0.0.1:{port}"
        first, first_draws = await affected_pattern(1234, upstream)
        second, second_draws = await affected_pattern(1234, upstream)
        other, _ = await affected_pattern(99, upstream)
    assert first == second
    assert first_draws == second_draws
    assert any(first) and not all(first), "toxicity 0.5 should cut some connections, not all"
    assert other != first  # 2**-24 chance of a false failure
    # the draws are derived from (seed, proxy, toxic) and nothing else
    expected = RandomSource(1234, "p", "cut")
    assert first == [expected.chance(0.5) for _ in range(CONNECTIONS)]
    kinds = {kind for kind, _ in first_draws}
    assert kinds == {"chance", "offset"}  # toxicity draws, jitter offsets and slice cuts
    assert len(first_draws) > 2 * CONNECTIONS
