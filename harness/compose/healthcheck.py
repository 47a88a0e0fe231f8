"""Container healthchecks in exec form, standard library only (fast to start every few seconds).

    python -m harness.compose.healthcheck http://127.0.0.1:8080/health
    python -m harness.compose.healthcheck tcp://127.0.0.1:1883

Exit status 0 when the URL answers 2xx (or the TCP port accepts), 1 otherwise.
"""

from __future__ import annotations

import socket
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit


def check(target: str, timeout: float = 2.0) -> str | None:
    """None when ``target`` is healthy, else the reason it is not."""
    parts = urlsplit(target)
    if parts.scheme == "tcp":
        try:
            address = (parts.hostname or "127.0.0.1", parts.port or 0)
            with socket.create_connection(address, timeout):
                return None
        except OSError as exc:
            return f"{target}: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"{target}: use http://HOST:PORT/PATH or tcp://HOST:PORT"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(target, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{target}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{target}: {exc}"
    return None if 200 <= status < 300 else f"{target}: HTTP {status}"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    problem = check(argv[0])
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
