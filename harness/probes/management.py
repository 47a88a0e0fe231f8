"""Management calls as the stack's user: what `outlast tunnel list` does, with each credential.

Every ``interval`` seconds the probe lists the account's tunnels through the control plane API,
once with the token of the cert.pem the stack logged in with (``credential: old``) and, after a
token rollover gave the user a new token, once with a cert.pem from a fresh login
(``credential: fresh``). The fresh login itself runs the real CLI, ``outlast tunnel login``, once
(``action: login``). Every call is an ``api_call`` operation in the journal:

* ``ok`` — the API answered ``success``; ``value``: ``status``, ``tunnels`` (count).
* ``fail`` — refused (``status``, ``error_code``, ``message`` from the v4 envelope) or the control
  plane could not be reached (``status`` 0).
* ``info`` — no answer within the timeout (it may have happened).

Tokens are read from the cert.pem files and kept in memory; they never reach the journal.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from harness.journal import Journal
from harness.stack.process import outlast_argv
from reference.connector.credentials import CredentialsError, OriginCert

FUNCTION = "api_call"
LIST_ACTION = "tunnel_list"
LOGIN_ACTION = "login"


def envelope_error(response: httpx.Response) -> dict[str, Any]:
    """``status``, ``error_code`` and ``message`` of a refused v4 API call."""
    value: dict[str, Any] = {"status": response.status_code}
    try:
        body = response.json()
    except ValueError:
        return {**value, "message": f"HTTP {response.status_code} without a JSON body"}
    errors = body.get("errors") if isinstance(body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code = first.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        value["error_code"] = code
    value["message"] = str(first.get("message") or f"HTTP {response.status_code}")
    return value


class ManagementProbe:
    """Lists tunnels with the old and (after a rollover) a freshly logged-in cert.pem."""

    def __init__(
        self,
        journal: Journal,
        *,
        api_url: str,
        origincert: Path,
        fresh_origincert: Path,
        zone: str,
        new_token: Callable[[], str | None],
        interval: float = 1.0,
        timeout: float = 5.0,
        home: Path | None = None,
    ) -> None:
        self.journal = journal
        self.api_url = api_url.rstrip("/")
        self.origincert = origincert
        self.fresh_origincert = fresh_origincert
        self.zone = zone
        self.new_token = new_token
        self.interval = interval
        self.timeout = timeout
        self.home = home or origincert.parent
        self._old: OriginCert | None = None
        self._fresh: OriginCert | None = None
        self._logged_in_with: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Call the API every ``interval`` seconds until ``stop`` is set."""
        self._old = OriginCert.load(self.origincert)
        async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client:
            while not stop.is_set():
                await self.tick(client)
                try:
                    await asyncio.wait_for(stop.wait(), self.interval)
                except TimeoutError:
                    pass

    async def tick(self, client: httpx.AsyncClient) -> None:
        """One round: list with the old cert; log in again if a new token exists; list with it."""
        assert self._old is not None
        await self.list_tunnels(client, self._old, "old")
        token = self.new_token()
        if token is not None and token != self._logged_in_with:
            await self.login(token)
        if self._fresh is not None:
            await self.list_tunnels(client, self._fresh, "fresh")

    async def list_tunnels(
        self, client: httpx.AsyncClient, cert: OriginCert, credential: str
    ) -> None:
        op = self.journal.invoke(
            "management", FUNCTION, {"action": LIST_ACTION, "credential": credential}
        )
        url = f"{self.api_url}/client/v4/accounts/{cert.account_id}/cfd_tunnel"
        headers = {"Authorization": f"Bearer {cert.api_token}"}
        try:
            response = await client.get(url, headers=headers, params={"is_deleted": "false"})
        except httpx.TimeoutException:
            self.journal.complete(op, "info", error=f"no answer within {self.timeout:g} s")
            return
        except httpx.HTTPError as exc:
            self.journal.complete(
                op,
                "fail",
                {"status": 0, "message": f"cannot reach the control plane: {exc}"},
                error=type(exc).__name__,
            )
            return
        if response.is_success:
            result = response.json().get("result")
            count = len(result) if isinstance(result, list) else None
            self.journal.complete(op, "ok", {"status": response.status_code, "tunnels": count})
            return
        value = envelope_error(response)
        self.journal.complete(op, "fail", value, error=f"HTTP {response.status_code}")

    async def login(self, token: str) -> None:
        """``outlast tunnel login --force`` with ``token`` into ``fresh_origincert``."""
        self._logged_in_with = token
        op = self.journal.invoke(
            "management", FUNCTION, {"action": LOGIN_ACTION, "credential": "fresh"}
        )
        env = {**os.environ, "OUTLAST_HOME": str(self.home), "OUTLAST_API_TOKEN": token}
        proc = await asyncio.create_subprocess_exec(
            *outlast_argv(
                "tunnel",
                "login",
                "--force",
                "--api",
                self.api_url,
                "--zone",
                self.zone,
                "--origincert",
                str(self.fresh_origincert),
            ),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), self.timeout * 3)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            self.journal.complete(op, "info", error="`outlast tunnel login` did not finish")
            return
        if proc.returncode != 0:
            message = err.decode(errors="replace").strip().splitlines()
            self.journal.complete(
                op,
                "fail",
                {"exit_code": proc.returncode, "message": message[-1] if message else ""},
                error="`outlast tunnel login` failed",
            )
            return
        try:
            self._fresh = OriginCert.load(self.fresh_origincert)
        except CredentialsError as exc:
            self.journal.complete(op, "fail", {"message": str(exc)}, error="bad cert.pem")
            return
        self.journal.complete(op, "ok", {"exit_code": 0})
