"""Ingress rules: which origin service answers a visitor request (by hostname and path).

Rules are tried top to bottom. ``hostname`` is exact or a leading wildcard ``*.example.com``
(matches any name ending in ``.example.com``); any port in the request host is ignored. ``path``
is a regular expression searched in the request path. The last rule must match everything
(no hostname, no path), typically ``service: http_status:404``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

SERVICE_SCHEMES = ("http", "https", "ws", "wss")


class IngressError(ValueError):
    """An ingress rule is invalid; the message names the rule and what to change."""


@dataclass(frozen=True)
class Service:
    """Where a rule sends requests: an origin URL (``http(s)://host:port``) or a fixed status."""

    url: str | None = None
    status: int | None = None

    @property
    def http_base(self) -> str:
        """``scheme://host:port`` for HTTP requests (ws -> http, wss -> https)."""
        assert self.url is not None
        scheme, rest = self.url.split("://", 1)
        return {"ws": "http", "wss": "https"}.get(scheme, scheme) + "://" + rest

    @property
    def ws_base(self) -> str:
        """``ws(s)://host:port`` for WebSocket requests."""
        assert self.url is not None
        scheme, rest = self.url.split("://", 1)
        return {"http": "ws", "https": "wss"}.get(scheme, scheme) + "://" + rest

    def __str__(self) -> str:
        return self.url if self.url is not None else f"http_status:{self.status}"


@dataclass(frozen=True)
class IngressRule:
    """One rule: optional hostname and path filters, and the service."""

    service: Service
    hostname: str | None = None
    path: re.Pattern[str] | None = None

    @property
    def catch_all(self) -> bool:
        return self.hostname in (None, "*") and self.path is None

    def matches(self, host: str, path: str) -> bool:
        if self.hostname not in (None, "*"):
            assert self.hostname is not None
            name = _strip_port(host).lower()
            if self.hostname.startswith("*."):
                if not name.endswith(self.hostname[1:]) or name == self.hostname[2:]:
                    return False
            elif name != self.hostname:
                return False
        return self.path is None or self.path.search(path) is not None


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def parse_service(value: str, where: str) -> Service:
    """Parse ``http://127.0.0.1:8080`` or ``http_status:404`` (``where`` names the rule)."""
    text = value.strip()
    if text.startswith("http_status:"):
        code_text = text.removeprefix("http_status:")
        if not code_text.isdigit() or not 100 <= int(code_text) <= 999:
            raise IngressError(f"{where}: service {value!r} needs a status code 100-999")
        return Service(status=int(code_text))
    parts = urlsplit(text)
    if parts.scheme not in SERVICE_SCHEMES:
        raise IngressError(
            f"{where}: service {value!r} must be http://, https://, ws://, wss:// or "
            "http_status:NNN"
        )
    if not parts.hostname:
        raise IngressError(f"{where}: service {value!r} lacks a host (e.g. http://127.0.0.1:8080)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise IngressError(
            f"{where}: service {value!r} must not have a path; use a `path:` filter on the rule"
        )
    try:
        parts.port  # noqa: B018 (validates the port)
    except ValueError:
        raise IngressError(f"{where}: service {value!r} has an invalid port") from None
    return Service(url=f"{parts.scheme}://{parts.netloc}")


def _parse_hostname(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise IngressError(f"{where}: hostname must be a non-empty string")
    name = value.strip().lower().rstrip(".")
    if name == "*":
        return name
    if ":" in name:
        raise IngressError(f"{where}: hostname {value!r} must not contain a port")
    if "*" in name[1:] or (name.startswith("*") and not name.startswith("*.")):
        raise IngressError(
            f"{where}: hostname {value!r} may only use a single leading wildcard, "
            "like *.example.com"
        )
    return name


def rule_name(raw: Any, index: int) -> str:
    """``ingress rule #N`` plus its hostname, for error messages."""
    where = f"ingress rule #{index}"
    if isinstance(raw, dict) and isinstance(raw.get("hostname"), str):
        where += f" (hostname {raw['hostname']!r})"
    return where


def parse_rule(raw: Any, index: int) -> IngressRule:
    """Parse rule number ``index`` (1-based) of a config's ``ingress:`` list."""
    where = rule_name(raw, index)
    if not isinstance(raw, dict):
        raise IngressError(f"{where} must be a mapping with at least a 'service' key")
    unknown = set(raw) - {"hostname", "path", "service", "originRequest"}
    if unknown:
        raise IngressError(f"{where}: unknown keys {sorted(unknown)}")
    if not isinstance(raw.get("service"), str):
        raise IngressError(f"{where}: 'service' is required (e.g. http://127.0.0.1:8080)")
    service = parse_service(raw["service"], where)
    path = raw.get("path")
    pattern = None
    if path is not None:
        if not isinstance(path, str):
            raise IngressError(f"{where}: path must be a regular expression string")
        try:
            pattern = re.compile(path)
        except re.error as exc:
            raise IngressError(f"{where}: path {path!r} is not a valid regex ({exc})") from None
    return IngressRule(
        service=service, hostname=_parse_hostname(raw.get("hostname"), where), path=pattern
    )


@dataclass(frozen=True)
class Ingress:
    """An ordered, validated rule list."""

    rules: tuple[IngressRule, ...]

    @classmethod
    def parse(cls, raw: Any) -> Ingress:
        if not isinstance(raw, list) or not raw:
            raise IngressError("ingress must be a non-empty list of rules")
        rules = tuple(parse_rule(item, i) for i, item in enumerate(raw, start=1))
        for i, rule in enumerate(rules[:-1], start=1):
            if rule.catch_all:
                raise IngressError(
                    f"{rule_name(raw[i - 1], i)} matches every request, but only the last rule "
                    "may; add a hostname or path to it, or move it to the end"
                )
        if not rules[-1].catch_all:
            raise IngressError(
                f"{rule_name(raw[-1], len(rules))}: the last ingress rule must match all "
                "requests (no hostname or path), e.g. `- service: http_status:404`"
            )
        return cls(rules)

    @classmethod
    def single(cls, url: str) -> Ingress:
        """The ``--url`` shorthand: every request to ``url``."""
        return cls((IngressRule(service=parse_service(url, "--url")),))

    @classmethod
    def empty(cls) -> Ingress:
        """No rules configured: every request gets 503."""
        return cls((IngressRule(service=Service(status=503)),))

    def match(self, host: str, path: str) -> tuple[int, IngressRule]:
        """The first matching rule and its 1-based number."""
        path_only = path.split("?", 1)[0]
        for i, rule in enumerate(self.rules, start=1):
            if rule.matches(host, path_only):
                return i, rule
        return len(self.rules), self.rules[-1]
