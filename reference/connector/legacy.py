"""``outlast tunnel run --legacy --hostname HOST``: what a legacy (classic) connector presents.

A legacy run has no tunnel credentials file: every registration carries the account's API token
from ``cert.pem`` and the hostname, and the edge asks the control plane to register it (and to
create the hostname's DNS record). The tunnel id is derived from the zone and the hostname
(``reference.legacy_tunnel``). See docs/legacy.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reference.connector.credentials import CredentialsError, OriginCert
from reference.legacy_tunnel import legacy_tunnel_id, normalize_hostname
from reference.wire.messages import LegacyRegistration, RefusalCause

#: Cause prefix of the edge's legacy refusals that carry the control plane's message
#: (``reference.edge.legacy_registration.LEGACY_REFUSED``; the wire protocol is the contract).
LEGACY_REFUSED = "legacy registration refused: "


@dataclass(frozen=True)
class LegacyIdentity:
    """The origin certificate's account token plus the hostname to route."""

    origincert: Path
    zone_id: str
    account_tag: str
    hostname: str
    api_token: str = field(repr=False)

    @property
    def tunnel_id(self) -> str:
        return legacy_tunnel_id(self.zone_id, self.hostname)

    def registration(self) -> LegacyRegistration:
        """The ``legacy`` part of every RegistrationRequest."""
        return LegacyRegistration(
            api_token=self.api_token, hostname=self.hostname, zone_id=self.zone_id
        )


def load_legacy_identity(origincert: Path, hostname: str) -> LegacyIdentity:
    """Read cert.pem for a legacy run (raises CredentialsError with the fix)."""
    host = normalize_hostname(hostname)
    if not host or "." not in host:
        raise CredentialsError(
            f"--hostname {hostname!r} is not a hostname; give a subdomain of the zone your "
            "cert.pem is for, e.g. --hostname www.example.com"
        )
    cert = OriginCert.load(origincert)
    return LegacyIdentity(
        origincert=origincert,
        zone_id=cert.zone_id,
        account_tag=cert.account_id,
        hostname=host,
        api_token=cert.api_token,
    )


def legacy_permanent_message(cause: str, credentials: str) -> str | None:
    """The user-facing message for a permanent legacy refusal, or None if ``cause`` is not one.

    The control plane's own message (embedded in the cause) already says what to do.
    """
    if cause.startswith(RefusalCause.INVALID_TOKEN):
        detail = cause[len(RefusalCause.INVALID_TOKEN) :].lstrip(": ")
        return (
            f"the control plane refused the API token in {credentials}: {detail or cause}. "
            "Legacy tunnels present that token at every registration; get a fresh cert.pem with "
            "`outlast tunnel login --force` (or run a named tunnel, which needs no API token)"
        )
    if cause.startswith(LEGACY_REFUSED) and cause != LEGACY_REFUSED:
        return f"the control plane refused this legacy registration: {cause[len(LEGACY_REFUSED) :]}"
    return None
