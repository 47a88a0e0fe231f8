"""Saving the embedded broker's durable state (retained messages, persistent sessions).

The state is one JSON document in the data directory, replaced atomically
(:func:`reference.files.atomic_write`). :class:`StateSaver` coalesces changes: the first change
schedules a save ``interval`` seconds later, further changes until then ride along, and
:meth:`StateSaver.flush` saves at once (on shutdown).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Any

from reference.broker.sessions import BrokerCore, InflightMessage, Message, Session
from reference.files import atomic_write
from reference.logs import log_event

logger = logging.getLogger("reference.broker.persistence")

STATE_FILE_NAME = "embedded-broker-state.json"
STATE_FORMAT = "outlast-embedded-broker-state"
STATE_VERSION = 1
DEFAULT_SAVE_INTERVAL = 0.2


class StateFileError(RuntimeError):
    """The state file exists but cannot be used."""


def _message_to_json(message: Message) -> dict[str, Any]:
    return {
        "topic": message.topic,
        "qos": message.qos,
        "retain": message.retain,
        "payload": base64.b64encode(message.payload).decode("ascii"),
    }


def _message_from_json(data: dict[str, Any]) -> Message:
    return Message(
        topic=str(data["topic"]),
        payload=base64.b64decode(data["payload"], validate=True),
        qos=int(data["qos"]),
        retain=bool(data.get("retain", False)),
    )


def dump_state(core: BrokerCore) -> bytes:
    """The durable part of ``core`` as JSON bytes (clean sessions are not durable)."""
    sessions = []
    for session in core.sessions.values():
        if not session.persistent:
            continue
        sessions.append(
            {
                "client_id": session.client_id,
                "subscriptions": dict(session.subscriptions),
                "inflight": [
                    {"packet_id": item.packet_id, "state": item.state}
                    | _message_to_json(item.message)
                    for item in session.inflight.values()
                ],
                "queue": [_message_to_json(message) for message in session.queue],
                "incoming_qos2": sorted(session.incoming_qos2),
                "next_packet_id": session.next_packet_id,
            }
        )
    document = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "retained": [_message_to_json(message) for message in core.retained.values()],
        "sessions": sessions,
    }
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def load_state(core: BrokerCore, data: bytes) -> None:
    """Fill an empty ``core`` from bytes written by :func:`dump_state`."""
    try:
        document = json.loads(data)
        if document.get("format") != STATE_FORMAT or document.get("version") != STATE_VERSION:
            raise ValueError(
                f"expected format {STATE_FORMAT!r} version {STATE_VERSION}, got "
                f"{document.get('format')!r} version {document.get('version')!r}"
            )
        retained = [_message_from_json(item) for item in document["retained"]]
        sessions = [_session_from_json(item) for item in document["sessions"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateFileError(f"broker state is not valid: {exc}") from exc
    core.retained = {message.topic: message for message in retained}
    core.sessions = {session.client_id: session for session in sessions}


def _session_from_json(data: dict[str, Any]) -> Session:
    session = Session(client_id=str(data["client_id"]), persistent=True)
    session.subscriptions = {str(k): int(v) for k, v in data["subscriptions"].items()}
    for item in data["inflight"]:
        state = item["state"]
        if state not in ("publish", "pubrel"):
            raise ValueError(f"unknown in-flight state {state!r}")
        inflight = InflightMessage(int(item["packet_id"]), _message_from_json(item), state)
        session.inflight[inflight.packet_id] = inflight
    session.queue = deque(_message_from_json(item) for item in data["queue"])
    session.incoming_qos2 = {int(packet_id) for packet_id in data["incoming_qos2"]}
    session.next_packet_id = int(data.get("next_packet_id", 1)) or 1
    return session


class StateSaver:
    """Debounced, atomic saving of a :class:`BrokerCore` to ``data_dir``."""

    def __init__(
        self, core: BrokerCore, data_dir: Path, interval: float = DEFAULT_SAVE_INTERVAL
    ) -> None:
        self.core = core
        self.path = Path(data_dir) / STATE_FILE_NAME
        self.interval = interval
        self.saves = 0
        self._timer: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def load(self) -> None:
        """Load the state file into the core, if there is one."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        try:
            load_state(self.core, data)
        except StateFileError as exc:
            raise StateFileError(
                f"{self.path}: {exc}. Move the file away to start with an empty broker."
            ) from exc
        log_event(
            logger,
            "broker state loaded",
            path=str(self.path),
            retained=len(self.core.retained),
            sessions=len(self.core.sessions),
        )

    def mark_dirty(self) -> None:
        """Schedule a save ``interval`` seconds from now unless one is already scheduled."""
        if self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.interval, self._start_save)

    def _start_save(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self._save())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _save(self) -> None:
        async with self._lock:
            data = dump_state(self.core)
            try:
                await asyncio.to_thread(atomic_write, self.path, data, 0o600)
            except OSError as exc:
                log_event(
                    logger,
                    "saving broker state failed, will retry",
                    level=logging.ERROR,
                    path=str(self.path),
                    error=str(exc),
                )
                self.mark_dirty()
                return
            self.saves += 1

    async def flush(self) -> None:
        """Save now (cancelling a scheduled save) and wait for saves in progress."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        async with self._lock:
            atomic_write(self.path, dump_state(self.core), 0o600)
            self.saves += 1
