"""Seeded, weighted principle sampling: the same constitution, seed and pair always get the same principles."""

from __future__ import annotations

import hashlib
import random

from prefgen.constitution.model import Constitution, Principle


def _rng(constitution_id: str, seed: int, pair_id: str) -> random.Random:
    # Seeded from content, not from run order, so concurrency and resumption cannot change the draw.
    digest = hashlib.sha256(f"{constitution_id}|{seed}|{pair_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def sample_principles(constitution: Constitution, pair_id: str, per_pair: int | None = None) -> list[Principle]:
    """Draw `per_pair` principles without replacement, with probability proportional to weight.

    Efraimidis-Spirakis: each principle gets the key u**(1/w) and the largest keys win, which is exactly
    weighted sampling without replacement. Zero-weight principles are never drawn.
    """
    k = per_pair or constitution.sampling.per_pair
    rng = _rng(constitution.id, constitution.sampling.seed, pair_id)
    keyed = [
        (rng.random() ** (1.0 / p.weight), i, p) for i, p in enumerate(constitution.principles) if p.weight > 0
    ]
    keyed.sort(key=lambda t: (-t[0], t[1]))
    chosen = keyed[:k]
    chosen.sort(key=lambda t: t[1])  # constitution order, for readable output
    return [p for _, _, p in chosen]
