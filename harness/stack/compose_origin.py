"""The user's service as the Compose project's ``origin`` service (an image or a build context).

``stack.origin.image: NAME`` runs that image; ``stack.origin.build: PATH`` builds the directory
(its ``Dockerfile``) for the run as ``outlast-origin:<project>`` — offline with
``BASE_IMAGE=outlast-base:bookworm`` and no network, so a Dockerfile that starts
``ARG BASE_IMAGE=python:3.12-slim`` / ``FROM ${BASE_IMAGE}`` builds on a machine without a
registry. Either way the service replaces the reference origin in ``compose.run.yaml``: it is on
the connector's internal network ``net-origin`` only (no published port), listens on ``port``,
and ``command`` (``{port}`` filled in) replaces the image's CMD, run by the image's
``/bin/sh -c``. The connector's ingress points at ``http://origin:<port>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from harness.compose.engine import EngineError
from harness.compose.images import BASE_IMAGE
from harness.stack.base import StackError
from harness.stack.user_origin import UserOrigin, fill

#: The network the connector shares with the origin (compose/compose.yaml).
ORIGIN_NETWORK = "net-origin"


class Reset:
    """Compose's ``!reset`` tag: the key is removed from the merged service."""


class Override:
    """Compose's ``!override`` tag: this list replaces the one in compose.yaml (not appended)."""

    def __init__(self, items: list[str]) -> None:
        self.items = items


class _OverrideDumper(yaml.SafeDumper):
    """YAML with ``!reset``/``!override`` for :class:`Reset`/:class:`Override` values."""


def _represent_reset(dumper: yaml.SafeDumper, _value: Reset) -> yaml.Node:
    return dumper.represent_scalar("!reset", "null")


def _represent_override(dumper: yaml.SafeDumper, value: Override) -> yaml.Node:
    return dumper.represent_sequence("!override", value.items)


_OverrideDumper.add_representer(Reset, _represent_reset)
_OverrideDumper.add_representer(Override, _represent_override)


def dump_override(override: dict[str, Any]) -> bytes:
    """``compose.run.yaml``'s text (YAML: JSON cannot say ``!reset``)."""
    return yaml.dump(override, Dumper=_OverrideDumper, sort_keys=False).encode()


def image_tag(project: str) -> str:
    """The tag a build context is built as, one per project."""
    return f"outlast-origin:{project}"


def origin_service(user: UserOrigin, image: str) -> dict[str, Any]:
    """The ``origin`` service's override: ``image``, no build, healthcheck or published port,
    the connector's network only, and the user's command if any."""
    service: dict[str, Any] = {
        "image": image,
        "build": Reset(),
        "healthcheck": {"disable": True},
        "ports": Reset(),
        "environment": Reset(),
        "networks": Override([ORIGIN_NETWORK]),
        "pull_policy": "never" if user.build is not None else "missing",
    }
    if user.command is not None:
        service["command"] = ["/bin/sh", "-c", fill(user.command, user.container_port)]
    else:
        service["command"] = Reset()  # the image's own CMD
    return service


def check_image_present(client: Any, image: str, offline: bool) -> None:
    """Offline, a user's image must already be in the engine: there is no registry to pull."""
    import docker.errors

    if not offline:
        return
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise StackError(
            f"stack.origin.image: image {image!r} is not in the Docker engine and this machine "
            "has no registry (offline); build or load it first (`docker load`, or give "
            "stack.origin.build: a directory with a Dockerfile)"
        ) from None


def build_context(user: UserOrigin, base_dir: Path) -> Path:
    """The build context directory (relative paths from ``base_dir``); a clear error if it
    has no Dockerfile."""
    assert user.build is not None
    context = Path(user.build)
    if not context.is_absolute():
        context = base_dir / context
    if not (context / "Dockerfile").is_file():
        raise StackError(
            f"stack.origin.build: {user.build!r} ({context}) is not a directory with a "
            "Dockerfile (a relative path is from the directory `outlast run` runs in)"
        )
    return context


def build_image(client: Any, context: Path, tag: str, *, offline: bool) -> None:
    """``docker build`` the context as ``tag``; offline with ``BASE_IMAGE`` = the offline base
    image and no network. The last lines of the build's output name a failure."""
    log: list[str] = []
    buildargs = {"BASE_IMAGE": BASE_IMAGE} if offline else {}
    try:
        for chunk in client.api.build(
            path=str(context),
            tag=tag,
            buildargs=buildargs,
            rm=True,
            forcerm=True,
            decode=True,
            network_mode="none" if offline else None,
        ):
            if "stream" in chunk:
                log.append(str(chunk["stream"]).rstrip())
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("error") or json.dumps(chunk.get("errorDetail"))
                raise EngineError(f"{detail}\n" + "\n".join(line for line in log[-15:] if line))
    except Exception as exc:
        raise StackError(f"stack.origin.build: docker build of {context} failed: {exc}") from None


def remove_image(client: Any, tag: str) -> None:
    """Drop a per-run image (nothing happens if it is already gone)."""
    import docker.errors

    try:
        client.images.remove(tag, force=True)
    except docker.errors.ImageNotFound:
        pass
