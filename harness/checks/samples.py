"""Reading metric samples: connector HA state, edge connection counts, control-plane counters."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from harness.journal.history import History
from harness.journal.records import SampleRecord


def connector_samples(
    history: History, tunnel: str, source: str | None = None
) -> list[SampleRecord]:
    """Successful scrapes of ``tunnel``'s connectors (of one replica, ``source``, if given),
    in time order."""
    return [
        s
        for s in history.samples_of("connector")
        if (s.value.get("tunnel") == tunnel or s.source == f"connector-{tunnel}")
        and (source is None or s.source == source)
    ]


def connector_sources(history: History, tunnel: str) -> list[str]:
    """The connector replicas of ``tunnel`` that were scraped (``connector-web``, ...); at least
    the first one's name, so a tunnel with no samples still gets judged (as undecided)."""
    found = sorted({s.source for s in connector_samples(history, tunnel)})
    return found or [f"connector-{tunnel}"]


def ha_connections(sample: SampleRecord) -> int:
    """``ha_connections`` of a connector sample (0 if absent or not a number)."""
    value = sample.value.get("ha_connections", 0)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def locations(sample: SampleRecord) -> list[str]:
    """PoP of each current connection (``locations``: ``{conn_index: pop}`` or a list)."""
    raw = sample.value.get("locations") or {}
    pops = raw.values() if isinstance(raw, dict) else raw
    return [str(p) for p in pops if p]


def edge_connections(sample: SampleRecord, tunnel: str, tunnel_id: str | None) -> int:
    """Registered connections of ``tunnel`` (by name or id) in an edge sample."""
    counts: dict[str, Any] = sample.value.get("connections") or {}
    total = 0
    for key in {tunnel, tunnel_id} - {None}:
        value = counts.get(str(key), 0)
        if isinstance(value, int | float) and not isinstance(value, bool):
            total += int(value)
    return total


def route_matches(route: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether a control-plane route counts: matches an ``include`` glob and no ``exclude``."""
    return any(fnmatch.fnmatchcase(route, p) for p in include) and not any(
        fnmatch.fnmatchcase(route, p) for p in exclude
    )


#: Verdicts of the tunnel body digest an edge counts (``outlast_edge_tunnel_digest*``).
DIGEST_RESULTS = ("verified", "absent", "mismatch")


def tunnel_digest_counts(history: History) -> dict[str, int] | None:
    """Response bodies the edges judged by the tunnel digest during the run, by verdict: the
    increase of each edge's counters from its first scrape to its last (restarts included).
    ``None`` when no edge sample has the counters (a journal from before the digest)."""
    totals = dict.fromkeys(DIGEST_RESULTS, 0)
    by_edge: dict[str, list[dict[str, Any]]] = {}
    for sample in history.samples_of("edge"):
        digests = sample.value.get("tunnel_digests")
        if isinstance(digests, dict):
            by_edge.setdefault(sample.source, []).append(digests)
    if not by_edge:
        return None
    for series in by_edge.values():
        for result in DIGEST_RESULTS:
            values = [int(d.get(result, 0) or 0) for d in series]
            totals[result] += counter_increase(values)
    return totals


def counter_increase(values: Sequence[int]) -> int:
    """Increase of a cumulative counter over consecutive samples; a drop is a restart (reset)."""
    increase = 0
    for previous, current in pairwise(values):
        increase += current - previous if current >= previous else current
    return increase
