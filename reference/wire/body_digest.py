"""The tunnel's end-to-end digest of each HTTP response body, between connector and edge.

The connector hashes (SHA-256) every body byte it sends on an HTTP response stream and ends the
stream with an HTTP/2 trailer ``outlast-body-sha256: <hex>`` instead of an empty DATA frame.
The edge hashes every body byte it receives and compares when the stream ends:

* ``verified`` — the trailer matches the bytes received;
* ``mismatch`` — it does not (or is malformed): the body must not reach the visitor as complete;
* ``absent``  — a body arrived with no trailer (a peer that sends none, e.g. cloudflared);
* ``None``    — nothing to check (the response ended with its head: no body frames at all).
"""

from __future__ import annotations

import hashlib
import re
from typing import Final, Literal

#: The trailer carrying the connector's digest of the response body.
DIGEST_TRAILER: Final = "outlast-body-sha256"
Verdict = Literal["verified", "mismatch", "absent"]
_HEX = re.compile(r"^[0-9a-f]{64}$")


class BodyDigest:
    """SHA-256 of one body as it passes, plus the peer's claim of it (edge side)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.data_seen = False
        self.claimed: str | None = None

    def update(self, data: bytes) -> None:
        self.data_seen = True
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def trailer(self) -> list[tuple[bytes, bytes]]:
        """The trailer block that ends a sent body (connector side)."""
        return [(DIGEST_TRAILER.encode(), self.hexdigest().encode())]

    def claim(self, trailers: list[tuple[str, str]]) -> None:
        """Note the peer's digest from its trailers (edge side); other trailers are ignored."""
        for name, value in trailers:
            if name.lower() == DIGEST_TRAILER:
                self.claimed = value.strip().lower()
                self.data_seen = True  # a trailer is a body frame, even after an empty body

    def verdict(self) -> Verdict | None:
        """What the end of the stream says about the bytes received (module docstring)."""
        if self.claimed is None:
            return "absent" if self.data_seen else None
        if not _HEX.match(self.claimed):
            return "mismatch"
        return "verified" if self.claimed == self.hexdigest() else "mismatch"
