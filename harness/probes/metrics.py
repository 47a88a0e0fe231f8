"""Metrics scrapes of connectors, edges and the control plane, as journal samples.

Samples carry only what checks read (see ``harness/checks/samples.py``):
* connector: ``{tunnel, ha_connections, locations: {connection_id: pop}, registrations,
  dial_failures}``; for
  cloudflared (a target with ``ready_url``) ``ha_connections`` is ``/ready``'s
  ``readyConnections``, since its gauge of that name also counts connections waiting to
  redial, and ``locations`` is the last PoP of each connection index (exact whenever every
  index is registered)
* edge: ``{pop, connections: {tunnel_id: n}, tunnel_digests: {verified, absent, mismatch}}``
  (the tunnel body digest's cumulative verdicts, reference/wire/body_digest.py)
* controlplane: ``{requests: {"METHOD route": cumulative count}}``
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from harness.journal import Journal
from harness.journal.records import SampleKind


def parse_connector(text: str, tunnel: str) -> dict[str, Any]:
    """HA connection count, the PoP of each registered connection, and the cumulative count of
    successful registrations (``registrations``: the reference connector's
    ``outlast_tunnel_register_success``, cloudflared's
    ``cloudflared_tunnel_tunnel_register_success``) and
    failed dials (``dial_failures``: ``register_fail{reason="dial_error"}``)."""
    ha = 0
    registrations = 0
    dial_failures = 0
    locations: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("register_success_total"):
                registrations += int(sample.value)
            elif sample.name.endswith("ha_connections"):
                ha = int(sample.value)
            elif sample.name.endswith("server_locations") and sample.value > 0:
                conn = sample.labels.get("connection_id", str(len(locations)))
                locations[conn] = sample.labels.get("edge_location", "")
            elif (
                sample.name.endswith("register_fail_total")
                and sample.labels.get("reason") == "dial_error"
            ):
                dial_failures += int(sample.value)
    return {
        "tunnel": tunnel,
        "ha_connections": ha,
        "locations": locations,
        "registrations": registrations,
        "dial_failures": dial_failures,
    }


def parse_edge(text: str, pop: str) -> dict[str, Any]:
    """Registered connections per tunnel id at one edge, and its tunnel digest verdicts."""
    connections: dict[str, int] = {}
    digests: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "outlast_edge_tunnel_connections":
            for sample in family.samples:
                connections[sample.labels["tunnel_id"]] = int(sample.value)
        elif family.name == "outlast_edge_tunnel_digests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    digests[sample.labels.get("result", "")] = int(sample.value)
        elif family.name == "outlast_edge_tunnel_digest_mismatches":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    digests["mismatch"] = int(sample.value)
    value: dict[str, Any] = {"pop": pop, "connections": connections}
    if digests:
        value["tunnel_digests"] = digests
    return value


def parse_controlplane(text: str) -> dict[str, Any]:
    """Cumulative API request counts by ``METHOD route`` (all statuses summed)."""
    requests: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "outlast_controlplane_http_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = f"{sample.labels.get('method', '')} {sample.labels.get('route', '')}"
                    requests[key] = requests.get(key, 0) + int(sample.value)
    return {"requests": requests}


async def ready_connections(client: httpx.AsyncClient, url: str) -> int:
    """``readyConnections`` of a connector's ``/ready`` (200 or 503, both carry it)."""
    response = await client.get(url)
    if response.status_code not in (200, 503):
        response.raise_for_status()
        raise ValueError(f"{url} answered {response.status_code}")
    value = response.json().get("readyConnections")
    if not isinstance(value, int):
        raise ValueError(f"{url}: no readyConnections in {response.text[:100]!r}")
    return value


@dataclass(frozen=True)
class ScrapeTarget:
    """One metrics endpoint: what it is (sample kind), its name and URL, and a tunnel/PoP."""

    kind: SampleKind
    source: str
    url: str
    subject: str = ""  # tunnel name for connectors, PoP for edges
    ready_url: str | None = None  # a connector whose registered count is read from /ready


class MetricsProbe:
    """Scrapes every target each ``interval`` seconds; a failed scrape is a sample with error."""

    def __init__(
        self, journal: Journal, targets: list[ScrapeTarget], interval: float, timeout: float = 2.0
    ) -> None:
        self.journal = journal
        self.targets = targets
        self.interval = interval
        self.timeout = timeout

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client:
            while not stop.is_set():
                await self.scrape_all(client)
                try:
                    await asyncio.wait_for(stop.wait(), self.interval)
                except TimeoutError:
                    pass

    async def scrape_all(self, client: httpx.AsyncClient) -> None:
        await asyncio.gather(*(self.scrape(client, t) for t in self.targets))

    async def scrape(self, client: httpx.AsyncClient, target: ScrapeTarget) -> None:
        try:
            response = await client.get(target.url)
            response.raise_for_status()
            value = PARSERS[target.kind](response.text, target.subject)
            if target.ready_url is not None:
                value["ha_connections"] = await ready_connections(client, target.ready_url)
        except (httpx.HTTPError, ValueError) as exc:
            self.journal.sample(target.kind, target.source, error=f"{type(exc).__name__}: {exc}")
            return
        self.journal.sample(target.kind, target.source, value)


PARSERS: Mapping[str, Any] = {
    "connector": parse_connector,
    "edge": parse_edge,
    "controlplane": lambda text, _subject: parse_controlplane(text),
}
