"""TLS for the broker link: the broker's server context and its clients' verifying context.

The broker presents a certificate issued by the stack's broker CA (:mod:`reference.pki`); the
control plane and every edge are given that CA's certificate (``--broker-ca FILE``) and refuse
a broker whose certificate does not chain to it or does not name the address they dialled.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from reference.files import atomic_write
from reference.pki import create_ca, issue_certificate

TLS_HANDSHAKE_TIMEOUT = 10.0
CA_FILE_NAME = "broker-ca.pem"
CERT_FILE_NAME = "broker.pem"
KEY_FILE_NAME = "broker.key"


class BrokerTlsError(ValueError):
    """A certificate, key or CA file cannot be used; the message names the file."""


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The broker's TLS context (TLS 1.2 or newer, no client certificate asked)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert_file), str(key_file))
    except FileNotFoundError as exc:
        raise BrokerTlsError(f"broker TLS: {exc.filename} does not exist") from None
    except (ssl.SSLError, OSError) as exc:
        raise BrokerTlsError(
            f"broker TLS: cannot use certificate {cert_file} with key {key_file} ({exc})"
        ) from None
    return context


def client_context(ca_file: Path) -> ssl.SSLContext:
    """A client context that trusts only ``ca_file`` and checks the broker's host name."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except FileNotFoundError:
        raise BrokerTlsError(f"broker CA file {ca_file} does not exist") from None
    except (ssl.SSLError, OSError) as exc:
        raise BrokerTlsError(
            f"broker CA file {ca_file} is not a PEM CA certificate ({exc})"
        ) from None
    return context


@dataclass(frozen=True)
class BrokerTlsFiles:
    """Where :func:`provision_broker_tls` wrote the broker CA, certificate and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def provision_broker_tls(
    directory: Path, *, dns_names: tuple[str, ...] = (), ip_addresses: tuple[str, ...] = ()
) -> BrokerTlsFiles:
    """A fresh broker CA and a broker certificate naming ``dns_names``/``ip_addresses``.

    Only the CA certificate is kept (``broker-ca.pem``); its key is never written, so nothing
    but this certificate can ever be issued by it. The broker key is mode 0600.
    """
    directory = Path(directory)
    ca = create_ca("outlast broker CA")
    leaf = issue_certificate(ca, "broker", dns_names=dns_names, ip_addresses=ip_addresses)
    files = BrokerTlsFiles(
        directory / CA_FILE_NAME, directory / CERT_FILE_NAME, directory / KEY_FILE_NAME
    )
    atomic_write(files.ca_file, ca.cert_pem)
    atomic_write(files.cert_file, leaf.cert_pem)
    atomic_write(files.key_file, leaf.key_pem, mode=0o600)
    return files
