"""``--broker-credentials`` and ``--broker-ca``: how a broker client (the control plane, an
edge) logs in to the broker and checks its TLS listener, shared by their command lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def broker_client_options(client: str, credentials_file: str) -> Callable[[F], F]:
    """The two options for ``client`` (help text: "the control plane", "the edge"), whose
    credentials `outlast stack up` writes as ``credentials_file``."""

    def decorate(command: F) -> F:
        options = [
            click.option(
                "--broker-credentials",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                help=f"File with this client's broker username and password (JSON, mode 0600; "
                f"`outlast stack up` writes {credentials_file}). Without it {client} connects "
                "anonymously, which a broker run with --users-file refuses.",
            ),
            click.option(
                "--broker-ca",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                help="CA certificate (PEM) of the broker's TLS listener: the broker link speaks "
                "TLS and refuses a broker whose certificate does not chain to it or does not "
                "name the address dialled. `outlast stack up` passes pki/broker-ca.pem. "
                "Without it: plaintext MQTT.",
            ),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate
