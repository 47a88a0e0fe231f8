"""The control plane's own secrets in its data directory: the admin token and the CA.

* ``DIR/admin.token`` (0600): bearer token for the admin endpoints, written on first start.
* ``DIR/ca.pem`` / ``DIR/ca.key`` (0644 / 0600): the CA that issues origin certificates.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from reference.files import write_new_secret_file
from reference.pki import CertAndKey, create_ca

ADMIN_TOKEN_FILE = "admin.token"
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"


def load_or_create_admin_token(data_dir: Path) -> str:
    """Read ``admin.token``, creating it (0600) on first start."""
    path = Path(data_dir) / ADMIN_TOKEN_FILE
    if not path.exists():
        try:
            write_new_secret_file(path, (secrets.token_urlsafe(32) + "\n").encode(), mode=0o600)
        except FileExistsError:
            pass  # created concurrently; read it below
    token = path.read_text().strip()
    if not token:
        raise RuntimeError(f"{path} is empty; delete it and restart to create a new admin token")
    return token


def load_or_create_ca(data_dir: Path) -> CertAndKey:
    """The origin CA, created on first start and kept across restarts."""
    cert_path = Path(data_dir) / CA_CERT_FILE
    key_path = Path(data_dir) / CA_KEY_FILE
    if cert_path.exists() and key_path.exists():
        return CertAndKey(cert_pem=cert_path.read_bytes(), key_pem=key_path.read_bytes())
    ca = create_ca("Outlast control plane origin CA")
    key_path.unlink(missing_ok=True)
    cert_path.unlink(missing_ok=True)
    write_new_secret_file(key_path, ca.key_pem, mode=0o600)
    write_new_secret_file(cert_path, ca.cert_pem, mode=0o644)
    return ca
