"""Many named-tunnel connectors in one process, for ``bench/reconnect_storm.py``.

    python bench/storm_connectors.py --tunnels FILE --first I --count N --edge HOST:PORT ...
                                     --edge-ca PEM --origin URL --events FILE [--seed S]

Each tunnel runs the reference connector's own HA machinery — :class:`HAConnector` with its
:class:`ConnectionSupervisor` (retry policy with full jitter, PoP spreading, rebalancing), the
wire protocol over TLS, registration proofs from the tunnel's real secret, and an
:class:`OriginProxy` to the origin — exactly what ``outlast tunnel run`` builds, only several
tunnels share one process and event loop (one process per tunnel would not fit 1000 tunnels
on 2 cores). Not shared with ``tunnel run``: the metrics server, the remembered edge addresses,
INFO logs (warnings only here).

Every registration, loss and failed attempt is appended to ``--events`` as JSON lines
``{"t": <CLOCK_MONOTONIC seconds>, "tunnel": i, "conn": k, "kind": ..., "pop": ...}`` (the
monotonic clock is shared by every process of the machine). SIGTERM: unregister and stop.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import random
import signal
import ssl
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reference.connector.ha import HAConfig, HAConnector
from reference.connector.ingress import Ingress
from reference.connector.metrics import ConnectorMetrics, SlotInfo
from reference.connector.proxy import OriginProxy
from reference.connector.supervisor import ConnectionSupervisor, EdgeAddress
from reference.logs import configure_logging


class EventLog:
    """Buffered JSON-lines event file, flushed by :meth:`flush` (called periodically)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.pending: list[str] = []

    def add(self, tunnel: int, conn: int, kind: str, **extra: Any) -> None:
        record = {"t": time.monotonic(), "tunnel": tunnel, "conn": conn, "kind": kind, **extra}
        self.pending.append(json.dumps(record, separators=(",", ":")))

    def flush(self) -> None:
        if self.pending:
            self.out.write("\n".join(self.pending) + "\n")
            self.out.flush()
            self.pending.clear()


class FirstFew(logging.Filter):
    """Let through the first ``limit`` records of each message (then one in a thousand)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.seen: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)[:60]
        self.seen[key] = self.seen.get(key, 0) + 1
        n = self.seen[key]
        return n <= self.limit or n % 1000 == 0


class RecordingMetrics(ConnectorMetrics):
    """The connector's metrics, also writing every registration change to the event log."""

    def __init__(self, connector_id: str, tunnel: int, log: EventLog) -> None:
        super().__init__(connector_id)
        self.tunnel = tunnel
        self.log = log

    def registered(self, info: SlotInfo) -> None:
        super().registered(info)
        self.log.add(self.tunnel, info.conn_index, "registered", pop=info.location)

    def unregistered(self, conn_index: int, connection_id: str | None = None) -> None:
        current = self.slots.get(conn_index)
        super().unregistered(conn_index, connection_id)
        if current is not None and conn_index not in self.slots:
            self.log.add(self.tunnel, conn_index, "lost", pop=current.location)

    def registration_failed(self, reason: str) -> None:
        super().registration_failed(reason)
        self.log.add(self.tunnel, -1, "failed", reason=reason[:40])


async def run(args: argparse.Namespace, tunnels: list[dict[str, str]]) -> None:
    edges = [EdgeAddress.parse(e) for e in args.edge]
    context = ssl.create_default_context(cafile=args.edge_ca)
    rng = random.Random(args.seed)
    with open(args.events, "a", encoding="utf-8") as out:
        log = EventLog(out)
        proxy_metrics = ConnectorMetrics("storm-proxy")
        async with OriginProxy(Ingress.single(args.origin), proxy_metrics) as proxy:
            managers = []
            for offset, tunnel in enumerate(tunnels):
                index = args.first + offset
                secret = base64.b64decode(tunnel["secret"])
                connector_id = str(uuid.uuid4())
                config = HAConfig(
                    tunnel_id=tunnel["id"],
                    account_tag=tunnel["account_tag"],
                    verifier=HAConfig.verifier_of(secret, tunnel["id"]),
                    tunnel_secret=secret,
                    connector_id=connector_id,
                    credentials_path=f"(storm tunnel {index})",
                    ssl_context=context,
                    grace_period=1.0,
                )
                supervisor = ConnectionSupervisor(
                    edges,
                    config.ha_connections,
                    rng=random.Random(rng.getrandbits(64)),
                    tunnel_id=tunnel["id"],
                )
                metrics = RecordingMetrics(connector_id, index, log)
                managers.append(HAConnector(config, supervisor, proxy, metrics))
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            runs = [asyncio.ensure_future(m.run()) for m in managers]

            async def flusher() -> None:
                while True:
                    log.flush()
                    await asyncio.sleep(0.2)

            flushing = asyncio.ensure_future(flusher())
            await stop.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await asyncio.gather(*(m.shutdown() for m in managers))
            for task in runs:
                task.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            flushing.cancel()
            log.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunnels", required=True, help="JSON list of {id, account_tag, secret}")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--edge", action="append", required=True)
    parser.add_argument("--edge-ca", required=True)
    parser.add_argument("--origin", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    configure_logging("storm-connectors", "WARNING")
    # Per-connection warnings ("Lost connection", "Unable to establish") come by the thousand
    # in a storm; the event file counts them all, the log keeps the first few of each kind.
    logging.getLogger("reference.connector").addFilter(FirstFew(20))
    tunnels = json.loads(Path(args.tunnels).read_text())[args.first : args.first + args.count]
    asyncio.run(run(args, tunnels))


if __name__ == "__main__":
    main()
