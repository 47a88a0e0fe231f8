"""Toxiproxy-compatible fault proxy: server (``FaultProxyServer``), client, and server choice."""

from __future__ import annotations

from harness.faultproxy.client import (
    BadRequest,
    Conflict,
    FaultProxyClient,
    FaultProxyError,
    FaultProxyUnavailable,
    NotFound,
    Proxy,
    Toxic,
)
from harness.faultproxy.locate import FaultProxyChoice, locate_fault_proxy
from harness.faultproxy.server import FaultProxyServer

__all__ = [
    "BadRequest",
    "Conflict",
    "FaultProxyChoice",
    "FaultProxyClient",
    "FaultProxyError",
    "FaultProxyServer",
    "FaultProxyUnavailable",
    "NotFound",
    "Proxy",
    "Toxic",
    "locate_fault_proxy",
]
