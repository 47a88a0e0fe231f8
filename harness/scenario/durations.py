"""Durations ("90s", "5m", "1h20m", "250ms"; plain numbers are seconds) and wall-clock times.

Used by scenario files and check parameters. Values are floats of seconds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

DURATION_HINT = "use 90s, 5m, 1h20m"
_DURATION = re.compile(
    r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m(?!s))?"
    r"(?:(?P<s>\d+(?:\.\d+)?)s)?(?:(?P<ms>\d+(?:\.\d+)?)ms)?$"
)
_CLOCK = re.compile(r"^(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?::(?P<s>[0-5]\d(?:\.\d+)?))?$")
_UNITS = {"h": Decimal(3600), "m": Decimal(60), "s": Decimal(1), "ms": Decimal("0.001")}


def parse_duration(value: object) -> float:
    """Seconds in ``value``: a non-negative number, or a string like ``90s``, ``1h20m``, ``250ms``.

    Raises ``ValueError`` (with a hint) for anything else.
    """
    if isinstance(value, bool):
        raise ValueError(f'invalid duration "{value}" ({DURATION_HINT})')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            match = _DURATION.match(text)
            if not text or match is None:
                raise ValueError(f'invalid duration "{value}" ({DURATION_HINT})') from None
            seconds = float(
                sum(
                    (
                        Decimal(amount) * _UNITS[unit]
                        for unit, amount in match.groupdict().items()
                        if amount is not None
                    ),
                    Decimal(0),
                )
            )
    else:
        raise ValueError(f'invalid duration "{value}" ({DURATION_HINT})')
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f'invalid duration "{value}" ({DURATION_HINT})')
    if seconds < 0:
        raise ValueError(f'negative duration "{value}" ({DURATION_HINT})')
    return seconds


def _validate_duration(value: Any) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc)) from None


Duration = Annotated[float, BeforeValidator(_validate_duration)]
"""A pydantic field type: accepts ``90s``-style strings and numbers, holds seconds."""


def format_duration(seconds: float) -> str:
    """``90.0`` -> ``1m30s``, ``0.25`` -> ``250ms``, ``15660`` -> ``4h21m``."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    whole, ms = divmod(millis, 1000)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs:
        parts.append(f"{secs}s")
    if ms:
        parts.append(f"{ms}ms")
    return "".join(parts)


def is_clock_time(value: object) -> bool:
    """``"15:31"``, ``"15:31:20"`` or an ISO 8601 date-time string."""
    if not isinstance(value, str):
        return False
    return bool(_CLOCK.match(value.strip())) or _parse_iso(value) is not None


def _parse_iso(value: str) -> datetime | None:
    text = value.strip()
    if "T" not in text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_datetime(value: str | datetime) -> datetime:
    """An aware UTC ``datetime`` from ISO 8601 text (``Z`` allowed; naive means UTC)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = _parse_iso(value)
    if parsed is None:
        raise ValueError(f'invalid date-time "{value}" (use e.g. 2020-04-15T15:00:00Z)')
    return parsed


def clock_offset(start: datetime, value: str) -> float:
    """Seconds from ``start`` to the wall-clock time ``value``.

    ``value`` is ``HH:MM[:SS]`` (on ``start``'s day in UTC, or the next day if that time of
    day is earlier than ``start``) or a full ISO 8601 date-time. Raises ``ValueError`` if the
    time is before ``start``.
    """
    start = parse_datetime(start)
    text = value.strip()
    match = _CLOCK.match(text)
    if match:
        day = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        moment = day + timedelta(
            hours=int(match["h"]), minutes=int(match["m"]), seconds=float(match["s"] or 0)
        )
        if moment < start:
            moment += timedelta(days=1)
    else:
        moment = parse_datetime(text)
    offset = (moment - start).total_seconds()
    if offset < 0:
        raise ValueError(f'clock time "{value}" is before clock.start {start.isoformat()}')
    return offset
