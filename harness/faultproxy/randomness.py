"""Seeded randomness for the fault proxy: one generator per proxy/toxic, derived from one seed.

Toxiproxy draws from Go's global generator, so its ``-seed`` flag cannot reproduce a run. Here
every toxic owns a :class:`RandomSource` seeded from ``(server seed, proxy name, toxic name)``:
the same seed and the same traffic give the same toxicity draws, jitter and slice sizes.
"""

from __future__ import annotations

import random
from collections import deque

RECORD_LIMIT = 4096


def new_server_seed() -> int:
    """A fresh seed for a server started without ``--seed`` (reported so a run can be replayed)."""
    return random.SystemRandom().randrange(2**63)


class RandomSource:
    """One seeded generator that remembers its last draws (bounded), for reproducibility checks."""

    def __init__(self, seed: int, *scope: str) -> None:
        # str seeds go through SHA-512 in random.Random: stable across runs and PYTHONHASHSEED.
        self._rng = random.Random(f"outlast-faultproxy/{seed}/" + "/".join(scope))
        self.record: deque[tuple[str, float]] = deque(maxlen=RECORD_LIMIT)

    def chance(self, probability: float) -> bool:
        """True with ``probability`` (one uniform draw in [0, 1), as Toxiproxy's toxicity check)."""
        draw = self._rng.random()
        self.record.append(("chance", draw))
        return draw < probability

    def offset(self, spread: int) -> int:
        """A uniform integer in ``[-spread, spread)`` (0 when ``spread`` <= 0)."""
        if spread <= 0:
            return 0
        value = self._rng.randrange(2 * spread) - spread
        self.record.append(("offset", value))
        return value

    def draws(self) -> list[tuple[str, float]]:
        """The recorded draws, oldest first."""
        return list(self.record)
