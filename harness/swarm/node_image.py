"""The worker-node image: a Docker engine in a container, built offline like the Compose images.

``mmdebstrap`` writes Debian bookworm with ``docker.io`` (and the iptables, iproute2 and procps
it needs) as a tar file; ``docker import`` makes it ``outlast-node:bookworm``. Each worker of
``outlast swarm up`` is a privileged container of this image running ``dockerd``, its
``/var/lib/docker`` on a volume of its own (overlay2 on a volume, not on the container's
overlay).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from harness.compose.images import Progress, build_base

NODE_IMAGE = "outlast-node:bookworm"
NODE_PACKAGES = ("docker.io", "iptables", "iproute2", "procps", "ca-certificates")


def node_image_present(client: Any) -> bool:
    """Whether :data:`NODE_IMAGE` exists on the engine of ``client``."""
    import docker.errors

    try:
        client.images.get(NODE_IMAGE)
    except docker.errors.ImageNotFound:
        return False
    return True


def build_node_image(client: Any, progress: Progress, rebuild: bool = False) -> float | None:
    """Build :data:`NODE_IMAGE` unless present; return the seconds it took (None if skipped)."""
    if node_image_present(client) and not rebuild:
        progress(f"node image {NODE_IMAGE} present")
        return None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="outlast-node-") as work:
        build_base(client, Path(work), progress, image=NODE_IMAGE, packages=NODE_PACKAGES)
    return round(time.monotonic() - started, 1)
