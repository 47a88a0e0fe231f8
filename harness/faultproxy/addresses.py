"""``host:port`` strings as the fault proxy API uses them (``listen`` and ``upstream``)."""

from __future__ import annotations

import ipaddress

from reference.addresses import parse_hostport

DEFAULT_LISTEN = "127.0.0.1:0"
_LOOPBACK_ALIASES = {"localhost": "127.0.0.1", "": "127.0.0.1"}


def split_address(value: str, *, field: str, allow_port_zero: bool) -> tuple[str, int]:
    """Parse ``value``; raise ValueError naming ``field`` when it is not ``host:port``."""
    try:
        host, port = parse_hostport(value, default_host="")
    except ValueError as exc:
        raise ValueError(f"{field} {exc}") from None
    if port == 0 and not allow_port_zero:
        raise ValueError(f"{field} {value!r}: port 0 is only allowed for listen")
    return host, port


def join_address(host: str, port: int) -> str:
    """``host:port`` (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def same_listen(current: str, requested: str) -> bool:
    """Whether a proxy listening on ``current`` already satisfies ``requested``.

    Port 0 in ``requested`` matches any port, and ``localhost`` matches ``127.0.0.1``, so that
    populating the same configuration twice leaves running proxies alone.
    """
    try:
        cur_host, cur_port = split_address(current, field="listen", allow_port_zero=True)
        req_host, req_port = split_address(requested, field="listen", allow_port_zero=True)
    except ValueError:
        return current == requested
    cur_host = _LOOPBACK_ALIASES.get(cur_host, cur_host)
    req_host = _LOOPBACK_ALIASES.get(req_host, req_host)
    return cur_host == req_host and req_port in (0, cur_port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address: 127.0.0.0/8, ``::1``, ``localhost`` or empty
    (which this server binds to 127.0.0.1). Other host names are not resolved: not loopback."""
    host = host.strip("[]")
    if host in _LOOPBACK_ALIASES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_error(value: str) -> str:
    """The message Toxiproxy (Go's ``net.Listen``) gives for an unusable listen address."""
    host, sep, port = value.rpartition(":")
    if not sep or (host.startswith("[") is not host.endswith("]")):
        return f"listen tcp: address {value}: missing port in address"
    return f"listen tcp: address {port}: invalid port"
