"""``tunnel run`` settings: config.yml keys merged with command-line flags (flags win)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reference.connector.ingress import Ingress, IngressError
from reference.connector.supervisor import EdgeAddress, RetryPolicy
from reference.wire import HeartbeatConfig

MAX_GRACE_PERIOD = 180.0

#: config.yml keys understood by ``tunnel run`` (any of them may also be a flag).
KNOWN_KEYS = frozenset(
    {
        "tunnel",
        "credentials-file",
        "url",
        "ingress",
        "edge",
        "edge-ca",
        "ha-connections",
        "grace-period",
        "metrics",
        "heartbeat-interval",
        "heartbeat-timeout",
        "retry-base",
        "retry-cap",
        "dial-timeout",
        "rpc-timeout",
        "rebalance-interval",
        "state-dir",
        "loglevel",
        "originRequest",
        "warp-routing",
    }
)


class RunConfigError(ValueError):
    """The configuration is invalid; the message names the file/key and the fix."""


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m)?\s*$")


def parse_duration(value: Any, what: str) -> float:
    """Seconds from ``5``, ``2.5``, ``"500ms"``, ``"30s"`` or ``"1m"``."""
    if isinstance(value, bool):
        raise RunConfigError(f"{what}: {value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise RunConfigError(f"{what}: {value!r} is not a duration (e.g. 30s, 500ms, 1m)")
        number, unit = float(match.group(1)), match.group(2) or "s"
        seconds = number * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]
    if seconds < 0:
        raise RunConfigError(f"{what}: must not be negative")
    return seconds


@dataclass
class ConfigFile:
    """A parsed config.yml (empty when no file was given)."""

    path: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)
    unknown_keys: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None) -> ConfigFile:
        if path is None:
            return cls()
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise RunConfigError(f"config file {path} does not exist; check --config") from None
        except OSError as exc:
            raise RunConfigError(f"config file {path} cannot be read ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            raise RunConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise RunConfigError(f"config file {path} must be a mapping of keys to values")
        unknown = sorted(str(k) for k in raw if k not in KNOWN_KEYS)
        return cls(Path(path), raw, unknown)

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def where(self, key: str) -> str:
        return f"{self.path}: {key}" if self.path else key


@dataclass
class RunSettings:
    """Resolved settings of one ``tunnel run``."""

    tunnel: str | None
    credentials_file: Path | None
    ingress: Ingress
    edges: list[EdgeAddress]
    edge_ca: Path | None
    ha_connections: int
    grace_period: float
    metrics: tuple[str, int] | None
    heartbeat: HeartbeatConfig
    retry: RetryPolicy
    dial_timeout: float
    registration_timeout: float
    rebalance_interval: float
    state_dir: Path | None
    ingress_defined: bool


def _pick(flag: Any, config: ConfigFile, key: str, default: Any) -> tuple[Any, str]:
    if flag is not None and flag != ():
        return flag, f"--{key}"
    value = config.get(key)
    if value is not None:
        return value, config.where(key)
    return default, f"--{key}"


def resolve(flags: dict[str, Any], config: ConfigFile) -> RunSettings:
    """Merge ``flags`` (None = not given) over ``config``; validate everything."""

    def duration(key: str, default: float) -> float:
        value, where = _pick(flags.get(key), config, key, default)
        return parse_duration(value, where)

    def integer(key: str, default: int, low: int, high: int) -> int:
        value, where = _pick(flags.get(key), config, key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise RunConfigError(f"{where}: must be an integer in {low}..{high}, got {value!r}")
        return value

    url = flags.get("url") or config.get("url")
    raw_ingress = config.get("ingress")
    if url and raw_ingress:
        raise RunConfigError(
            f"--url and ingress rules ({config.where('ingress')}) both given; use one of them"
        )
    try:
        if url:
            ingress = Ingress.single(str(url))
        elif raw_ingress is not None:
            ingress = Ingress.parse(raw_ingress)
        else:
            ingress = Ingress.empty()
    except IngressError as exc:
        prefix = f"{config.path}: " if config.path and raw_ingress is not None else ""
        raise RunConfigError(f"{prefix}{exc}") from None

    raw_edges, where = _pick(flags.get("edge"), config, "edge", [])
    if isinstance(raw_edges, str):
        raw_edges = [raw_edges]
    if not isinstance(raw_edges, list | tuple):
        raise RunConfigError(f"{where}: must be a list of HOST:PORT")
    edges: list[EdgeAddress] = []
    for item in raw_edges:
        if isinstance(item, EdgeAddress):
            edges.append(item)
            continue
        try:
            edges.append(
                EdgeAddress(*item) if isinstance(item, tuple) else EdgeAddress.parse(str(item))
            )
        except ValueError as exc:
            raise RunConfigError(f"{where}: {exc}") from None

    grace = duration("grace-period", 30.0)
    if grace > MAX_GRACE_PERIOD:
        raise RunConfigError(f"--grace-period: at most {MAX_GRACE_PERIOD:.0f} s, got {grace}")
    try:
        heartbeat = HeartbeatConfig(
            interval=duration("heartbeat-interval", 1.0),
            timeout=duration("heartbeat-timeout", 3.0),
        )
        retry = RetryPolicy(base=duration("retry-base", 0.1), cap=duration("retry-cap", 2.0))
    except ValueError as exc:
        raise RunConfigError(str(exc)) from None

    metrics_value, metrics_where = _pick(flags.get("metrics"), config, "metrics", None)
    metrics: tuple[str, int] | None = None
    if metrics_value is not None:
        if isinstance(metrics_value, tuple):
            metrics = metrics_value
        else:
            from reference.addresses import parse_hostport

            try:
                metrics = parse_hostport(str(metrics_value))
            except ValueError as exc:
                raise RunConfigError(f"{metrics_where}: {exc}") from None

    def path(key: str) -> Path | None:
        value, _ = _pick(flags.get(key), config, key, None)
        if value is None:
            return None
        candidate = Path(str(value)).expanduser()
        if config.path is not None and not candidate.is_absolute() and flags.get(key) is None:
            candidate = config.path.parent / candidate
        return candidate

    tunnel = flags.get("tunnel") or config.get("tunnel")
    return RunSettings(
        tunnel=str(tunnel) if tunnel else None,
        credentials_file=path("credentials-file"),
        ingress=ingress,
        edges=edges,
        edge_ca=path("edge-ca"),
        ha_connections=integer("ha-connections", 4, 1, 16),
        grace_period=grace,
        metrics=metrics,
        heartbeat=heartbeat,
        retry=retry,
        dial_timeout=duration("dial-timeout", 2.0),
        registration_timeout=duration("rpc-timeout", 5.0),
        rebalance_interval=duration("rebalance-interval", 0.5),
        state_dir=path("state-dir"),
        ingress_defined=bool(url or raw_ingress),
    )
