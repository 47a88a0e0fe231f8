"""Time intervals on the journal clock (integer ns, half-open ``[start, end)``)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence

Interval = tuple[int, int]


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping union of ``intervals`` (empty ones dropped)."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def overlaps(merged: Sequence[Interval], start: int, end: int) -> bool:
    """Whether ``[start, end]`` (a point if equal) touches one of the ``merged`` intervals."""
    starts = [s for s, _ in merged]
    index = bisect_right(starts, end) - 1
    while index >= 0:
        s, e = merged[index]
        if e > start and s <= end:
            return True
        if e <= start:
            return False
        index -= 1
    return False


def total(merged: Sequence[Interval]) -> int:
    """Length of the union."""
    return sum(end - start for start, end in merged)
