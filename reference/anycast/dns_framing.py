"""Counting DNS messages in a DNS-over-TCP byte stream (RFC 1035 4.2.2: each message is
prefixed by its length in two bytes), sans-I/O. The relay only counts; it never alters bytes."""

from __future__ import annotations


class DnsMessageCounter:
    """Feed the bytes of one direction of a DNS-over-TCP connection; get whole messages seen."""

    def __init__(self) -> None:
        self._header = b""
        self._remaining = 0  # bytes of the current message body still to come

    def feed(self, data: bytes) -> int:
        """How many messages ``data`` completed."""
        completed = 0
        view = memoryview(data)
        while view:
            if self._remaining:
                step = min(self._remaining, len(view))
                self._remaining -= step
                view = view[step:]
                if not self._remaining:
                    completed += 1
                continue
            need = 2 - len(self._header)
            self._header += bytes(view[:need])
            view = view[need:]
            if len(self._header) == 2:
                self._remaining = int.from_bytes(self._header, "big")
                self._header = b""
                if not self._remaining:
                    completed += 1  # an empty message still counts as one
        return completed
