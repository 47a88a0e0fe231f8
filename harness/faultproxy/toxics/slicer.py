"""``slicer``: cut each chunk into slices of about ``average_size`` bytes (give or take
``size_variation``), sent ``delay`` microseconds apart."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from typing import ClassVar

from harness.faultproxy.randomness import RandomSource
from harness.faultproxy.toxics.base import DAY_MS, BadAttributes, Chunk, Emit, Toxic, ToxicStub


def slice_bounds(size: int, average: int, variation: int, random: RandomSource) -> list[int]:
    """Cut points ``[0, ..., size]``: halve recursively around a seeded offset until each piece is
    at most ``average + variation`` bytes (iterative, so no recursion limit)."""
    cuts = [0]
    pending = [(0, size)]
    while pending:
        start, end = pending.pop()
        if end - start - average <= variation:
            cuts.append(end)
            continue
        middle = start + (end - start) // 2 + random.offset(variation)
        middle = min(max(middle, start + 1), end - 1)
        pending.append((middle, end))  # right half after the left (stack order)
        pending.append((start, middle))
    return cuts


class SlicerToxic(Toxic):
    """Slices are forwarded one by one with a pause of ``delay`` µs after each."""

    type_name: ClassVar[str] = "slicer"
    defaults: ClassVar[dict[str, int]] = {"average_size": 0, "size_variation": 0, "delay": 0}
    limits: ClassVar[Mapping[str, tuple[int, str]]] = {"delay": (DAY_MS * 1000, " µs (24 h)")}

    @classmethod
    def check(cls, attributes: Mapping[str, int]) -> None:
        super().check(attributes)
        if attributes["average_size"] < 1:
            raise BadAttributes("slicer needs average_size >= 1 (bytes per slice)")
        if attributes["size_variation"] >= attributes["average_size"]:
            raise BadAttributes("slicer needs size_variation < average_size")

    async def pipe(self, chunk: Chunk, emit: Emit, stub: ToxicStub) -> None:
        data = chunk.data
        cuts = slice_bounds(
            len(data), self.attr("average_size"), self.attr("size_variation"), self.random
        )
        pause = self.attr("delay") / 1_000_000.0
        for start, end in itertools.pairwise(cuts):
            await emit(Chunk(data[start:end], chunk.arrived))
            if pause > 0:
                await asyncio.sleep(pause)
