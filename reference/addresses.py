"""Parsing ``HOST:PORT`` arguments."""

from __future__ import annotations

import click


def parse_hostport(value: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """Split ``"127.0.0.1:8080"`` (or ``":8080"``/``"[::1]:8080"``) into host and port."""
    host, sep, port_text = value.rpartition(":")
    if not sep:
        raise ValueError(f"{value!r} is not HOST:PORT (for example 127.0.0.1:8080)")
    host = host.strip("[]") or default_host
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{value!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{value!r}: port {port} is outside 0-65535")
    return host, port


class HostPort(click.ParamType):
    """click parameter type for ``HOST:PORT``."""

    name = "HOST:PORT"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_hostport(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
