"""Building the offline images: no registry, no TLS from inside a container.

1. Base image ``outlast-base:bookworm``: ``mmdebstrap`` writes a Debian bookworm root file system
   (python3, python3-venv, mosquitto) as a tar file, ``docker import`` turns it into an image.
   Skipped when the image exists (``rebuild_base`` forces it).
2. Wheels, built on the host: every dependency of Outlast for CPython 3.11 on Linux x86-64/arm64
   (bookworm's Python), plus setuptools and wheel to build Outlast itself inside the image.
3. ``compose/Dockerfile`` built with ``BASE_IMAGE=outlast-base:bookworm`` and ``PIP_NO_INDEX=1``
   from a context assembled here (source, wheels, Dockerfile), tagged ``outlast:offline``.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.compose.engine import EngineError, docker_client

BASE_IMAGE = "outlast-base:bookworm"
OFFLINE_IMAGE = "outlast:offline"
BASE_PACKAGES = ("python3", "python3-venv", "mosquitto")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
IMAGE_PYTHON = (3, 11)  # bookworm's python3
_SOURCE_DIRS = ("reference", "harness")

Progress = Callable[[str], None]


@dataclass
class BuildReport:
    """What :func:`build_offline` did and how long each step took (seconds)."""

    base_image: str = BASE_IMAGE
    image: str = OFFLINE_IMAGE
    base_built: bool = False
    wheels_built: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "base_image": self.base_image,
            "image": self.image,
            "base_built": self.base_built,
            "wheels_built": self.wheels_built,
            "seconds": self.seconds,
        }


def _image_exists(client: Any, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def build_base(
    client: Any,
    work: Path,
    progress: Progress,
    mirror: str = DEBIAN_MIRROR,
    *,
    image: str = BASE_IMAGE,
    packages: tuple[str, ...] = BASE_PACKAGES,
) -> None:
    """``mmdebstrap`` bookworm with ``packages`` into a tar file, then ``docker import`` it as
    ``image`` (default :data:`BASE_IMAGE`)."""
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise EngineError("mmdebstrap is missing: `apt-get install mmdebstrap` (Debian package)")
    rootfs = work / "rootfs.tar"
    argv = [
        mmdebstrap,
        "--variant=minbase",
        f"--include={','.join(packages)}",
        '--aptopt=Acquire::Check-Valid-Until "false"',
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "bookworm",
        str(rootfs),
        mirror,
    ]
    progress(f"mmdebstrap bookworm ({', '.join(packages)})")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-20:])
        raise EngineError(f"mmdebstrap failed ({done.returncode}); it needs root:\n{tail}")
    progress(f"docker import -> {image}")
    repository, tag = image.split(":")
    client.api.import_image_from_file(
        str(rootfs),
        repository=repository,
        tag=tag,
        changes=["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    )
    rootfs.unlink(missing_ok=True)
    if not _image_exists(client, image):
        raise EngineError(f"docker import did not produce {image}")


def _dependencies(source: Path) -> list[str]:
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    return [str(d) for d in project.get("dependencies", [])]


def _wheels_key(source: Path) -> str:
    digest = hashlib.sha256((source / "pyproject.toml").read_bytes())
    digest.update(repr(IMAGE_PYTHON).encode())
    return digest.hexdigest()[:16]


def build_wheels(source: Path, wheels: Path, progress: Progress) -> bool:
    """Fill ``wheels`` with every dependency (cached by pyproject.toml); True if (re)built."""
    stamp = wheels / ".key"
    key = _wheels_key(source)
    if stamp.exists() and stamp.read_text().strip() == key and any(wheels.glob("*.whl")):
        progress(f"wheels: up to date in {wheels}")
        return False
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    requirements = [*_dependencies(source), "setuptools>=68", "wheel"]
    pip = [sys.executable, "-m", "pip"]
    if sys.version_info[:2] == IMAGE_PYTHON:
        argv = [*pip, "wheel", "--quiet", "--wheel-dir", str(wheels), *requirements]
    else:  # another host Python: fetch the image Python's binary wheels instead
        machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower())
        argv = [
            *pip,
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--python-version",
            "".join(map(str, IMAGE_PYTHON)),
            "--implementation",
            "cp",
            "--platform",
            f"manylinux_2_36_{machine or platform.machine()}",
            "--dest",
            str(wheels),
            *requirements,
        ]
    progress(f"wheels: {' '.join(argv[3:5])} {len(requirements)} requirements -> {wheels}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-20:])
        raise EngineError(f"building wheels on the host failed:\n{tail}")
    stamp.write_text(key + "\n")
    return True


def _build_context(source: Path, wheels: Path) -> io.BytesIO:
    """A tar of exactly what ``compose/Dockerfile`` copies."""

    def skip_caches(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name = Path(info.name).name
        if name == "__pycache__" or name.endswith(".pyc"):
            return None
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(source / "compose" / "Dockerfile", "compose/Dockerfile")
        tar.add(source / "pyproject.toml", "pyproject.toml")
        if (source / "README.md").exists():
            tar.add(source / "README.md", "README.md")
        for name in _SOURCE_DIRS:
            tar.add(source / name, name, filter=skip_caches)
        wheel_dir = tarfile.TarInfo("compose/wheels")
        wheel_dir.type = tarfile.DIRTYPE
        wheel_dir.mode = 0o755
        tar.addfile(wheel_dir)
        for wheel in sorted(wheels.glob("*.whl")):
            tar.add(wheel, f"compose/wheels/{wheel.name}")
    buffer.seek(0)
    return buffer


def build_image(client: Any, source: Path, wheels: Path, progress: Progress) -> None:
    """Build ``compose/Dockerfile`` offline as :data:`OFFLINE_IMAGE`."""
    context = _build_context(source, wheels)
    progress(f"docker build compose/Dockerfile -> {OFFLINE_IMAGE}")
    log: list[str] = []
    for chunk in client.api.build(
        fileobj=context,
        custom_context=True,
        dockerfile="compose/Dockerfile",
        tag=OFFLINE_IMAGE,
        buildargs={"BASE_IMAGE": BASE_IMAGE, "PIP_NO_INDEX": "1"},
        rm=True,
        forcerm=True,
        decode=True,
        network_mode="none",
    ):
        if "stream" in chunk:
            log.append(str(chunk["stream"]).rstrip())
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("error") or json.dumps(chunk.get("errorDetail"))
            tail = "\n".join(line for line in log[-25:] if line)
            raise EngineError(f"docker build failed: {detail}\n{tail}")
    if not _image_exists(client, OFFLINE_IMAGE):
        raise EngineError(f"docker build did not produce {OFFLINE_IMAGE}")
    # The wheel-building stage leaves an untagged image behind; drop only ours.
    client.images.prune(filters={"dangling": True, "label": "org.outlast.build-stage=wheels"})


def build_offline(
    source: Path,
    cache_dir: Path,
    *,
    rebuild_base: bool = False,
    progress: Progress = lambda _message: None,
) -> BuildReport:
    """Base image, host wheels, then the Outlast image (see module docstring)."""
    client = docker_client()
    report = BuildReport()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="outlast-base-") as work:
        if rebuild_base or not _image_exists(client, BASE_IMAGE):
            build_base(client, Path(work), progress)
            report.base_built = True
        else:
            progress(f"base image {BASE_IMAGE} present (--rebuild-base to rebuild)")
    report.seconds["base"] = round(time.monotonic() - started, 1)
    step = time.monotonic()
    report.wheels_built = build_wheels(source, cache_dir / "wheels", progress)
    report.seconds["wheels"] = round(time.monotonic() - step, 1)
    step = time.monotonic()
    build_image(client, source, cache_dir / "wheels", progress)
    report.seconds["image"] = round(time.monotonic() - step, 1)
    report.seconds["total"] = round(time.monotonic() - started, 1)
    return report
