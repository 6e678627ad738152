"""`prefgen split`: hold out part of the human labels, by prompt, with a seed.

A prompt's side is a function of its normalised hash and the seed alone: u = hash(seed, prompt) in [0, 1),
held out when u < the held-out share. So every label of a prompt is on the same side, labels imported later
land on the side their prompt already has, and re-running the same split never moves a prompt. The price is
that the realised share is close to, not exactly, the requested one (it is reported).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from prefgen.errors import PrefgenError
from prefgen.pipelines.configs import SplitConfig, configured
from prefgen.storage import human as human_sql
from prefgen.storage.db import Store

TRAIN = "train"
HELDOUT = "heldout"


def unit_hash(seed: int, prompt_id: str) -> float:
    # `storage.human.unit_hash_sql` computes the same value in SQL for `split`; change both or neither.
    digest = hashlib.sha256(f"split\x00{seed}\x00{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def side_of(prompt_id: str, heldout: float, seed: int) -> str:
    return HELDOUT if unit_hash(seed, prompt_id) < heldout else TRAIN


@dataclass
class SplitReport:
    heldout: float
    seed: int
    prompts: dict[str, int]  # prompts per side, pinned and assigned together
    by_origin: dict[str, dict[str, int]]  # prompts per side: decided by a pinned label / assigned by this split
    pairs: dict[str, int]
    origin: dict[str, dict[str, int]]  # labelled pairs per side: pinned at import / assigned by this split

    @property
    def realised(self) -> float | None:
        """The held-out share of the prompts this split assigned: the share `--heldout` asks for (prompts whose
        side a label pinned at import are not counted: their side was declared)."""
        assigned = self.by_origin["assigned"]
        total = sum(assigned.values())
        return assigned[HELDOUT] / total if total else None

    def lines(self) -> list[str]:
        prompts, assigned, pinned = self.prompts, self.by_origin["assigned"], self.by_origin["pinned"]
        share = (f"{self.realised:.1%} realised, {self.heldout:.1%} requested" if self.realised is not None
                 else "no unpinned prompt to assign")
        out = [f"split {sum(prompts.values())} prompts with seed {self.seed}: {prompts[TRAIN]} train, "
               f"{prompts[HELDOUT]} held out"]
        if sum(pinned.values()):
            out.append(f"  pinned at import (--split), not moved: {pinned[TRAIN]} train, {pinned[HELDOUT]} held out")
        out.append(f"  assigned by this split: {assigned[TRAIN]} train, {assigned[HELDOUT]} held out ({share}; "
                   "--heldout applies to these prompts only)")
        return [
            *out,
            "labelled pairs: " + ", ".join(f"{k} {v}" for k, v in self.pairs.items()),
            *(f"{origin} ({why}): " + (", ".join(f"{k} {v}" for k, v in sorted(sides.items())) or "none")
              for origin, why, sides in (("pinned", "declared at import, never moved", self.origin["pinned"]),
                                         ("assigned", "by prompt hash", self.origin["assigned"]))),
        ]


def split_human(store: Store, config: SplitConfig | None = None, **options: Any) -> SplitReport:
    """Assign every human-labelled prompt to train or heldout and record the split's settings (`SplitConfig`:
    `heldout`, the share held out, and `seed`). A prompt with a label pinned at import (`import-human
    --split`) keeps the pinned side; the share applies to the rest."""
    config = configured(SplitConfig, config, options)
    heldout, seed = config.heldout, config.seed
    if not human_sql.has_labels(store):
        raise PrefgenError(f"{store.path}: no human labels to split (run `prefgen import-human` first)")
    by_origin = human_sql.save_split(store, heldout, seed)
    prompts = {side: sum(sides[side] for sides in by_origin.values()) for side in (TRAIN, HELDOUT)}
    return SplitReport(heldout, seed, prompts, by_origin, human_sql.split_counts(store), human_sql.pair_split_origin(store))
