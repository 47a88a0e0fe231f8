"""The slow-client limits as command-line options, shared by the edge and the control plane."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import click

from reference.http_limits import SlowClientLimits

F = TypeVar("F", bound=Callable[..., Any])
_DEFAULTS = SlowClientLimits()
_SECONDS = click.FloatRange(min=0, min_open=True, max=86400)


def slow_client_options(listener: str) -> Callable[[F], F]:
    """``--header-timeout``, ``--idle-timeout``, ``--body-timeout``, ``--max-connections``
    for the HTTP listener named ``listener`` (in the help text)."""

    def decorate(command: F) -> F:
        options = [
            click.option(
                "--header-timeout",
                type=_SECONDS,
                default=_DEFAULTS.header_timeout,
                show_default=True,
                help=f"Seconds a request's headers may take on the {listener} (each request "
                "of a keep-alive connection); then 408 and the connection is closed.",
            ),
            click.option(
                "--idle-timeout",
                type=_SECONDS,
                default=_DEFAULTS.idle_timeout,
                show_default=True,
                help=f"Seconds a keep-alive connection of the {listener} may wait for its "
                "next request before it is closed.",
            ),
            click.option(
                "--body-timeout",
                type=_SECONDS,
                default=_DEFAULTS.body_idle_timeout,
                show_default=True,
                help=f"Seconds a request body on the {listener} may send nothing before it is cut.",
            ),
            click.option(
                "--max-connections",
                type=click.IntRange(min=1),
                default=_DEFAULTS.max_connections,
                show_default=True,
                help=f"Open connections the {listener} accepts; beyond it a new one gets 503 "
                "with Retry-After.",
            ),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def limits_from_options(
    header_timeout: float, idle_timeout: float, body_timeout: float, max_connections: int
) -> SlowClientLimits:
    """The limits the options give; NaN, or a header timeout above the idle timeout (a
    keep-alive connection would be closed idle before a slow request could be refused), is a
    usage error naming the flag."""
    for name, value in (
        ("--header-timeout", header_timeout),
        ("--idle-timeout", idle_timeout),
        ("--body-timeout", body_timeout),
    ):
        if math.isnan(value):
            raise click.BadParameter("not a number of seconds", param_hint=name)
    if header_timeout > idle_timeout:
        raise click.BadParameter(
            f"{header_timeout:g} s is above --idle-timeout {idle_timeout:g} s",
            param_hint="--header-timeout",
        )
    return SlowClientLimits(
        header_timeout=header_timeout,
        idle_timeout=idle_timeout,
        body_idle_timeout=body_timeout,
        max_connections=max_connections,
    )
