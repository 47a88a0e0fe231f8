"""Toxics: one module per type, all satisfying :class:`~harness.faultproxy.toxics.base.Toxic`."""

from __future__ import annotations

from harness.faultproxy.toxics.bandwidth import BandwidthToxic
from harness.faultproxy.toxics.base import BadAttributes, Chunk, Emit, LinkHandle, Toxic, ToxicStub
from harness.faultproxy.toxics.latency import LatencyToxic
from harness.faultproxy.toxics.limit_data import LimitDataToxic
from harness.faultproxy.toxics.reset_peer import ResetPeerToxic
from harness.faultproxy.toxics.slicer import SlicerToxic
from harness.faultproxy.toxics.slow_close import SlowCloseToxic
from harness.faultproxy.toxics.timeout import TimeoutToxic

TOXIC_TYPES: dict[str, type[Toxic]] = {
    cls.type_name: cls
    for cls in (
        LatencyToxic,
        BandwidthToxic,
        SlowCloseToxic,
        TimeoutToxic,
        ResetPeerToxic,
        SlicerToxic,
        LimitDataToxic,
    )
}

__all__ = [
    "TOXIC_TYPES",
    "BadAttributes",
    "Chunk",
    "Emit",
    "LinkHandle",
    "Toxic",
    "ToxicStub",
]
