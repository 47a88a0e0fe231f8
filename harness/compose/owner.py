"""Who owns a Compose project, and removing the projects whose owner died.

A Compose stack's containers do not die with the process that started them (no
``PR_SET_PDEATHSIG`` across the engine). :class:`ComposeStack` labels every service of its
project with its owner (pid, the pid's start time, the boot id); :func:`reap_orphaned_projects`
removes, by those labels, every project whose owner is gone: a SIGKILLed ``outlast run
--backend compose`` or ``outlast stack up --backend compose`` supervisor.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from harness.stack.process import process_start_time

PROJECT_LABEL = "com.docker.compose.project"
OWNER_PID_LABEL = "org.outlast.owner-pid"
OWNER_START_LABEL = "org.outlast.owner-start"
OWNER_BOOT_LABEL = "org.outlast.owner-boot"


def boot_id() -> str:
    """This machine's boot id (a pid names another process after a reboot)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def owner_labels(pid: int | None = None) -> dict[str, str]:
    """The labels that name ``pid`` (default: this process) as a project's owner."""
    pid = os.getpid() if pid is None else pid
    return {
        OWNER_PID_LABEL: str(pid),
        OWNER_START_LABEL: str(process_start_time(pid)),
        OWNER_BOOT_LABEL: boot_id(),
    }


def owner_alive(labels: dict[str, str]) -> bool:
    """Whether the process the labels name still runs (same boot, same start time)."""
    if labels.get(OWNER_BOOT_LABEL) != boot_id():
        return False
    try:
        pid = int(labels[OWNER_PID_LABEL])
    except (KeyError, ValueError):
        return False
    return str(process_start_time(pid)) == labels.get(OWNER_START_LABEL)


def orphaned_projects(client: Any) -> list[str]:
    """Projects with an Outlast owner label whose owner is gone."""
    owners: dict[str, dict[str, str]] = {}
    for container in client.containers.list(all=True, filters={"label": OWNER_PID_LABEL}):
        project = container.labels.get(PROJECT_LABEL)
        if project:
            owners.setdefault(project, container.labels)
    return sorted(p for p, labels in owners.items() if not owner_alive(labels))


def remove_project(client: Any, project: str) -> None:
    """Force-remove the project's containers, then its networks and volumes."""
    label = {"label": f"{PROJECT_LABEL}={project}"}
    for container in client.containers.list(all=True, filters=label):
        with contextlib.suppress(Exception):  # gone meanwhile: fine
            container.remove(force=True, v=True)
    for network in client.networks.list(filters=label):
        with contextlib.suppress(Exception):
            network.remove()
    for volume in client.volumes.list(filters=label):
        with contextlib.suppress(Exception):
            volume.remove(force=True)


def reap_orphaned_projects(client: Any) -> list[str]:
    """Remove every project whose owner died; return their names."""
    projects = orphaned_projects(client)
    for project in projects:
        remove_project(client, project)
    return projects
