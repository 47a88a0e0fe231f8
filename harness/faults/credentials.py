"""Faults on credentials: the user's API token is rolled; a tunnel is deleted (revoked)."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness.faults.base import FaultContext, FaultError, register
from harness.stack.process import outlast_argv


async def run_outlast(ctx: FaultContext, *args: str) -> str:
    """Run the ``outlast`` CLI as the stack's user; raise FaultError with its stderr on failure."""
    env = dict(os.environ)
    if ctx.home:
        env["OUTLAST_HOME"] = ctx.home
    proc = await asyncio.create_subprocess_exec(
        *outlast_argv(*args),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise FaultError(f"`outlast {args[0]} ...` failed: {err.decode(errors='replace').strip()}")
    return out.decode()


@register
@dataclass
class TokenRollover:
    """The user's API token is rolled (as when their permissions change). Not undone at heal:
    a rolled token stays rolled; the stack's cert.pem is stale until `tunnel login` again."""

    kind: ClassVar[str] = "token_rollover"
    target: str = "user"
    params: dict[str, Any] = field(default_factory=dict)

    async def inject(self, ctx: FaultContext) -> None:
        email = str(self.params.get("email", ctx.email))
        out = await run_outlast(
            ctx,
            "controlplane",
            "--api",
            ctx.api_url,
            "--admin-token-file",
            ctx.admin_token_file,
            "roll-token",
            "--email",
            email,
        )
        try:
            ctx.user_tokens[email] = str(json.loads(out)["api_token"])
        except (ValueError, KeyError, TypeError):
            raise FaultError(
                "`outlast controlplane roll-token` did not print the new token as JSON "
                '({..., "api_token": ...}); is the control plane an Outlast one?'
            ) from None

    async def heal(self, ctx: FaultContext) -> None:
        return None


@register
@dataclass
class CredentialRevocation:
    """The tunnel ``target`` is deleted (``tunnel delete -f``), which revokes its credentials."""

    kind: ClassVar[str] = "credential_revocation"
    target: str = "web"
    params: dict[str, Any] = field(default_factory=dict)

    async def inject(self, ctx: FaultContext) -> None:
        tunnel_id = ctx.tunnels.get(self.target, self.target)
        await run_outlast(ctx, "tunnel", "--origincert", ctx.origincert, "delete", "-f", tunnel_id)

    async def heal(self, ctx: FaultContext) -> None:
        return None
