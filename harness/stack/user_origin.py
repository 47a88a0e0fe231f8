"""The user's own service behind the tunnel, instead of the reference echo origin.

Three ways to give it on the local backend (exactly one, except that ``ingress`` may come with
``command``), and two on the Compose backend (``image`` or ``build``):

* ``command``: run by ``/bin/sh -c`` as the stack's component ``origin`` (its own process
  group, output in ``<state>/logs/origin.log``); ``{port}`` is a free port on 127.0.0.1 and
  ``{python}`` the interpreter running Outlast. Ready when ``health`` answers below 500.
* ``url``: a service that already runs; nothing is started (and there is no ``origin``
  component to fault).
* ``ingress``: cloudflared's rules (``hostname``, ``path``, ``service``; the last one a
  catch-all) written to the connector's config.yml; with ``command``, ``{port}`` in a service
  is the command's port.
* ``image`` / ``build`` (Compose backend only): a container image by name, or a build context
  (a directory with a Dockerfile) built for the run; the service ``origin`` listens on ``port``
  (default 8080) inside the project's network only, and ``command`` (optional, ``{port}``
  filled in) replaces the image's CMD, run by the image's ``/bin/sh -c``.
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
#: Port a container origin listens on when ``port`` is not given.
DEFAULT_CONTAINER_PORT = 8080


@dataclass(frozen=True)
class UserOrigin:
    """Where the user's service comes from (see module docstring)."""

    command: str | None = None
    health: str = "/"
    url: str | None = None
    ingress: IngressRules = field(default_factory=tuple)
    #: Compose backend: an image to run, or a build context (directory) to build.
    image: str | None = None
    build: str | None = None
    #: Compose backend: the port the container listens on (default 8080).
    port: int | None = None

    def __post_init__(self) -> None:
        problem = origin_problem(
            self.command, self.url, self.ingress, self.health, self.image, self.build, self.port
        )
        if problem is not None:
            raise ValueError(problem[1])

    @property
    def kind(self) -> str:
        """``image``, ``build``, ``command``, ``url`` or ``ingress`` (ingress rules with or
        without a command)."""
        if self.image is not None:
            return "image"
        if self.build is not None:
            return "build"
        if self.ingress:
            return "ingress"
        return "command" if self.command else "url"

    @property
    def in_container(self) -> bool:
        """An image or a build context: only the Compose backend runs it."""
        return self.image is not None or self.build is not None

    @property
    def container_port(self) -> int:
        """The port a container origin listens on inside the project's network."""
        return self.port or DEFAULT_CONTAINER_PORT

    @property
    def runs_process(self) -> bool:
        """Whether the stack starts (and a fault may target) an ``origin`` component."""
        return self.command is not None or self.in_container

    def backend_problem(self, backend: str) -> str | None:
        """Why the ``backend`` (``local`` or ``compose``) cannot run this origin, else None."""
        if backend == "compose" and not self.in_container:
            return (
                f"stack.origin.{self.kind} runs on the host: the compose backend runs your "
                "service as a container, give stack.origin.image (an image) or "
                "stack.origin.build (a directory with a Dockerfile), with an optional command "
                "and port; or use the local backend (--backend local)"
            )
        if backend != "compose" and self.in_container:
            return (
                f"stack.origin.{self.kind} (a container origin) needs the compose backend "
                "(--backend compose); the local backend runs a command or uses a url"
            )
        return None

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
    command: str | None,
    url: str | None,
    ingress: Sequence[Any],
    health: str,
    image: str | None = None,
    build: str | None = None,
    port: int | None = None,
) -> tuple[Location, str] | None:
    """``(field path, message)`` of the first thing wrong with an origin, else ``None``."""
    if command is not None and not command.strip():
        return ("command",), "command is empty"
    container = _container_problem(url, ingress, image, build, port)
    if container is not None:
        return container
    if (image is not None or build is not None) and not health.startswith("/"):
        return ("health",), f'health path "{health}" must start with "/"'
    if image is not None or build is not None:
        return None
    if port is not None:
        return ("port",), '"port" is for a container origin (give "image" or "build")'
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


def _container_problem(
    url: str | None,
    ingress: Sequence[Any],
    image: str | None,
    build: str | None,
    port: int | None,
) -> tuple[Location, str] | None:
    """What is wrong with an ``image``/``build`` origin (``None`` also when it is neither)."""
    if image is None and build is None:
        return None
    if image is not None and build is not None:
        return ("build",), 'give either "image" or "build", not both'
    key = "image" if image is not None else "build"
    value = image if image is not None else build
    if not (value or "").strip():
        return (key,), f"{key} is empty"
    if url is not None:
        return ("url",), f'give either "{key}" or "url", not both'
    if ingress:
        return ("ingress",), f'"ingress" rules are not supported with "{key}" yet'
    if port is not None and not 1 <= port <= 65535:
        return ("port",), f"port {port} is not a TCP port (1-65535)"
    return None


def _service(rule: Any) -> Any:
    return rule.get("service") if isinstance(rule, Mapping) else None


def _placeholder(rule: Any) -> Any:
    """A rule as the connector would see it once ``{port}`` is filled in (for validation)."""
    if isinstance(rule, Mapping) and isinstance(rule.get("service"), str):
        return {**rule, "service": fill(rule["service"], 1)}
    return dict(rule) if isinstance(rule, Mapping) else rule
