"""The real cloudflared as a stack's connector for named tunnels (docs/cloudflared.md).

:func:`cloudflared_argv` is the command line the local stack runs for one replica: every PoP's
tunnel link (``conn-<pop>``, through the fault proxy) as ``--edge``, HTTP/2 (QUIC is not
modelled), the stack's CA, metrics on 127.0.0.1, and the tunnel by UUID with a credentials file
in cloudflared's format (:func:`write_cloudflared_credentials`), so running it needs no API.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.stack.base import StackError
from reference.connector.credentials import OriginCert, TunnelCredentials
from reference.files import atomic_write

#: Where the project keeps the binary it is tested with (relative to the project root).
BUNDLED = Path(__file__).resolve().parents[2].parent / "shared" / "cloudflared" / "cloudflared"
ENV_PATH = "OUTLAST_CLOUDFLARED"
CONNECTOR_KINDS = ("reference", "cloudflared")


def locate_cloudflared(path: str | Path | None = None) -> Path:
    """The binary to run: ``path``, else ``$OUTLAST_CLOUDFLARED``, else
    ``../shared/cloudflared/`` next to the project, else ``cloudflared`` on PATH. A
    :class:`StackError` says where it looked."""
    candidates: list[Path] = []
    if path is not None:
        candidates.append(Path(path))
    else:
        if os.environ.get(ENV_PATH):
            candidates.append(Path(os.environ[ENV_PATH]))
        candidates.append(BUNDLED)
        on_path = shutil.which("cloudflared")
        if on_path:
            candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.absolute()
    looked = ", ".join(str(c) for c in candidates) or "PATH"
    raise StackError(
        f"no cloudflared binary found (looked at {looked}); pass --cloudflared PATH or set "
        f"{ENV_PATH}"
    )


def cloudflared_version(binary: Path) -> str:
    """``cloudflared --version`` output's version word (``unknown`` if it cannot say)."""
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    words = out.split()
    # "cloudflared version 2026.8.2-1-gd1df7985 (built ...)"
    return words[2] if len(words) > 2 and words[1] == "version" else (out.strip() or "unknown")


def write_cloudflared_credentials(source: Path, dest: Path) -> Path:
    """``dest`` (mode 0600): the tunnel's credentials from ``outlast tunnel create``'s file, for
    cloudflared. The fields are the same, but cloudflared reads ``Endpoint`` as the edge region
    (``""`` or ``fed``) and would look up ``_<endpoint>-v2-origintunneld._tcp.argotunnel.com``
    with the control plane's URL in it: here it is empty."""
    creds = TunnelCredentials.load(source)
    document = {
        "AccountTag": creds.account_tag,
        "TunnelSecret": base64.b64encode(creds.tunnel_secret).decode(),
        "TunnelID": creds.tunnel_id,
        "Endpoint": "",
    }
    atomic_write(dest, json.dumps(document).encode(), mode=0o600)
    return dest


ARGO_TOKEN_BLOCK = "ARGO TUNNEL TOKEN"


def write_cloudflared_origincert(source: Path, dest: Path) -> Path:
    """``dest`` (mode 0600): the user's login (``outlast tunnel login``'s cert.pem) as
    cloudflared reads it, one ``ARGO TUNNEL TOKEN`` block of base64 JSON ``{zoneID, accountID,
    apiToken}`` (cloudflared refuses the ``OUTLAST TUNNEL TOKEN`` block as unknown). With it,
    ``cloudflared --origincert DEST tunnel --api-url <api>/client/v4 create|list|info|route
    dns|token|delete`` manage the stack's tunnels."""
    token = OriginCert.load(source).token_json()
    body = base64.b64encode(
        json.dumps({k: token[k] for k in ("zoneID", "accountID", "apiToken")}).encode()
    ).decode()
    pem = f"-----BEGIN {ARGO_TOKEN_BLOCK}-----\n{body}\n-----END {ARGO_TOKEN_BLOCK}-----\n"
    atomic_write(dest, pem.encode(), mode=0o600)
    return dest


def edge_arguments(links: Sequence[str], ha_connections: int) -> list[str]:
    """``--edge`` for every PoP link, each listed ``ha_connections`` times, PoPs alternating.

    cloudflared gives every HA connection its own edge address and never more connections than
    addresses; it splits the list into two regions by position (even, odd). Repeating each
    link lets all connections sit at one PoP when the other is lost, and alternating makes the
    regions follow the PoPs (with two PoPs: region 1 = the first, region 2 = the second).
    """
    args: list[str] = []
    for _ in range(ha_connections):
        for link in links:
            args += ["--edge", link]
    return args


@dataclass(frozen=True)
class CloudflaredRun:
    """What one cloudflared replica needs from the stack."""

    binary: Path
    tunnel_id: str
    credentials_file: Path
    origin_url: str
    edge_links: tuple[str, ...]
    edge_ca: Path
    metrics: str
    ha_connections: int = 4
    #: cloudflared's default is 30 s; the stack stops a component within 5 s, so a shorter
    #: grace lets a stopped replica unregister and exit by itself instead of being killed.
    grace_period: str = "2s"

    def argv(self) -> list[str]:
        """The command line (``tunnel`` options, then ``run`` options and the tunnel UUID)."""
        return [
            str(self.binary),
            "tunnel",
            "--no-autoupdate",
            *edge_arguments(self.edge_links, self.ha_connections),
            "--cacert",
            str(self.edge_ca),
            "--protocol",
            "http2",
            "--ha-connections",
            str(self.ha_connections),
            "--metrics",
            self.metrics,
            "--grace-period",
            self.grace_period,
            # Names the tunnel to the origin (header Cf-Warp-Tag-Tunnel-Id), as the reference
            # connector's X-Outlast-Tunnel-Id does: the misroute check reads it off the echo.
            "--tag",
            f"tunnel-id={self.tunnel_id}",
            # Its connectivity pre-checks dial api.cloudflare.com:443 and look the edge SRV
            # record up with a DNS-over-TLS fallback to 1.1.1.1:853: traffic off the machine.
            "--no-prechecks",
            "run",
            "--credentials-file",
            str(self.credentials_file),
            "--url",
            self.origin_url,
            self.tunnel_id,
        ]


def check_connector_kind(kind: str) -> str:
    """``kind`` if it is a known connector, else a ValueError naming the choices."""
    if kind not in CONNECTOR_KINDS:
        raise ValueError(f"unknown connector {kind!r} (choose from {', '.join(CONNECTOR_KINDS)})")
    return kind


__all__ = [
    "CONNECTOR_KINDS",
    "CloudflaredRun",
    "check_connector_kind",
    "cloudflared_version",
    "edge_arguments",
    "locate_cloudflared",
    "write_cloudflared_credentials",
    "write_cloudflared_origincert",
]
