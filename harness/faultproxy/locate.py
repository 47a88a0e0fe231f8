"""Which fault proxy to use: ``TOXIPROXY_URL``, else ``toxiproxy-server`` on PATH, else ours."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.stack.process import outlast_argv

TOXIPROXY_URL_ENV = "TOXIPROXY_URL"
TOXIPROXY_BINARY = "toxiproxy-server"

FaultProxyKind = Literal["url", "binary", "embedded"]


@dataclass(frozen=True)
class FaultProxyChoice:
    """What to connect to (``url``) or what to start (``binary`` / ``embedded``)."""

    kind: FaultProxyKind
    url: str | None = None
    binary: str | None = None

    def server_argv(
        self, host: str, port: int, *, seed: int | None = None, config: Path | None = None
    ) -> list[str]:
        """Command line that serves the API on ``host:port`` (not for kind ``url``).

        ``binary`` runs Toxiproxy (whose ``-seed`` is accepted but has no effect since 2.9.0);
        ``embedded`` runs ``outlast serve faultproxy`` (seeded)."""
        if self.kind == "url":
            raise ValueError(f"the fault proxy at {self.url} is already running; connect to it")
        if self.kind == "binary":
            assert self.binary is not None
            argv = [self.binary, "-host", host, "-port", str(port)]
            if seed is not None:
                argv += ["-seed", str(seed)]
            if config is not None:
                argv += ["-config", str(config)]
            return argv
        argv = outlast_argv("serve", "faultproxy", "--listen", f"{host}:{port}")
        if seed is not None:
            argv += ["--seed", str(seed)]
        if config is not None:
            argv += ["--config", str(config)]
        return argv


def locate_fault_proxy(
    env: Mapping[str, str] | None = None,
    which: Callable[[str], str | None] = shutil.which,
) -> FaultProxyChoice:
    """``TOXIPROXY_URL`` if set (a running server), else a ``toxiproxy-server`` binary on PATH,
    else the embedded fault proxy (in-process ``FaultProxyServer`` or ``outlast serve``)."""
    env = os.environ if env is None else env
    url = env.get(TOXIPROXY_URL_ENV, "").strip()
    if url:
        if "://" not in url:
            url = f"http://{url}"
        return FaultProxyChoice("url", url=url.rstrip("/"))
    binary = which(TOXIPROXY_BINARY)
    if binary:
        return FaultProxyChoice("binary", binary=binary)
    return FaultProxyChoice("embedded")
