"""The on-disk configuration cache: loaded at start, written atomically (debounced) on change."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from types import TracebackType

from reference.config_signing import ConfigVerifier
from reference.edge.config_cache import ConfigCache
from reference.files import atomic_write
from reference.logs import log_event

logger = logging.getLogger("reference.edge.cache")

CACHE_FILE_NAME = "config-cache.json"
CACHE_FILE_MODE = 0o600


def cache_path(cache_dir: Path) -> Path:
    """Where the cache lives inside ``--cache-dir``."""
    return Path(cache_dir) / CACHE_FILE_NAME


def load_cache(cache_dir: Path, verifier: ConfigVerifier | None = None) -> ConfigCache:
    """The cache saved in ``cache_dir``, or an empty one.

    A file that cannot be read as a cache is moved aside (``config-cache.json.corrupt-<time>``)
    and the edge starts empty: the broker's retained messages will refill it.
    """
    path = cache_path(cache_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        log_event(logger, "no configuration cache yet; starting empty", path=str(path))
        return ConfigCache(verifier)
    try:
        cache = ConfigCache.from_document(json.loads(raw), verifier)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        os.replace(path, aside)
        log_event(
            logger,
            "configuration cache unreadable; moved aside, starting empty",
            logging.ERROR,
            path=str(path),
            moved_to=str(aside),
            error=str(exc),
        )
        return ConfigCache(verifier)
    log_event(
        logger,
        "configuration cache loaded",
        path=str(path),
        version=cache.version,
        entries=len(cache),
    )
    return cache


def encode_cache(cache: ConfigCache) -> bytes:
    """The cache file's bytes (JSON, see docs/edge.md)."""
    return json.dumps(cache.to_document(), indent=1, sort_keys=True).encode() + b"\n"


def write_cache_file(cache_dir: Path, data: bytes) -> None:
    """Replace the cache file atomically with ``data`` (mode 0600, directory 0700)."""
    Path(cache_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(cache_path(cache_dir), data, CACHE_FILE_MODE)


def save_cache(cache: ConfigCache, cache_dir: Path) -> int:
    """Write ``cache`` atomically; return the version written."""
    write_cache_file(cache_dir, encode_cache(cache))
    return cache.version


class CachePersister:
    """Writes the cache after changes, at most once per ``debounce`` seconds, and on exit.

    ``persisted_version`` is the version of the last successful write (for metrics and tests).
    """

    def __init__(self, cache: ConfigCache, cache_dir: Path, *, debounce: float = 0.05) -> None:
        self.cache = cache
        self.cache_dir = Path(cache_dir)
        self.debounce = debounce
        self.persisted_version = cache.version if cache_path(cache_dir).exists() else 0
        self._saved_changes = cache.change_count
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def mark_dirty(self) -> None:
        """Schedule a write (call after the cache changed)."""
        self._dirty.set()

    async def flush(self) -> None:
        """Write now if anything changed since the last write."""
        if self.cache.change_count == self._saved_changes:
            return
        # Encode on the event loop (the cache is only mutated there), write in a thread.
        changes = self.cache.change_count
        version = self.cache.version
        data = encode_cache(self.cache)
        try:
            await asyncio.to_thread(write_cache_file, self.cache_dir, data)
        except OSError as exc:
            log_event(
                logger,
                "could not write the configuration cache; will retry on the next change",
                logging.ERROR,
                path=str(cache_path(self.cache_dir)),
                error=str(exc),
            )
            return
        self._saved_changes = changes
        self.persisted_version = version

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.debounce)
            self._dirty.clear()
            await self.flush()

    async def __aenter__(self) -> CachePersister:
        self._task = asyncio.create_task(self._run(), name="edge-cache-persister")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
