"""The Compose stack's one-shot steps, run inside containers of the Outlast image.

* :func:`setup` (service ``setup``): the edges' TLS certificates in the ``pki`` volume, the
  broker's users, ACLs and TLS files (:func:`write_broker_auth`), and every fault-proxy link
  created with ``POST /populate`` (before any other service dials a proxy).
* :func:`bootstrap` (service ``bootstrap``): account, zone, user, ``tunnel login``,
  ``tunnel create`` and ``tunnel route dns`` through the real CLIs, writing ``cert.pem``,
  ``<tunnel>.json`` and ``bootstrap.json`` into the ``home`` volume for the connector.

Both are idempotent: a second ``docker compose up`` on the same volumes changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from harness.compose import plan
from harness.stack.process import outlast_argv
from reference.broker.auth import BrokerUsers, new_user, outlast_users
from reference.broker.mosquitto import write_auth_files
from reference.broker.tls import provision_broker_tls
from reference.config_signing import PUBLIC_KEY_FILE, load_or_create_signing_key
from reference.files import atomic_write
from reference.pki import create_ca, issue_certificate


class StepError(RuntimeError):
    """A one-shot step failed; the message says what to do."""


def write_pki(pki_dir: Path, pops: tuple[str, ...] = plan.POPS) -> bool:
    """Create the edge CA and one certificate per PoP unless present; True if created.

    Each edge certificate names the edge and the fault-proxy service, because connectors dial the
    edge through ``toxiproxy:<port>`` and check the name they dialled.
    """
    ca_path = pki_dir / "edge-ca.pem"
    wanted = [ca_path, *(pki_dir / f"edge-{pop}.{ext}" for pop in pops for ext in ("pem", "key"))]
    if all(path.exists() for path in wanted):
        return False
    ca = create_ca("outlast edge CA (compose)")
    for pop in pops:
        leaf = issue_certificate(
            ca,
            f"edge-{pop}",
            dns_names=(f"edge-{pop}", plan.FAULTPROXY_SERVICE, "localhost"),
            ip_addresses=("127.0.0.1",),
        )
        atomic_write(pki_dir / f"edge-{pop}.pem", leaf.cert_pem)
        atomic_write(pki_dir / f"edge-{pop}.key", leaf.key_pem, mode=0o600)
    atomic_write(ca_path, ca.cert_pem)  # last: its presence means the set is complete
    return True


def write_broker_auth(auth_dir: Path, pops: tuple[str, ...] = plan.POPS) -> bool:
    """The broker's files and each client's, unless present; True if created.

    ``auth_dir/broker`` (the broker's volume): mosquitto's password and ACL files, its TLS
    certificate and key, and the health-check user's ``mosquitto_sub`` options file.
    ``auth_dir/<client>`` (that client's volume only): its credentials and the broker CA.
    Secrets are mode 0600, owned by the image's user; the CA key is never written.
    """
    broker_dir = auth_dir / "broker"
    clients = plan.broker_clients()
    done_marker = broker_dir / plan.BROKER_CA_FILE
    wanted = [done_marker, *(auth_dir / c / plan.BROKER_CREDENTIALS_FILE for c in clients)]
    if all(path.exists() for path in wanted):
        return False
    users, credentials = outlast_users(pops)
    health, health_credential = new_user(plan.BROKER_HEALTH_USER, (), ("$SYS/broker/uptime",))
    broker_users = BrokerUsers([*users.users.values(), health])
    write_auth_files(broker_dir, broker_users)
    tls = provision_broker_tls(
        auth_dir / "tls-staging",
        dns_names=(plan.FAULTPROXY_SERVICE, "broker", "localhost"),
        ip_addresses=("127.0.0.1",),
    )
    ca_pem = tls.ca_file.read_bytes()
    atomic_write(broker_dir / "broker.pem", tls.cert_file.read_bytes())
    atomic_write(broker_dir / "broker.key", tls.key_file.read_bytes(), mode=0o600)
    for path in (tls.ca_file, tls.cert_file, tls.key_file):
        path.unlink()
    tls.ca_file.parent.rmdir()
    # mosquitto_sub reads $XDG_CONFIG_HOME/mosquitto_sub: the health check's password stays
    # in this file, out of the Compose file and the container's environment.
    options = (
        f"-u {health_credential.username}\n-P {health_credential.password}\n"
        f"--cafile {plan.BROKER_FILES_DIR}/{plan.BROKER_CA_FILE}\n"
    )
    atomic_write(broker_dir / "health" / "mosquitto_sub", options.encode(), mode=0o600)
    for client in clients:
        credentials[client].write(auth_dir / client / plan.BROKER_CREDENTIALS_FILE)
        atomic_write(auth_dir / client / plan.BROKER_CA_FILE, ca_pem)
    atomic_write(done_marker, ca_pem)  # last: its presence means the set is complete
    return True


def _wait_answering(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return
                last = f"status {response.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise StepError(f"{url} did not answer within {timeout:.0f} s (last: {last})")
            time.sleep(0.2)


def populate(faultproxy_url: str, timeout: float = 60.0) -> list[str]:
    """Create (or update) every link's proxy; return the proxy names."""
    _wait_answering(f"{faultproxy_url}/version", timeout)
    body = plan.populate_body()
    response = httpx.post(f"{faultproxy_url}/populate", json=body, timeout=10.0, trust_env=False)
    if response.status_code not in (200, 201):
        raise StepError(f"fault proxy refused /populate: {response.status_code} {response.text}")
    return [str(p["name"]) for p in body]


def write_signing_key(signing_key: Path, pki_dir: Path) -> None:
    """The control plane's configuration key (created in its own volume if missing) and its
    public half in the ``pki`` volume, which the edges mount read-only (``--config-key``)."""
    load_or_create_signing_key(signing_key, pki_dir / PUBLIC_KEY_FILE)


def setup(
    faultproxy_url: str,
    pki_dir: Path,
    timeout: float = 60.0,
    signing_key: Path | None = None,
    broker_auth_dir: Path | None = None,
) -> dict[str, Any]:
    """The ``setup`` service: certificates, the configuration key and the broker's users and
    TLS files, then proxies."""
    created = write_pki(pki_dir)
    if signing_key is not None:
        write_signing_key(signing_key, pki_dir)
    broker_created = write_broker_auth(broker_auth_dir) if broker_auth_dir is not None else False
    proxies = populate(faultproxy_url, timeout)
    return {"pki_created": created, "broker_auth_created": broker_created, "proxies": proxies}


@dataclass(frozen=True)
class BootstrapSpec:
    """What the bootstrap creates."""

    api: str
    admin_token_file: Path
    home: Path
    account: str
    zone: str
    email: str
    tunnel: str
    hostname: str


def _cli(home: Path, *args: str) -> str:
    env = dict(os.environ)
    env["OUTLAST_HOME"] = str(home)
    done = subprocess.run(
        outlast_argv(*args),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise StepError(
            f"`outlast {' '.join(args[:3])} ...` failed ({done.returncode}): {done.stderr.strip()}"
        )
    return done.stdout


def bootstrap(spec: BootstrapSpec, timeout: float = 60.0) -> dict[str, Any]:
    """Create account, zone, user, cert.pem, the tunnel and its route; write ``bootstrap.json``.

    Returns the bootstrap record (which holds the API token: it is written 0600 and never printed).
    """
    record_path = spec.home / "bootstrap.json"
    if record_path.exists():
        record: dict[str, Any] = json.loads(record_path.read_text())
        if spec.tunnel in record.get("tunnels", {}):
            return record
    spec.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    _wait_answering(f"{spec.api}/health", timeout)
    deadline = time.monotonic() + timeout
    while not spec.admin_token_file.exists():
        if time.monotonic() > deadline:
            raise StepError(f"{spec.admin_token_file} did not appear within {timeout:.0f} s")
        time.sleep(0.2)
    boot = json.loads(
        _cli(
            spec.home,
            "controlplane",
            "--api",
            spec.api,
            "--admin-token-file",
            str(spec.admin_token_file),
            "bootstrap",
            "--account",
            spec.account,
            "--zone",
            spec.zone,
            "--email",
            spec.email,
        )
    )
    origincert = spec.home / "cert.pem"
    _cli(
        spec.home,
        "tunnel",
        "login",
        "--api",
        spec.api,
        "--token",
        str(boot["api_token"]),
        "--zone",
        spec.zone,
        "--origincert",
        str(origincert),
        "--force",
    )
    credentials = spec.home / f"{spec.tunnel}.json"
    if credentials.exists():
        tunnel_id = str(json.loads(credentials.read_text())["TunnelID"])
    else:
        created = json.loads(
            _cli(
                spec.home,
                "tunnel",
                "--origincert",
                str(origincert),
                "create",
                spec.tunnel,
                "--credentials-file",
                str(credentials),
                "-o",
                "json",
            )
        )
        tunnel_id = str(created["id"])
    _cli(
        spec.home,
        "tunnel",
        "--origincert",
        str(origincert),
        "route",
        "dns",
        "--overwrite-dns",
        tunnel_id,
        spec.hostname,
    )
    record = {
        "account_id": str(boot["account_id"]),
        "zone_id": str(boot["zone_id"]),
        "user_id": str(boot.get("user_id", "")),
        "api_token": str(boot["api_token"]),
        "zone": spec.zone,
        "tunnels": {spec.tunnel: {"id": tunnel_id, "hostname": spec.hostname}},
    }
    atomic_write(record_path, json.dumps(record, indent=2).encode() + b"\n", mode=0o600)
    return record
