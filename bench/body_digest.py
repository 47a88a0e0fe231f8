"""Cost of the tunnel body digest in the sans-I/O cores: a response body pushed from a connector
core to an edge core in memory, with the digest (as shipped) and with it switched off in this
process only (the cores' ``sent_digest``/``received_digest`` left unset). Prints MB/s of each and
their ratio; never run as a test.

    .venv/bin/python bench/body_digest.py [--mb 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from reference.wire import body_digest, core
from reference.wire import events as ev
from reference.wire.messages import RegistrationRequest, RegistrationResponse, StreamRequest

REQUEST = RegistrationRequest("t", "a", 0, "c", "p" * 64)


class _NoDigest:
    """Stands in for BodyDigest: hashes nothing, claims nothing."""

    def __init__(self) -> None:
        self.data_seen = False

    def update(self, data: bytes) -> None:
        return None

    def trailer(self) -> list[tuple[bytes, bytes]]:
        return [(b"x-none", b"0")]

    def claim(self, trailers: list[tuple[str, str]]) -> None:
        return None

    def verdict(self) -> None:
        return None


@contextmanager
def digest_off() -> Iterator[None]:
    original = core.BodyDigest
    core.BodyDigest = _NoDigest  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        core.BodyDigest = original  # type: ignore[misc]


def transfer(body: bytes, chunk: int = 64 * 1024) -> float:
    """Seconds to move ``body`` as one response, connector core -> edge core."""
    edge, conn = core.EdgeProtocol(now=0), core.ConnectorProtocol(now=0)
    conn.start(0)
    edge.start("n", 0)

    def pump() -> list[ev.WireEvent]:
        events: list[ev.WireEvent] = []
        while True:
            a, b = edge.data_to_send(), conn.data_to_send()
            if not a and not b:
                return events
            conn.receive_data(a, 0)
            for event in edge.receive_data(b, 0):
                if isinstance(event, ev.BodyReceived):
                    edge.acknowledge(event.stream_id, event.flow_length)
                events.append(event)

    pump()
    conn.send_registration(REQUEST)
    pump()
    edge.answer_registration(RegistrationResponse.success("x", "ams"))
    pump()
    sid = edge.open_stream(StreamRequest("GET", "/", "h"), end_stream=True)
    pump()
    started = time.perf_counter()
    conn.send_response(sid, 200, [])
    for start in range(0, len(body), chunk):
        conn.send_data(sid, body[start : start + chunk])
        pump()
    conn.end_stream(sid)
    ended = [e for e in pump() if isinstance(e, ev.StreamEnded)]
    seconds = time.perf_counter() - started
    assert ended, "the stream did not end"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    body = os.urandom(args.mb * 1024 * 1024)
    best: dict[str, float] = {}
    for _ in range(args.rounds):  # interleaved, best of each: the machine's load varies
        best["digest"] = min(best.get("digest", 1e9), transfer(body))
        with digest_off():
            best["none"] = min(best.get("none", 1e9), transfer(body))
    mb = len(body) / 1e6
    print(f"body {args.mb} MiB, best of {args.rounds}; trailer {body_digest.DIGEST_TRAILER}")
    print(f"  with digest     {mb / best['digest']:8.1f} MB/s")
    print(f"  without digest  {mb / best['none']:8.1f} MB/s")
    print(f"  ratio (with/without time) {best['digest'] / best['none']:.3f}")


if __name__ == "__main__":
    main()
