"""Ports for the components of a stack: free, outside the ephemeral range, and reserved so
that stacks started side by side on one machine never pick the same one."""

from __future__ import annotations

import os
import random
import socket
import tempfile
import time
from pathlib import Path

_RESERVATIONS = Path(tempfile.gettempdir()) / "outlast-ports"
_RESERVATION_TTL = 300.0
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _candidate_range() -> range:
    """Ports below the kernel's ephemeral range: no outgoing connection is ever given one, so
    a port picked here stays free until its component binds it."""
    low, _ = _ephemeral_range()
    if low > 12000:
        return range(10000, low)
    return range(61000, 65500)


def _reserve(port: int) -> bool:
    """Claim ``port`` for this machine's Outlast processes (a file per port, stale after a
    few minutes), so stacks started in parallel never pick the same one."""
    _RESERVATIONS.mkdir(parents=True, exist_ok=True)
    path = _RESERVATIONS / str(port)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        try:
            if time.time() - path.stat().st_mtime < _RESERVATION_TTL:
                return False
            path.unlink()
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except OSError:
            return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def _bindable(host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):  # DNS listens on both
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP and UDP port that is free on ``host`` and reserved for the caller.

    Picked at random below the ephemeral range and reserved across processes (see
    ``_reserve``); never the same port twice in one process. A port from ``bind(0)`` would be an
    ephemeral one, which an outgoing connection or a parallel stack can take before the
    component that was given it binds it (seen in CI as "address already in use").
    """
    candidates = _candidate_range()
    rng = random.Random()
    for _ in range(2000):
        port = rng.choice(candidates)
        if port in _handed_out or not _bindable(host, port) or not _reserve(port):
            continue
        _handed_out.add(port)
        return port
    raise RuntimeError(
        f"no free port in {candidates.start}-{candidates.stop - 1} on {host} after 2000 tries; "
        f"stop leftover stacks (`outlast stack down`) or clear {_RESERVATIONS}"
    )
