"""``JournalBuilder``: synthetic journals for tests, examples and re-analysis experiments.

Times are given in seconds of the journal clock; the builder turns them into records exactly as a
run would have written them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.journal.history import NS_PER_S, History
from harness.journal.records import (
    EndRecord,
    FaultRecord,
    NoteRecord,
    OpRecord,
    Record,
    RunRecord,
    RunStatus,
    SampleKind,
    SampleRecord,
    TunnelInfo,
    TunnelKind,
    record_to_json,
)


def _ns(seconds: float) -> int:
    return round(seconds * NS_PER_S)


class JournalBuilder:
    """Build a journal record by record; ``history()`` or ``write(path)`` at the end."""

    def __init__(
        self,
        *,
        scenario: str = "synthetic",
        seed: int = 0,
        time_scale: float = 1.0,
        pops: Sequence[str] = ("ams", "fra"),
        tunnels: Mapping[str, tuple[TunnelKind, Sequence[str]]] | None = None,
        ha_connections: int = 4,
        clock_start: str | None = None,
        started_at: str = "2024-01-01T00:00:00.000Z",
    ) -> None:
        tunnels = tunnels if tunnels is not None else {"web": ("named", ["app.example.com"])}
        self.records: list[Record] = [
            RunRecord(
                t=0,
                scenario=scenario,
                seed=seed,
                time_scale=time_scale,
                started_at=started_at,
                clock_start=clock_start,
                pops=tuple(pops),
                tunnels={
                    name: TunnelInfo(id=f"{name}-id", kind=kind, hostnames=tuple(hosts))
                    for name, (kind, hosts) in tunnels.items()
                },
                ha_connections=ha_connections,
            )
        ]
        self._hostnames = {name: list(hosts) for name, (_, hosts) in tunnels.items()}
        self._next_op = 0
        self._next_fault = 0

    def op(
        self,
        at: float,
        f: str,
        phase: str,
        *,
        duration: float | None = 0.01,
        process: str = "visitor",
        invoke_value: Mapping[str, Any] | None = None,
        value: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> int:
        """An operation invoked at ``at`` completing ``duration`` later with ``phase``.

        ``duration=None`` leaves it without a completion (it reads as indeterminate).
        """
        op_id = self._next_op
        self._next_op += 1
        self.records.append(
            OpRecord(
                t=_ns(at),
                process=process,
                op_id=op_id,
                f=f,
                phase="invoke",
                value=dict(invoke_value or {}),
            )
        )
        if duration is not None:
            self.records.append(
                OpRecord.model_validate(
                    {
                        "t": _ns(at + duration),
                        "process": process,
                        "op_id": op_id,
                        "f": f,
                        "phase": phase,
                        "value": dict(value or {}),
                        "error": error,
                    }
                )
            )
        return op_id

    def request(
        self,
        at: float,
        phase: str = "ok",
        *,
        tunnel: str = "web",
        pop: str = "ams",
        f: str = "http_get",
        latency: float | None = 0.01,
        status: int | None = None,
        error: str | None = None,
        **result: Any,
    ) -> int:
        """A visitor request to ``tunnel``'s first hostname through edge ``pop``.

        An ``ok`` request gets a well-formed response (status 200, served by the right tunnel,
        request id and digest echoed) unless ``result`` overrides those fields.
        """
        hosts = self._hostnames.get(tunnel) or [f"{tunnel}.example.com"]
        invoke = {
            "pop": pop,
            "hostname": hosts[0],
            "tunnel": tunnel,
            "request_id": f"r{self._next_op}",
        }
        outcome: dict[str, Any] = {}
        if phase == "ok":
            outcome = {
                "status": 200 if status is None else status,
                "served_tunnel": tunnel,
                "request_id_echo_ok": True,
                "digest_ok": True,
            }
        elif phase == "fail":
            outcome = {"status": 502 if status is None else status}
            error = error or f"HTTP {outcome['status']}"
        elif phase == "info":
            error = error or "timeout"
        outcome.update(result)
        return self.op(
            at, f, phase, duration=latency, invoke_value=invoke, value=outcome, error=error
        )

    def dns(
        self,
        at: float,
        answer: Sequence[str] | None,
        *,
        hostname: str = "app.example.com",
        pop: str = "ams",
        rcode: str = "NOERROR",
        phase: str = "ok",
    ) -> int:
        """A DNS query for ``hostname`` at edge ``pop`` answered with ``answer``."""
        value: dict[str, Any] = {"rcode": rcode, "answer": list(answer or [])}
        return self.op(
            at,
            "dns_query",
            phase,
            process="dns",
            invoke_value={"pop": pop, "hostname": hostname, "qtype": "CNAME"},
            value=value if phase == "ok" else {},
            error=None if phase == "ok" else "no answer",
        )

    def fault(
        self,
        start: float,
        stop: float | None,
        fault: str,
        target: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> str:
        """A fault applied at ``start`` and undone at ``stop`` (``None``: never undone)."""
        self._next_fault += 1
        fault_id = f"f{self._next_fault}"
        common = {
            "fault_id": fault_id,
            "fault": fault,
            "target": target,
            "params": dict(params or {}),
        }
        self.records.append(
            FaultRecord.model_validate({"t": _ns(start), "phase": "start", **common})
        )
        if stop is not None:
            self.records.append(
                FaultRecord.model_validate({"t": _ns(stop), "phase": "stop", **common})
            )
        return fault_id

    def sample(
        self,
        at: float,
        kind: SampleKind,
        source: str,
        value: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        self.records.append(
            SampleRecord(t=_ns(at), kind=kind, source=source, value=dict(value or {}), error=error)
        )

    def connector(
        self, at: float, ha_connections: int, locations: Sequence[str], *, tunnel: str = "web"
    ) -> None:
        """A connector metrics scrape: HA connection count and the PoP of each connection."""
        self.sample(
            at,
            "connector",
            f"connector-{tunnel}",
            {
                "tunnel": tunnel,
                "ha_connections": ha_connections,
                "locations": {str(i): pop for i, pop in enumerate(locations)},
            },
        )

    def edge(self, at: float, pop: str, connections: Mapping[str, int]) -> None:
        """An edge metrics scrape: registered connections per tunnel at ``pop``."""
        self.sample(at, "edge", f"edge-{pop}", {"pop": pop, "connections": dict(connections)})

    def controlplane(self, at: float, requests: Mapping[str, int]) -> None:
        """A control-plane metrics scrape: cumulative request counters by route."""
        self.sample(at, "controlplane", "controlplane", {"requests": dict(requests)})

    def note(self, at: float, message: str, **fields: Any) -> None:
        self.records.append(NoteRecord(t=_ns(at), message=message, fields=fields))

    def end(self, at: float, status: RunStatus = "completed", error: str | None = None) -> None:
        self.records.append(EndRecord(t=_ns(at), status=status, error=error))

    def history(self) -> History:
        return History(self.records)

    def lines(self) -> list[str]:
        """Journal lines in time order, as a run would have written them."""
        ordered = sorted(enumerate(self.records), key=lambda pair: (pair[1].t, pair[0]))
        return [record_to_json(record) for _, record in ordered]

    def write(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in self.lines()), encoding="utf-8")
        return path
