"""The fault library's vocabulary: fault kinds, what each may target, and its parameters.

This module only describes faults (for validation and for generated schedules); applying them is
the job of ``harness.faults``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from harness.scenario.durations import Duration

FaultKind = Literal[
    "controlplane_outage",
    "broker_outage",
    "token_rollover",
    "credential_revocation",
    "link_down",
    "link_blackhole",
    "link_latency",
    "link_bandwidth",
    "link_reset",
    "link_slicer",
    "link_limit_data",
    "pop_outage",
    "pop_withdraw",
    "kill",
    "pause",
    "restart",
    "stop",
    "node_down",
    "node_drain",
    "task_kill",
    "network_partition",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

TargetKind = Literal["none", "link", "pop", "tunnel", "component", "node"]
"""What a fault's ``target`` names: nothing, a fault-proxy link, a PoP, a tunnel, a component or
a swarm worker node (``pop-<pop>``, ``connectors``)."""

DurationRule = Literal["required", "optional", "forbidden"]
"""Whether a timeline entry of this fault needs ``for`` (faults without it are instantaneous)."""

Stream = Literal["upstream", "downstream", "both"]


class FaultParams(BaseModel):
    """Parameters of a fault (base class: no parameters)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class OutageParams(FaultParams):
    """``controlplane_outage`` / ``broker_outage``: ``stop`` the process, or cut its ``links``."""

    mode: Literal["stop", "links"] = "stop"


class ToxicParams(FaultParams):
    """Common to ``link_*`` faults applied as toxics."""

    stream: Stream = "both"
    toxicity: float = Field(default=1.0, ge=0.0, le=1.0)


class LatencyParams(ToxicParams):
    latency: Duration = Field(description="added delay, e.g. 200ms")
    jitter: Duration = 0.0


class BandwidthParams(ToxicParams):
    rate_kbps: int = Field(ge=0, description="KB/s allowed through")


class ResetParams(ToxicParams):
    timeout: Duration = Field(default=0.0, description="reset connections after this long")


class SlicerParams(ToxicParams):
    average_size: int = Field(ge=1, description="average slice size in bytes")
    size_variation: int = Field(default=0, ge=0)
    delay: Duration = Field(default=0.0, description="delay between slices")


class LimitDataParams(ToxicParams):
    bytes: int = Field(ge=0, description="close connections after this many bytes")


class BlackholeParams(FaultParams):
    """``link_blackhole``: data is accepted and never delivered (Toxiproxy ``timeout`` 0)."""

    stream: Stream = "both"
    close: Literal["pass", "hold"] = Field(
        default="pass",
        description="pass: a peer's close still crosses the hole (Toxiproxy's timeout toxic); "
        "hold: it is held back too (a slow_close toxic), as in a cut cable",
    )


class KillParams(FaultParams):
    signal: Literal["KILL", "TERM", "INT"] = "KILL"


class RestartParams(FaultParams):
    graceful: bool = True
    fresh: bool = Field(
        default=False,
        description="(an edge) start without its on-disk configuration cache, as a PoP "
        "installed anew: it knows only what the broker's retained messages tell it",
    )


@dataclass(frozen=True)
class FaultSpec:
    """What a fault kind targets, whether it lasts (``for``), and its parameter model."""

    kind: str
    target: TargetKind
    duration: DurationRule
    params: type[FaultParams]
    summary: str


FAULT_SPECS: dict[str, FaultSpec] = {
    spec.kind: spec
    for spec in (
        FaultSpec(
            "controlplane_outage", "none", "required", OutageParams, "control plane API unreachable"
        ),
        FaultSpec("broker_outage", "none", "required", OutageParams, "MQTT broker unreachable"),
        FaultSpec(
            "token_rollover",
            "none",
            "forbidden",
            FaultParams,
            "roll the user's API token (old cert.pem refused)",
        ),
        FaultSpec(
            "credential_revocation",
            "tunnel",
            "forbidden",
            FaultParams,
            "delete the tunnel, revoking its credentials",
        ),
        FaultSpec("link_down", "link", "required", FaultParams, "disable the proxy"),
        FaultSpec(
            "link_blackhole", "link", "required", BlackholeParams, "accept and drop all data"
        ),
        FaultSpec("link_latency", "link", "required", LatencyParams, "latency + jitter"),
        FaultSpec("link_bandwidth", "link", "required", BandwidthParams, "bandwidth limit"),
        FaultSpec("link_reset", "link", "required", ResetParams, "reset connections (RST)"),
        FaultSpec("link_slicer", "link", "required", SlicerParams, "slice data into small pieces"),
        FaultSpec("link_limit_data", "link", "required", LimitDataParams, "close after N bytes"),
        FaultSpec("pop_outage", "pop", "required", FaultParams, "an edge PoP down"),
        FaultSpec(
            "pop_withdraw",
            "pop",
            "required",
            FaultParams,
            "the anycast entry stops announcing a PoP (it keeps running)",
        ),
        FaultSpec(
            "kill",
            "component",
            "optional",
            KillParams,
            "kill a process (started again after `for`, if given)",
        ),
        FaultSpec("pause", "component", "required", FaultParams, "SIGSTOP, then SIGCONT"),
        FaultSpec("restart", "component", "forbidden", RestartParams, "stop and start again"),
        FaultSpec(
            "stop",
            "component",
            "optional",
            FaultParams,
            "stop a process (started again after `for`, if given)",
        ),
        FaultSpec(
            "node_down",
            "node",
            "required",
            FaultParams,
            "a swarm node dies (its engine stopped), then comes back",
        ),
        FaultSpec(
            "node_drain",
            "node",
            "required",
            FaultParams,
            "a swarm node drained (Swarm takes its tasks away), then active",
        ),
        FaultSpec(
            "task_kill",
            "component",
            "forbidden",
            FaultParams,
            "SIGKILL a component's Swarm task (Swarm starts a new one)",
        ),
        FaultSpec(
            "network_partition",
            "node",
            "required",
            FaultParams,
            "a swarm node cut off from every other node",
        ),
    )
}
assert set(FAULT_SPECS) == set(FAULT_KINDS)


def fault_spec(kind: str) -> FaultSpec:
    """The spec of ``kind``; ``KeyError`` with the known kinds if there is none."""
    try:
        return FAULT_SPECS[kind]
    except KeyError:
        raise KeyError(f"unknown fault {kind!r} (known: {', '.join(FAULT_KINDS)})") from None
