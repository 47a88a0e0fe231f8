"""The connector's memory of edge addresses (and the PoP each one reached), kept in its state
directory so a restart can find the edges even when none are given on the command line."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from reference.connector.supervisor import EdgeAddress
from reference.files import atomic_write
from reference.logs import log_event

logger = logging.getLogger(__name__)


class EdgeMemory:
    """``<state_dir>/edges-<tunnel_id>.json``: ``{"edges": [{"address", "location",
    "saved_at"}]}``."""

    def __init__(self, state_dir: Path, tunnel_id: str) -> None:
        self.path = Path(state_dir) / f"edges-{tunnel_id}.json"

    def load(self) -> dict[EdgeAddress, str | None]:
        """Remembered addresses with their last known location (empty if none or unreadable)."""
        try:
            raw = json.loads(self.path.read_text())
            out: dict[EdgeAddress, str | None] = {}
            for entry in raw.get("edges", []):
                location = entry.get("location")
                out[EdgeAddress.parse(str(entry["address"]))] = (
                    location if isinstance(location, str) else None
                )
            return out
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log_event(
                logger,
                "ignoring unreadable edge memory",
                logging.WARNING,
                event="edge_memory_unreadable",
                path=str(self.path),
                error=str(exc),
            )
            return {}

    def save(self, addresses: list[EdgeAddress], locations: dict[EdgeAddress, str]) -> None:
        """Remember ``addresses`` (most recently registered location per address)."""
        previous = self.load()
        entries = []
        for address in addresses:
            entries.append(
                {
                    "address": str(address),
                    "location": locations.get(address) or previous.get(address),
                    "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            )
        data = json.dumps({"edges": entries}, indent=2).encode() + b"\n"
        try:
            atomic_write(self.path, data, mode=0o600)
        except OSError as exc:
            log_event(
                logger,
                "cannot save edge memory",
                logging.WARNING,
                event="edge_memory_unwritable",
                path=str(self.path),
                error=str(exc),
            )
