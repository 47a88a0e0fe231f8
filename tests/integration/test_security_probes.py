"""scripts/security-probes against a real local stack: every probe of issue 21 holds.

(Against main before this branch, the same probes report the plaintext broker, the client-id
takeover and the stalled second request as BROKEN; docs/security.md.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.security_probes import PROBES, Target, run_probes
from harness.stack.local import LocalStack

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


async def test_every_security_probe_holds_on_a_local_stack(tmp_path: Path) -> None:
    async with LocalStack(tmp_path / "stack") as stack:
        (tmp_path / "stack" / "stack.json").write_text(json.dumps(stack.endpoints()))
        findings = await run_probes(Target(tmp_path / "stack"))
    assert len(findings) == len(PROBES)
    assert [(f.name, f.answer) for f in findings if not f.held] == []
