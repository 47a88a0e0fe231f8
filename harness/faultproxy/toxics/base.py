"""The interface every toxic satisfies, and what a toxic may do to the link it runs on.

A proxied connection has two links: ``upstream`` (client -> upstream server) and ``downstream``
(upstream server -> client). Each link passes the chunks it reads through the toxics that apply
to it, in the order they were added. A toxic sees one chunk at a time and forwards zero or more
chunks with ``emit`` (the next toxic, or the socket). It may also run a background task while it
is attached to a link (``on_start``), act when the link reaches end of stream (``at_eof``), and
clean up when it is removed (``on_remove``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from harness.faultproxy.randomness import RandomSource


@dataclass(slots=True)
class Chunk:
    """Bytes read from one side of a link, stamped with the loop time they arrived."""

    data: bytes
    arrived: float


Emit = Callable[[Chunk], Awaitable[None]]


class LinkHandle(Protocol):
    """The link a toxic runs on, as far as a toxic may touch it."""

    def close(self) -> None:
        """End the stream at this toxic (Toxiproxy's ``stub.Close``): what the toxic already
        passed on is still delivered, then the connection closes."""

    def reset(self) -> None:
        """Close both sockets with TCP RST (SO_LINGER 0), discarding buffered data."""


@dataclass(eq=False)
class ToxicStub:
    """One toxic attached to one link: whether it applies there, and its per-link state."""

    toxic: Toxic
    link: LinkHandle
    applies: bool
    state: Any = None
    background: Any = field(default=None, repr=False)


INT64_MAX = 2**63 - 1
DAY_MS = 86_400_000
# Time attributes in milliseconds: up to a day (a fault that lasts longer is a mistake).
MS_LIMIT = (DAY_MS, " ms (24 h)")


class BadAttributes(ValueError):
    """An attribute value that the toxic cannot use (the API answers 400)."""


class Toxic:
    """One toxic type. Subclasses set ``type_name`` and ``defaults`` and override the hooks.

    Attributes are integers (as in Toxiproxy); they are read live, so an update applies to links
    the toxic already runs on.
    """

    type_name: ClassVar[str]
    defaults: ClassVar[Mapping[str, int]]
    # Bytes that may queue in front of this toxic on a link (0: one chunk). Toxiproxy gives the
    # latency toxic 1024 chunks of up to 32 KiB, so a delayed stream keeps flowing.
    buffer_bytes: ClassVar[int] = 0
    # Largest accepted value (and its unit, for the error message) per attribute.
    limits: ClassVar[Mapping[str, tuple[int, str]]] = {}

    def __init__(self, attributes: Mapping[str, int], random: RandomSource) -> None:
        self.attributes: dict[str, int] = {**self.defaults, **attributes}
        self.random = random

    @classmethod
    def check(cls, attributes: Mapping[str, int]) -> None:
        """Raise :class:`BadAttributes` if ``attributes`` (merged with defaults) are unusable:
        negative, or above the toxic's ``limits`` (default: Go's int64, as Toxiproxy)."""
        for name, value in attributes.items():
            if value < 0:
                raise BadAttributes(f"attribute {name!r} must not be negative, got {value}")
            limit, unit = cls.limits.get(name, (INT64_MAX, ""))
            if value > limit:
                raise BadAttributes(
                    f"attribute {name!r} of a {cls.type_name} toxic must be at most "
                    f"{limit}{unit}, got {value}"
                )

    def attr(self, name: str) -> int:
        """Current value of attribute ``name``."""
        return self.attributes[name]

    def new_state(self) -> Any:
        """Fresh per-link state (None when the toxic keeps none)."""
        return None

    async def pipe(self, chunk: Chunk, emit: Emit, stub: ToxicStub) -> None:
        """Handle one chunk; the default forwards it unchanged."""
        await emit(chunk)

    def on_start(self, stub: ToxicStub) -> Coroutine[Any, Any, None] | None:
        """A coroutine to run in the background while attached to a link (None: nothing)."""
        return None

    async def at_eof(self, stub: ToxicStub) -> None:
        """Called when the link's source reached end of stream, before it is passed on."""

    def on_remove(self, stub: ToxicStub) -> None:
        """Called when the toxic is removed from a link it applied to."""
