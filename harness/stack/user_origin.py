"""The user's own service behind the tunnel, instead of the reference echo origin.

Three ways to give it (exactly one, except that ``ingress`` may come with ``command``):

* ``command``: run by ``/bin/sh -c`` as the stack's component ``origin`` (its own process
  group, output in ``<state>/logs/origin.log``); ``{port}`` is a free port on 127.0.0.1 and
  ``{python}`` the interpreter running Outlast. Ready when ``health`` answers below 500.
* ``url``: a service that already runs; nothing is started (and there is no ``origin``
  component to fault).
* ``ingress``: cloudflared's rules (``hostname``, ``path``, ``service``; the last one a
  catch-all) written to the connector's config.yml; with ``command``, ``{port}`` in a service
  is the command's port.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reference.connector.ingress import Ingress, IngressError, parse_rule

#: Ingress rules as written in config.yml: ``[{hostname, path, service}, ...]``.
IngressRules = tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class UserOrigin:
    """Where the user's service comes from (see module docstring)."""

    command: str | None = None
    health: str = "/"
    url: str | None = None
    ingress: IngressRules = field(default_factory=tuple)

    def __post_init__(self) -> None:
        problem = origin_problem(self.command, self.url, self.ingress, self.health)
        if problem is not None:
            raise ValueError(problem[1])

    @property
    def kind(self) -> str:
        """``command``, ``url`` or ``ingress`` (ingress rules with or without a command)."""
        if self.ingress:
            return "ingress"
        return "command" if self.command else "url"

    @property
    def runs_process(self) -> bool:
        """Whether the stack starts (and a fault may target) an ``origin`` component."""
        return self.command is not None

    def shell_command(self, port: int) -> str:
        """The command with ``{port}`` and ``{python}`` filled in."""
        assert self.command is not None
        return fill(self.command, port)

    def ingress_rules(self, port: int) -> list[dict[str, Any]]:
        """The ingress rules with ``{port}`` filled in (config.yml's ``ingress:``)."""
        return [
            {**rule, "service": fill(str(rule.get("service", "")), port)} for rule in self.ingress
        ]

    def service_url(self, port: int) -> str | None:
        """The one URL every request goes to (``None`` with ingress rules)."""
        if self.ingress:
            return None
        return self.url.rstrip("/") if self.url else f"http://127.0.0.1:{port}"


def fill(text: str, port: int) -> str:
    """``{port}`` and ``{python}`` replaced (other braces are left alone, for the shell)."""
    return text.replace("{port}", str(port)).replace("{python}", shlex.quote(sys.executable))


Location = tuple[str | int, ...]


def origin_problem(
    command: str | None, url: str | None, ingress: Sequence[Any], health: str
) -> tuple[Location, str] | None:
    """``(field path, message)`` of the first thing wrong with an origin, else ``None``."""
    if command is not None and not command.strip():
        return ("command",), "command is empty"
    if command is not None and url is not None:
        return ("url",), 'give either "command" or "url", not both'
    if url is not None and ingress:
        return ("ingress",), 'give either "url" or "ingress" rules, not both'
    if command is None and url is None and not ingress:
        return (), 'give "command" (a service to start), "url" (a running one) or "ingress"'
    if not health.startswith("/"):
        return ("health",), f'health path "{health}" must start with "/"'
    if url is not None:
        if not url.startswith(("http://", "https://")):
            return ("url",), f'url "{url}" must be http:// or https://'
        try:
            Ingress.single(url)
        except IngressError as exc:
            return ("url",), str(exc).removeprefix("--url: ")
    if ingress:
        for i, rule in enumerate(ingress):
            try:
                parse_rule(_placeholder(rule), i + 1)
            except IngressError as exc:
                return ("ingress", i), str(exc)
            if command is None and "{port}" in str(_service(rule)):
                message = '"{port}" in a service needs "command" (the port it is given)'
                return ("ingress", i, "service"), message
        try:
            Ingress.parse([_placeholder(rule) for rule in ingress])
        except IngressError as exc:
            return ("ingress", len(ingress) - 1), str(exc)
    return None


def _service(rule: Any) -> Any:
    return rule.get("service") if isinstance(rule, Mapping) else None


def _placeholder(rule: Any) -> Any:
    """A rule as the connector would see it once ``{port}`` is filled in (for validation)."""
    if isinstance(rule, Mapping) and isinstance(rule.get("service"), str):
        return {**rule, "service": fill(rule["service"], 1)}
    return dict(rule) if isinstance(rule, Mapping) else rule
