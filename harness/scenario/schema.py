"""The scenario model (pydantic v2): what a scenario YAML file or script describes.

Times in the timeline (``at``, ``for``) and ``duration`` are *scenario* seconds; a run plays them
multiplied by ``time_scale`` (``0.5`` plays a 60 s outage in 30 s). Everything else — traffic
rates and intervals, check parameters, fault parameters — is real time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from harness.scenario.base import StrictModel, custom_error, raise_errors
from harness.scenario.durations import (
    Duration,
    clock_offset,
    format_duration,
    is_clock_time,
    parse_datetime,
    parse_duration,
)
from harness.scenario.faults import FAULT_SPECS, FaultKind, FaultParams, FaultSpec
from harness.scenario.origin import OriginSpec, UserRequest

if TYPE_CHECKING:
    from harness.stack.topology import Topology

TunnelKind = Literal["named", "legacy"]
ConnectorKind = Literal["reference", "cloudflared"]
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"
SCENARIO_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


M = TypeVar("M", bound=BaseModel)


def _validate_params(title: str, model: type[M], raw: Any) -> M:
    """``raw`` (a mapping, a model or ``None``) as ``model``; errors located under ``params``."""
    if isinstance(raw, model):
        return raw
    if raw is None:
        raw = {}
    if isinstance(raw, BaseModel):
        raw = raw.model_dump()
    if not isinstance(raw, Mapping):
        message = "params must be a mapping of parameter: value"
        raise_errors(title, [custom_error(("params",), "mapping", message, raw)])
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors: list[InitErrorDetails] = [
            {
                "type": PydanticCustomError(e["type"], e["msg"]),
                "loc": ("params", *e["loc"]),
                "input": e["input"],
            }
            for e in exc.errors(include_url=False)
        ]
        raise_errors(title, errors)
        raise


# -- stack --------------------------------------------------------------------------------------


class TunnelEntry(StrictModel):
    """One tunnel the stack creates and runs a connector for."""

    name: str = Field(pattern=NAME_PATTERN)
    kind: TunnelKind = "named"
    hostname: str = Field(min_length=1)
    replicas: int = Field(
        default=1, ge=1, le=8, description="connector processes running this tunnel at once"
    )

    @property
    def connector(self) -> str:
        """Component name of this tunnel's (first) connector."""
        return f"connector-{self.name}"


class RegionEntry(StrictModel):
    """A visitor region of the anycast entry."""

    name: str = Field(pattern=NAME_PATTERN)
    prefer: tuple[str, ...] = Field(min_length=1, description="PoPs, best first")
    weight: float = Field(default=1.0, gt=0, description="share of visitor connections")


class EdgeNetworkSpec(StrictModel):
    """How visitors reach the edge network (the anycast entry)."""

    convergence: Duration = Field(
        default=1.0, ge=0, description="a PoP that went down stops receiving visitors after this"
    )
    regions: tuple[RegionEntry, ...] = Field(
        default=(), description="default: one region per PoP, preferring it"
    )


class StackSpec(StrictModel):
    """Shape of the system under test: PoPs, tunnels, zone, HA connections per connector."""

    pops: tuple[str, ...] = Field(default=("ams", "fra"), min_length=1)
    tunnels: tuple[TunnelEntry, ...] = Field(
        default=(TunnelEntry(name="web", hostname="app.example.com"),), min_length=1
    )
    zone: str = "example.com"
    ha_connections: int = Field(default=4, ge=1, le=16)
    edge_network: EdgeNetworkSpec = EdgeNetworkSpec()
    origin: OriginSpec | None = Field(
        default=None, description="the user's service (default: the reference echo origin)"
    )
    connector: ConnectorKind = Field(
        default="reference",
        description="what runs the named tunnels: the reference connector or the real "
        "cloudflared (docs/cloudflared.md); legacy tunnels always run the reference one",
    )

    @field_validator("pops")
    @classmethod
    def _pop_names(cls, pops: tuple[str, ...]) -> tuple[str, ...]:
        for pop in pops:
            if not re.match(NAME_PATTERN, pop):
                raise ValueError(f"PoP name {pop!r}: use lowercase letters, digits and '-'")
        if len(set(pops)) != len(pops):
            raise ValueError(f"PoP names must be unique, got {list(pops)}")
        return pops

    @model_validator(mode="after")
    def _tunnels_consistent(self) -> StackSpec:
        errors: list[InitErrorDetails] = []
        seen_names: set[str] = set()
        seen_hosts: set[str] = set()
        for i, tunnel in enumerate(self.tunnels):
            if tunnel.name in seen_names:
                errors.append(
                    custom_error(
                        ("tunnels", i, "name"),
                        "duplicate",
                        f'duplicate tunnel name "{tunnel.name}"',
                        tunnel.name,
                    )
                )
            seen_names.add(tunnel.name)
            host = tunnel.hostname
            if host in seen_hosts:
                errors.append(
                    custom_error(
                        ("tunnels", i, "hostname"),
                        "duplicate",
                        f'hostname "{host}" is routed to two tunnels',
                        host,
                    )
                )
            seen_hosts.add(host)
            if host != self.zone and not host.endswith("." + self.zone):
                errors.append(
                    custom_error(
                        ("tunnels", i, "hostname"),
                        "zone",
                        f'hostname "{host}" is not in zone "{self.zone}"',
                        host,
                    )
                )
        for i, region in enumerate(self.edge_network.regions):
            for j, pop in enumerate(region.prefer):
                if pop not in self.pops:
                    errors.append(
                        custom_error(
                            ("edge_network", "regions", i, "prefer", j),
                            "unknown",
                            f'PoP "{pop}" is not in the stack (known: {", ".join(self.pops)})',
                            pop,
                        )
                    )
        raise_errors("StackSpec", errors)
        return self

    @property
    def links(self) -> list[str]:
        """Every fault-proxy link name (ARCHITECTURE.md section 2)."""
        return self.topology().links

    @property
    def components(self) -> list[str]:
        """Every process/container a fault may kill, pause, restart or stop."""
        return self.topology().components

    @property
    def hostnames(self) -> list[str]:
        return [t.hostname for t in self.tunnels]

    def tunnel(self, name: str) -> TunnelEntry:
        """The tunnel called ``name`` (``KeyError`` if none)."""
        for tunnel in self.tunnels:
            if tunnel.name == name:
                return tunnel
        raise KeyError(f"no tunnel {name!r} in the stack (have: {[t.name for t in self.tunnels]})")

    def targets(self, kind: str) -> list[str]:
        """Valid ``target`` values for a fault target kind (see ``FaultSpec.target``)."""
        return {
            "link": self.links,
            "pop": list(self.pops),
            "tunnel": [t.name for t in self.tunnels],
            "component": self.components,
            "node": [*(f"pop-{pop}" for pop in self.pops), "connectors"],
        }.get(kind, [])

    def topology(self) -> Topology:
        """The same shape as a ``harness.stack.topology.Topology`` for the stack backends."""
        from harness.stack.topology import Region, Topology, TunnelSpec

        return Topology(
            pops=self.pops,
            tunnels=tuple(
                TunnelSpec(t.name, t.hostname, t.kind, replicas=t.replicas) for t in self.tunnels
            ),
            zone=self.zone,
            convergence=float(self.edge_network.convergence),
            regions=tuple(Region(r.name, r.prefer, r.weight) for r in self.edge_network.regions),
            origin=self.origin.user_origin() if self.origin else None,
        )


# -- traffic ------------------------------------------------------------------------------------


class TrafficMix(StrictModel):
    """Relative weights of visitor request kinds."""

    get: float = Field(default=1.0, ge=0)
    post: float = Field(default=0.0, ge=0)
    ws: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _some_traffic(self) -> TrafficMix:
        if self.get + self.post + self.ws <= 0:
            raise ValueError("at least one of get, post, ws needs a weight above 0")
        return self


class TrafficSpec(StrictModel):
    """Visitor traffic and observation probes (all real time)."""

    rate: float = Field(default=10.0, gt=0, le=1000, description="visitor requests per second")
    mix: TrafficMix = TrafficMix()
    body_size: int = Field(default=1024, ge=0, le=16 * 1024 * 1024, description="POST/WS bytes")
    body_sizes: tuple[Annotated[int, Field(ge=0, le=16 * 1024 * 1024)], ...] = Field(
        default=(),
        description="POST bytes drawn from these sizes for each request (instead of body_size)",
    )
    response_sizes: tuple[Annotated[int, Field(ge=0, le=16 * 1024 * 1024)], ...] = Field(
        default=(),
        description="GETs also ask the echo origin for a body of one of these sizes (?size=N) "
        "and check its SHA-256",
    )
    hostnames: tuple[str, ...] | None = Field(
        default=None, description="hostnames visitors ask for (default: every tunnel's)"
    )
    entry: Literal["anycast", "pops"] = Field(
        default="anycast",
        description="anycast: the edge network's one visitor address (what visitors use); "
        "pops: each PoP's own address, round robin (a per-PoP diagnostic view)",
    )
    pops: tuple[str, ...] | None = Field(
        default=None, description="with entry: pops, the PoPs visited (default: every PoP)"
    )
    timeout: Duration = Field(default=5.0, gt=0, description="a request taking longer is info")
    dns_interval: Duration = Field(default=1.0, description="0 turns DNS probes off")
    metrics_interval: Duration = Field(default=1.0, description="0 turns metrics scrapes off")
    audit_interval: Duration = Field(default=0.0, description="0 turns audit-log reads off")
    requests: tuple[UserRequest, ...] = Field(
        default=(), description="the user's requests, round robin by weight (replace mix)"
    )


# -- timeline -----------------------------------------------------------------------------------


class ClockSpec(StrictModel):
    """Wall-clock anchor: scenario time 0 is ``start`` (for replaying an incident's times)."""

    start: datetime

    @field_validator("start", mode="before")
    @classmethod
    def _aware(cls, value: Any) -> Any:
        if isinstance(value, str | datetime):
            try:
                return parse_datetime(value)
            except ValueError as exc:
                raise PydanticCustomError("datetime", str(exc)) from None
        return value

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def offset(self, value: str) -> float:
        """Seconds from ``start`` to the clock time ``value`` (``"15:31"`` or ISO 8601)."""
        return clock_offset(self.start, value)


class TimelineEntry(StrictModel):
    """One fault: apply ``fault`` to ``target`` at ``at``, undo it ``for`` later."""

    at: Duration = Field(description="scenario seconds from the start of the timeline")
    duration: Duration | None = Field(
        default=None,
        validation_alias="for",
        serialization_alias="for",
        description="how long the fault lasts (scenario seconds)",
    )
    fault: FaultKind
    target: str | None = None
    params: SerializeAsAny[FaultParams] = FaultParams()
    name: str | None = Field(default=None, description="label shown in reports")

    @model_validator(mode="before")
    @classmethod
    def _typed_params(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        kind = data.get("fault")
        spec = FAULT_SPECS.get(kind) if isinstance(kind, str) else None
        if spec is None:  # the unknown fault is reported; do not add noise about its params
            return {**data, "params": FaultParams()} if "params" in data else data
        return {
            **data,
            "params": _validate_params("TimelineEntry", spec.params, data.get("params")),
        }

    @model_validator(mode="after")
    def _duration_and_target_rules(self) -> TimelineEntry:
        spec = self.spec
        errors: list[InitErrorDetails] = []
        if spec.duration == "required" and self.duration is None:
            message = f'{self.fault} needs "for" (how long it lasts, e.g. 30s)'
            errors.append(custom_error(("for",), "for_required", message, None))
        if spec.duration == "forbidden" and self.duration is not None:
            message = f'{self.fault} is instantaneous; remove "for"'
            errors.append(custom_error(("for",), "for_forbidden", message, self.duration))
        if spec.target == "none" and self.target is not None:
            message = f"{self.fault} takes no target"
            errors.append(custom_error(("target",), "target_forbidden", message, self.target))
        if spec.target != "none" and self.target is None:
            message = f"{self.fault} needs a target ({spec.target})"
            errors.append(custom_error(("target",), "target_required", message, None))
        raise_errors("TimelineEntry", errors)
        return self

    @property
    def spec(self) -> FaultSpec:
        return FAULT_SPECS[self.fault]

    @property
    def end(self) -> float | None:
        """Scenario second at which the fault is undone (``None``: until the run ends)."""
        return None if self.duration is None else self.at + self.duration

    def label(self) -> str:
        """``name``, or e.g. ``link_down conn-ams``."""
        if self.name:
            return self.name
        return f"{self.fault} {self.target}" if self.target else self.fault


# -- checks and SLO -----------------------------------------------------------------------------


class CheckSpec(StrictModel):
    """One check to run on the journal, with its parameters and the expected outcome."""

    name: str
    params: SerializeAsAny[BaseModel] = Field(default_factory=lambda: BaseModel())
    expect: Literal["pass", "fail"] = "pass"
    label: str | None = Field(default=None, description="name in reports (default: name)")

    @model_validator(mode="before")
    @classmethod
    def _typed_params(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        from harness.checks.registry import UnknownCheckError, get_check

        name = data.get("name")
        if not isinstance(name, str):
            return data
        try:
            definition = get_check(name)
        except UnknownCheckError as exc:
            raise_errors("CheckSpec", [custom_error(("name",), "unknown_check", str(exc), name)])
            raise
        params = _validate_params("CheckSpec", definition.params_model, data.get("params"))
        return {**data, "params": params}

    @property
    def display_name(self) -> str:
        return self.label or self.name


class SloSpec(StrictModel):
    """Service-level objective for the SLA report (error budget); checks decide the verdict."""

    availability: float = Field(default=99.9, gt=0, lt=100, description="percent")
    latency_p99_ms: float | None = Field(default=None, gt=0)
    exclude_faults: tuple[str, ...] = Field(
        default=(),
        description="planned downtime: visitor requests invoked while a fault of one of these "
        "kinds is active are left out of the SLA figures (an SLA's excluded-downtime clause); "
        "checks still judge them",
    )


# -- scenario -----------------------------------------------------------------------------------


class Scenario(StrictModel):
    """A complete scenario. Build one in Python or load a YAML file with ``load_scenario``."""

    name: str = Field(pattern=SCENARIO_NAME_PATTERN)
    description: str = ""
    seed: int = 0
    time_scale: float = Field(default=1.0, gt=0, le=100)
    clock: ClockSpec | None = None
    stack: StackSpec = StackSpec()
    traffic: TrafficSpec = TrafficSpec()
    timeline: tuple[TimelineEntry, ...] = ()
    duration: Duration = Field(gt=0, description="scenario seconds the timeline runs")
    checks: tuple[CheckSpec, ...] = ()
    slo: SloSpec = SloSpec()

    @model_validator(mode="before")
    @classmethod
    def _resolve_clock_times(cls, data: Any) -> Any:
        """Turn ``at``/``until`` wall-clock times into scenario seconds (needs ``clock.start``)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("timeline"), list):
            return data
        start: datetime | None = None
        clock = data.get("clock")
        if isinstance(clock, Mapping) and clock.get("start") is not None:
            try:
                start = parse_datetime(clock["start"])
            except (ValueError, TypeError):
                start = None
        errors: list[InitErrorDetails] = []
        timeline: list[Any] = []
        for i, entry in enumerate(data["timeline"]):
            if not isinstance(entry, Mapping):
                timeline.append(entry)
                continue
            entry = dict(entry)
            resolved: dict[str, float] = {}
            for key in ("at", "until"):
                value = entry.get(key)
                if is_clock_time(value):
                    assert isinstance(value, str)
                    if start is None:
                        errors.append(
                            custom_error(
                                ("timeline", i, key),
                                "clock",
                                f'clock time "{value}" needs clock.start '
                                "(add: clock: {start: 2020-04-15T15:00:00Z})",
                                value,
                            )
                        )
                        continue
                    try:
                        resolved[key] = clock_offset(start, value)
                    except ValueError as exc:
                        errors.append(custom_error(("timeline", i, key), "clock", str(exc), value))
                        continue
                    if key == "at":
                        entry["at"] = resolved[key]
            if "until" in entry:
                until = entry.pop("until")
                if "for" in entry or "duration" in entry:
                    errors.append(
                        custom_error(
                            ("timeline", i, "until"),
                            "conflict",
                            'give either "for" or "until", not both',
                            until,
                        )
                    )
                    continue
                try:
                    at_s = resolved.get("at", parse_duration(entry.get("at")))
                    until_s = resolved["until"] if "until" in resolved else parse_duration(until)
                except (ValueError, KeyError):
                    timeline.append(entry)
                    continue
                if until_s <= at_s:
                    errors.append(
                        custom_error(
                            ("timeline", i, "until"),
                            "order",
                            f'"until" ({until}) must be after "at"',
                            until,
                        )
                    )
                    continue
                entry["for"] = until_s - at_s
            timeline.append(entry)
        raise_errors("Scenario", errors)
        return {**data, "timeline": timeline}

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        """Targets exist in the stack, the timeline fits the duration, scopes name real things."""
        errors: list[InitErrorDetails] = []
        stack = self.stack
        for i, entry in enumerate(self.timeline):
            kind = entry.spec.target
            if entry.target is not None and kind != "none":
                valid = stack.targets(kind)
                if entry.target not in valid:
                    errors.append(
                        custom_error(
                            ("timeline", i, "target"),
                            "target",
                            f'unknown {kind} "{entry.target}" for {entry.fault} '
                            f"(known: {', '.join(valid)})",
                            entry.target,
                        )
                    )
            fresh = getattr(entry.params, "fresh", False)
            if fresh and not str(entry.target or "").startswith("edge-"):
                errors.append(
                    custom_error(
                        ("timeline", i, "params", "fresh"),
                        "fresh_target",
                        f'fresh: true forgets an edge\'s cache; "{entry.target}" is not an edge '
                        "(use edge-<pop>)",
                        fresh,
                    )
                )
            end = entry.end if entry.end is not None else entry.at
            if end > self.duration:
                errors.append(
                    custom_error(
                        ("timeline", i, "at" if entry.end is None else "for"),
                        "after_end",
                        f"fault ends at {format_duration(end)}, after the scenario's "
                        f"duration {format_duration(self.duration)}",
                        end,
                    )
                )
        for key in ("hostnames", "pops"):
            values = getattr(self.traffic, key)
            known = stack.hostnames if key == "hostnames" else list(stack.pops)
            for j, value in enumerate(values or ()):
                if value not in known:
                    errors.append(
                        custom_error(
                            ("traffic", key, j),
                            "unknown",
                            f'"{value}" is not in the stack (known: {", ".join(known)})',
                            value,
                        )
                    )
        if stack.origin is not None and not self.traffic.requests:
            errors.append(
                custom_error(
                    ("stack", "origin"),
                    "requests",
                    "the user's service needs traffic.requests (e.g. "
                    "- {method: GET, path: /, expect_status: 200}); the echo mix needs the "
                    "reference origin",
                    None,
                )
            )
        tunnels = [t.name for t in stack.tunnels]
        for i, check in enumerate(self.checks):
            for key, known in (
                ("tunnel", tunnels),
                ("pop", list(stack.pops)),
                ("hostname", stack.hostnames),
            ):
                value = getattr(check.params, key, None)
                if value is not None and value not in known:
                    errors.append(
                        custom_error(
                            ("checks", i, "params", key),
                            "unknown",
                            f'{key} "{value}" is not in the stack (known: {", ".join(known)})',
                            value,
                        )
                    )
        labels = [c.display_name for c in self.checks]
        for i, label in enumerate(labels):
            if labels.count(label) > 1 and labels.index(label) != i:
                errors.append(
                    custom_error(
                        ("checks", i),
                        "duplicate",
                        f'two checks are called "{label}"; give each a distinct "label"',
                        label,
                    )
                )
        raise_errors("Scenario", errors)
        return self

    # -- helpers ------------------------------------------------------------------------------

    @property
    def real_duration(self) -> float:
        """Seconds the timeline takes to play (``duration * time_scale``)."""
        return self.duration * self.time_scale

    def real_seconds(self, scenario_seconds: float) -> float:
        return scenario_seconds * self.time_scale

    @property
    def summary(self) -> str:
        """First sentence of the description (or the name)."""
        text = " ".join(self.description.split())
        if not text:
            return self.name
        end = text.find(". ")
        return text if end < 0 else text[: end + 1]

    def to_data(self) -> dict[str, Any]:
        """Plain data that validates back into the same scenario (``for`` spelled as in YAML)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return data

    def to_yaml(self) -> str:
        """YAML text that loads back into the same scenario."""
        return yaml.safe_dump(self.to_data(), sort_keys=False, allow_unicode=True)
