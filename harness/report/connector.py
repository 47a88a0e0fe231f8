"""What ran the named tunnels, and how often it reconnected (``summary.json``'s ``connector``).

``kind`` and ``version`` come from the run metadata (``reference``, or ``cloudflared`` with its
version); ``reconnects`` is how many registrations the connectors made while the run played:
the growth of their cumulative ``registrations`` over the samples (every connection of the
stack's start registered before the first sample), summed over replicas, ``None`` without
samples. With the control-plane request count of the ``control_plane_independent`` check it
answers "how many reconnects were made without the control plane".
"""

from __future__ import annotations

from typing import Any

from harness.checks.samples import counter_increase
from harness.journal.history import History


def reconnects(history: History) -> int | None:
    """Registrations made during the run by every connector replica (``None``: no sample)."""
    by_source: dict[str, list[int]] = {}
    for sample in history.samples_of("connector"):
        value = sample.value.get("registrations")
        if isinstance(value, int) and not isinstance(value, bool):
            by_source.setdefault(sample.source, []).append(value)
    if not by_source:
        return None
    return sum(counter_increase(values) for values in by_source.values())


def connector_summary(history: History) -> dict[str, Any] | None:
    """``{kind, version, reconnects}``, or ``None`` for a journal that does not record which
    connector ran (older runs keep their summaries as they were)."""
    run = history.run
    meta = run.meta.get("connector") if run else None
    if not isinstance(meta, dict):
        return None
    return {
        "kind": str(meta.get("kind") or "reference"),
        "version": meta.get("version"),
        "reconnects": reconnects(history),
    }
