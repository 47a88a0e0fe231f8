"""A proxy's toxics: parsing and validating API bodies, defaults, names, order per direction."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from harness.faultproxy.errors import (
    ApiError,
    bad_request_body,
    invalid_stream,
    invalid_toxic_type,
    toxic_already_exists,
    toxic_not_found,
)
from harness.faultproxy.randomness import RandomSource
from harness.faultproxy.toxics import TOXIC_TYPES, BadAttributes, Toxic

Stream = Literal["upstream", "downstream"]
STREAMS: tuple[Stream, ...] = ("upstream", "downstream")


@dataclass(eq=False)
class ToxicWrapper:
    """One toxic on a proxy: name, direction, toxicity and the toxic itself."""

    name: str
    stream: Stream
    toxicity: float
    toxic: Toxic

    @property
    def type(self) -> str:
        return self.toxic.type_name

    def to_json(self) -> dict[str, Any]:
        """Toxiproxy's toxic shape."""
        toxicity = self.toxicity  # Go prints a float32 1.0 as 1
        return {
            "attributes": dict(self.toxic.attributes),
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": int(toxicity) if toxicity.is_integer() else toxicity,
        }


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request_body(f"expected a JSON object, got {type(body).__name__}")
    return body


def _parse_toxicity(value: Any) -> float:
    """A number in [0, 1] (Toxiproxy takes any float32: above 1 always, below 0 never)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad_request_body(f"toxicity must be a number (0.0 to 1.0), got {value!r}")
    if not 0 <= value <= 1:
        raise bad_request_body(f"toxicity must be between 0.0 and 1.0, got {value!r}")
    return float(value)


def parse_attributes(toxic_type: type[Toxic], raw: Any, base: Mapping[str, int]) -> dict[str, int]:
    """Merge ``raw`` (the body's ``attributes``) over ``base``; unknown keys are ignored (as Go's
    JSON decoder does); known keys must be integers. Raises 400 on anything unusable."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise bad_request_body(f"attributes must be a JSON object, got {type(raw).__name__}")
    merged = dict(base)
    for key, value in raw.items():
        if key not in toxic_type.defaults:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise bad_request_body(
                    f"attribute {key!r} of a {toxic_type.type_name} toxic must be an integer, "
                    f"got {value!r}"
                )
        merged[key] = value
    try:
        toxic_type.check(merged)
    except BadAttributes as exc:
        raise bad_request_body(str(exc)) from None
    return merged


class ToxicChain:
    """Toxics of one proxy in the order they were added, per direction; names are unique."""

    def __init__(self, seed: int, proxy_name: str) -> None:
        self.seed = seed
        self.proxy_name = proxy_name
        self._toxics: list[ToxicWrapper] = []

    def __iter__(self) -> Iterator[ToxicWrapper]:
        return iter(list(self._toxics))

    def for_stream(self, stream: Stream) -> list[ToxicWrapper]:
        """Toxics of one direction, in chain order."""
        return [t for t in self._toxics if t.stream == stream]

    def to_json(self) -> list[dict[str, Any]]:
        """All toxics, upstream chain then downstream chain (Toxiproxy's order)."""
        return [t.to_json() for s in STREAMS for t in self.for_stream(s)]

    def get(self, name: str) -> ToxicWrapper:
        for toxic in self._toxics:
            if toxic.name == name:
                return toxic
        raise toxic_not_found()

    def add(self, body: Any) -> ToxicWrapper:
        """Create a toxic from an API body (Toxiproxy's defaults and check order)."""
        body = _require_object(body)
        stream_raw = body.get("stream", "downstream")
        if not isinstance(stream_raw, str) or stream_raw.lower() not in STREAMS:
            raise invalid_stream()
        stream: Stream = "upstream" if stream_raw.lower() == "upstream" else "downstream"
        type_name = body.get("type", "")
        name = body.get("name") or ""
        if not isinstance(name, str):
            raise bad_request_body(f"name must be a string, got {name!r}")
        if not name:
            name = f"{type_name}_{stream}"
        if not isinstance(type_name, str) or type_name not in TOXIC_TYPES:
            raise invalid_toxic_type()
        if any(t.name == name for t in self._toxics):
            raise toxic_already_exists()
        toxicity = _parse_toxicity(body.get("toxicity", 1.0))
        toxic_type = TOXIC_TYPES[type_name]
        attributes = parse_attributes(toxic_type, body.get("attributes"), toxic_type.defaults)
        random = RandomSource(self.seed, self.proxy_name, name)
        wrapper = ToxicWrapper(name, stream, toxicity, toxic_type(attributes, random))
        self._toxics.append(wrapper)
        return wrapper

    def update(self, name: str, body: Any) -> ToxicWrapper:
        """Change ``attributes`` and/or ``toxicity``; omitted fields keep their values."""
        wrapper = self.get(name)
        body = _require_object(body)
        attributes = parse_attributes(
            type(wrapper.toxic), body.get("attributes"), wrapper.toxic.attributes
        )
        toxicity = _parse_toxicity(body["toxicity"]) if "toxicity" in body else wrapper.toxicity
        wrapper.toxic.attributes = attributes
        wrapper.toxicity = toxicity
        return wrapper

    def remove(self, name: str) -> ToxicWrapper:
        wrapper = self.get(name)
        self._toxics.remove(wrapper)
        return wrapper

    def clear(self) -> list[ToxicWrapper]:
        removed, self._toxics = self._toxics, []
        return removed


__all__ = ["STREAMS", "ApiError", "Stream", "ToxicChain", "ToxicWrapper", "parse_attributes"]
