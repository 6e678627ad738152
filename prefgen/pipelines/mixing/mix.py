"""`prefgen mix`: blend kept AI preferences with human train labels into a named, reproducible mix.

Rules, in the order they apply:
1. Human side: the consensus label of every train-side human pair; ties are left out (a tie has no chosen
   side). A human label of a pair always wins over an AI preference for it.
2. AI side: kept pair preferences (optionally of one judge, above a confidence floor). An AI pair whose prompt
   is in the held-out split never enters; a pair labelled by a human is dropped (rule 1); a pair kept by
   several label jobs enters once (the most confident job, then the lowest job id).
3. `max_per_prompt` caps pairs per prompt across both sides: human pairs first, then the more confident.
4. The ratio: the side that runs out first is used whole and the other is subsampled to match (at most
   `size` rows in all). What was left out, and any shortfall against `size`, is reported and stored.
5. Order: a seeded shuffle. Every choice above that is not decided by the data is decided by a hash of
   (seed, pair id), so the same inputs and options give identical rows and the same content hash.

The candidates are chosen in SQL (`storage.mixes.MixCandidates`) and the mix rows are written a batch at a
time, so building a mix of millions of pairs holds none of them in Python.

Confidence (AI: |2 P(a better) - 1|; human: 1 for a single label, the majority's share of votes) can become
TRL's `margin` column and/or a sample `weight`, both in [0, 1] with 1 meaning certain.

Soft labels: every row carries `p_chosen`, the probability that `chosen` is better. Human rows: the share of
annotators who preferred it (1.0 for a single label). AI rows: the judge's swap-averaged P(chosen) mapped
through the judge's calibration against the human *train* labels (`prefgen.pipelines.humans.calibration`).
`labels="hard"` sets every `p_chosen` to 1, so the soft loss reduces to TRL's. `ai_weight` weighs AI rows
against human ones in the loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from prefgen.errors import PrefgenError
from prefgen.hashing import ListHash
from prefgen.pipelines.configs import MixConfig
from prefgen.pipelines.humans.calibration import Calibration, calibrate, calibration_for_jobs
from prefgen.storage import human as human_db
from prefgen.storage import mixes as db
from prefgen.storage.db import Store

HUMAN = "human"
AI = "ai"

# Why rows of each side were left out, in words (the stored counts keep the short keys).
LEFT_OUT_WHY = {
    HUMAN: {"tie": "{n} human ties left out (a tie has no chosen side)"},
    AI: {
        "human_labelled": "{n} AI rows replaced by human labels for the same pair",
        "heldout_prompt": "{n} AI rows left out: their prompt is held out",
        "below_min_confidence": "{n} AI rows below --ai-min-confidence",
        "duplicate": "{n} AI rows of pairs kept by another label job too (the most confident kept)",
    },
}


@dataclass(frozen=True, slots=True)
class Candidate:
    pair_id: str
    prompt_id: str
    source: str  # human / ai
    origin: str  # label job id, or the human import(s)
    chosen: str  # a / b
    confidence: float
    p_chosen: float = 1.0  # probability that `chosen` is better (calibrated for AI rows)
    p_corrected: float | None = None  # AI rows: the same from the calibration with covariates, when fitted


@dataclass
class MixReport:
    name: str
    rows: int
    human: int
    ai: int
    requested_ratio: float | None
    realised_ratio: float
    content_hash: str
    counts: dict[str, Any] = field(default_factory=dict)

    def _requested(self) -> str:
        return "every row" if self.requested_ratio is None else str(self.requested_ratio)

    def _side_lines(self, side: str, what: str, used: int) -> list[str]:
        """What the side had, what entered the mix, and why every other row was left out (filters, then the
        ratio or size): the numbers add up, so the summary cannot say "left out none" beside a shortfall."""
        counts = self.counts[side]
        unused = self.counts["shortfall"].get(f"{side}_unused", 0)
        out = [f"{side}: {counts['available']} {what}, {used} in the mix"]
        out += [f"  {LEFT_OUT_WHY[side][reason].format(n=n)}" for reason, n in counts["left_out"].items()
                if n and reason in LEFT_OUT_WHY[side]]
        if unused:
            why = (f"--human-ratio {self.requested_ratio:g}" if self.requested_ratio is not None else "--size")
            out.append(f"  {unused} {side} rows that passed every filter left out to keep {why}")
        return out

    def lines(self) -> list[str]:
        ai = self.counts[AI]
        out = [
            f"mix {self.name!r}: {self.rows} rows, {self.human} human + {self.ai} AI "
            f"(ratio {self.realised_ratio:.4f}, requested {self._requested()})",
            *self._side_lines(HUMAN, "train pairs", self.human),
            *self._side_lines(AI, "kept pairs", self.ai),
        ]
        if ai["available"] and ai["left_out"].get("human_labelled", 0) == ai["available"]:
            out.append("note: every kept AI pair also has a human label, so the mix is human-only; those AI "
                       "preferences still count for calibration and `prefgen agreement`")
        if self.counts["capped_per_prompt"]:
            out.append(f"over the per-prompt cap: {self.counts['capped_per_prompt']}")
        if (self.rows and self.requested_ratio is not None
                and abs(self.realised_ratio - self.requested_ratio) > 0.5 / self.rows):
            empty = "AI pairs passing the filters" if self.ai == 0 else "human train labels"
            out.append(f"note: the requested ratio could not be met: there are no {empty}")
        short = self.counts["shortfall"].get("below_requested_size", 0)
        if short:
            out.append(f"shortfall: {short} rows below --size {self.rows + short}")
        out.append(f"content hash {self.content_hash}")
        return out


# -- the rows --------------------------------------------------------------------------------------------


def candidate(row: dict[str, Any], calibrations: dict[str, Calibration]) -> Candidate:
    """A selected row (see `storage.mixes.MixCandidates`) as a candidate; an AI row's `p_chosen` through its
    label job's calibration."""
    confidence = float(row["confidence"])
    p_corrected = None
    if row["source"] == HUMAN:
        p_chosen = confidence  # the share of annotators behind the label
    else:
        judged = {"p_a": row["p_a"], "confidence": row["stated_confidence"], "chosen": row["chosen"]}
        calibration = calibrations.get(row["origin"])
        p_chosen = ai_p_chosen(judged, calibration)
        if calibration is not None and calibration.covariate is not None:
            p_a = judged_p_a(judged)
            p_corrected = calibration.covariate.p_chosen(p_a, row["chosen"], row.get("len_a"), row.get("len_b"),
                                                         row.get("inconsistency"))
    return Candidate(row["pair_id"], row["prompt_id"], row["source"], row["origin"], row["chosen"], confidence,
                     p_chosen, p_corrected)


def target(c: Candidate, config: MixConfig) -> float:
    """The row's soft label under the mix's `labels`: 1 (hard), the calibrated judge P (soft), or the judge P
    corrected for covariates (corrected; the calibrated P when no such calibration could be fitted)."""
    if config.labels == "hard":
        return 1.0
    if config.labels == "corrected" and c.p_corrected is not None:
        return c.p_corrected
    return c.p_chosen


def ai_p_chosen(row: dict[str, Any], calibration: Calibration | None) -> float:
    """P(chosen better) of a kept AI row: calibrated when a calibration applies, else the judge's own."""
    p_a = judged_p_a(row)
    if calibration is None:
        return float(p_a if row["chosen"] == "a" else 1.0 - p_a)
    return calibration.p_chosen(float(p_a), row["chosen"])


def judged_p_a(row: dict[str, Any]) -> float:
    """A kept AI row's P(a better); when none is stored, the confidence |2P - 1| gives it back."""
    p_a = row.get("p_a")
    if p_a is None:
        confidence = float(row["confidence"] or 0.0)
        return 0.5 + 0.5 * confidence if row["chosen"] == "a" else 0.5 - 0.5 * confidence
    return float(p_a)


def _round(x: float) -> int:
    return math.floor(x + 0.5)


def ratio_counts(n_human: int, n_ai: int, ratio: float | None, size: int | None = None) -> tuple[int, int]:
    """(human, ai) rows at `ratio`: the side that runs out first is used whole and the other is sized to it
    (rounded), then both are scaled down to `size`. No ratio: every row of both sides (then `size`)."""
    if ratio is None:
        ratio = n_human / (n_human + n_ai) if n_human + n_ai else 1.0
        if size is None or n_human + n_ai <= size:
            return n_human, n_ai
    if ratio == 0.0:
        return 0, n_ai if size is None else min(n_ai, size)
    if ratio == 1.0:
        return (n_human if size is None else min(n_human, size)), 0
    if n_human == 0 or n_ai == 0:  # one side is empty: use the other whole; the shortfall is reported
        human, ai = n_human, n_ai
        return (human, ai) if size is None else (min(human, size), min(ai, size))
    if n_human / ratio <= n_ai / (1.0 - ratio):
        human, ai = n_human, min(n_ai, _round(n_human * (1.0 - ratio) / ratio))
    else:
        human, ai = min(n_human, _round(n_ai * ratio / (1.0 - ratio))), n_ai
    if size is not None and human + ai > size:
        human = _round(ratio * size)
        ai = size - human
    return human, ai


# -- the mix ---------------------------------------------------------------------------------------------


def row_weight(c: Candidate, config: MixConfig) -> float | None:
    """The loss weight of a row: its confidence and/or the AI weight, when the mix asks for either."""
    if not config.weight_by_confidence and config.ai_weight is None:
        return None
    weight = c.confidence if config.weight_by_confidence else 1.0
    if c.source == AI and config.ai_weight is not None:
        weight *= config.ai_weight
    return weight


def _row(mix_name: str, position: int, c: Candidate, config: MixConfig) -> dict[str, Any]:
    return {
        "mix_name": mix_name, "position": position, "pair_id": c.pair_id, "source": c.source,
        "origin": c.origin, "chosen": c.chosen, "confidence": c.confidence,
        "margin": c.confidence if config.margin_by_confidence else None,
        "weight": row_weight(c, config),
        "p_chosen": round(target(c, config), 6),
    }


def training_rows(store: Store, candidates: Sequence[Candidate], config: MixConfig) -> list[dict[str, Any]]:
    """TRL training rows of candidates, with the p_chosen / weight `config` gives them, without storing a mix."""
    from prefgen.storage.export import training_rows_for

    # Rounded as a stored mix holds them: training the mix built from these candidates then meets the very rows
    # (and reuses their cross-validated weight decay, `prefgen.train.regularise`).
    records = [{"pair_id": c.pair_id, "source": c.source, "chosen": c.chosen, "p_chosen": round(target(c, config), 6),
                "weight": row_weight(c, config)} for c in candidates]
    return training_rows_for(store, records)


def _check_split(store: Store) -> None:
    if db.unsplit_human_pairs(store):
        raise PrefgenError(
            "some human labels are on no side of the held-out split: run `prefgen split` first "
            "(--heldout 0 keeps every label for training)"
        )


SELECTED_BATCH = 10_000  # selected rows read, turned into mix rows and saved at a time


@dataclass
class Selection:
    """The rows a config selects, staged in the store, and the counts that explain them."""

    config: MixConfig
    staged: db.MixCandidates
    counts: db.CandidateCounts
    calibrations: dict[str, Calibration]
    human: int = 0  # selected rows of each side
    ai: int = 0

    def batches(self) -> Iterator[list[Candidate]]:
        """The selected rows in their final order, a batch at a time."""
        for rows in self.staged.selected(SELECTED_BATCH):
            yield [candidate(row, self.calibrations) for row in rows]


@contextmanager
def selection(store: Store, config: MixConfig, calibrations: dict[str, Calibration]) -> Iterator[Selection]:
    """Stage the candidates of both sides, apply the ratio, and select the mix's rows (in the store: nothing
    of the size of the mix is held here)."""
    with db.mix_candidates(store) as staged:
        counts = staged.stage(seed=config.seed, judge=config.judge, min_confidence=config.ai_min_confidence,
                              max_per_prompt=config.max_per_prompt)
        n_human, n_ai = ratio_counts(counts.human_after_cap, counts.ai_after_cap, config.human_ratio, config.size)
        human, ai = staged.select(n_human, n_ai)
        yield Selection(config, staged, counts, calibrations, human, ai)


@dataclass
class UsedAI:
    """The AI rows of a mix as they go by: how many, and their mean P(chosen), added up in row order."""

    n: int = 0
    p_chosen: float = 0

    def add(self, rows: Sequence[Candidate]) -> None:
        for c in rows:
            if c.source == AI:
                self.n += 1
                self.p_chosen += c.p_chosen

    def mean(self) -> float | None:
        return round(self.p_chosen / self.n, 4) if self.n else None


def _counts(chosen: Selection, summary: dict[str, Any], used_ai: UsedAI) -> dict[str, Any]:
    counts, config = chosen.counts, chosen.config
    return {
        HUMAN: {"available": counts.human_available,
                "left_out": {"tie": counts.human_ties} if counts.human_ties else {},
                "after_cap": counts.human_after_cap, "used": chosen.human, "per_source": summary["per_source"]},
        AI: {"available": counts.ai_available, "left_out": counts.ai_left_out, "after_cap": counts.ai_after_cap,
             "used": chosen.ai, "mean_p_chosen": used_ai.mean()},
        "capped_per_prompt": counts.capped,
        "shortfall": _shortfall(config, counts.human_after_cap, counts.ai_after_cap, chosen.human, chosen.ai),
    }


@dataclass
class MixPlan:
    """The rows a config selects from the store, in their final order, and the counts that explain them."""

    rows: list[Candidate]
    counts: dict[str, Any]
    calibrations: dict[str, Any]  # per label job used: how its AI rows' p_chosen was obtained


def _calibrations(store: Store, calibrations: dict[str, Calibration] | None) -> dict[str, Calibration]:
    _check_split(store)
    return calibration_for_jobs(store, calibrate(store)) if calibrations is None else calibrations


def plan_mix(store: Store, config: MixConfig, calibrations: dict[str, Calibration] | None = None) -> MixPlan:
    """Select a mix's rows into memory without saving anything (`calibrations` by job id: fitted here when
    None), for `mix --auto`, which trains on them. `build_mix` saves a mix without holding its rows."""
    calibrations = _calibrations(store, calibrations)
    with selection(store, config, calibrations) as chosen:
        rows = [c for batch in chosen.batches() for c in batch]
        summary = chosen.staged.summary()
    used_ai = UsedAI()
    used_ai.add(rows)
    return MixPlan(rows, _counts(chosen, summary, used_ai), _applied(calibrations, summary["label_jobs"]))


def _applied(calibrations: dict[str, Calibration], jobs: Sequence[str]) -> dict[str, Any]:
    return {job: _calibration_summary(calibrations.get(job)) for job in jobs}


def _calibration_summary(calibration: Calibration | None) -> dict[str, Any]:
    if calibration is None:
        return {"method": "none"}
    summary = {"method": calibration.method, "params": calibration.params, "n_pairs": calibration.n_pairs,
               "agreement": calibration.agreement}
    if calibration.covariate is not None:
        summary["covariate"] = asdict(calibration.covariate)
    return summary


def build_mix(store: Store, config: MixConfig, *, auto: dict[str, Any] | None = None,
              calibrations: dict[str, Calibration] | None = None) -> MixReport:
    """Build the mix from the store and save its rows and manifest under `config.name` (replacing it), a batch
    of rows at a time. `auto` is the evidence of `prefgen mix --auto` that chose this config, stored with the
    manifest."""
    calibrations = _calibrations(store, calibrations)
    with selection(store, config, calibrations) as chosen:
        if not chosen.human + chosen.ai:
            raise PrefgenError("the mix would be empty: no human train labels and no AI pairs pass the filters")
        digest, used_ai, position = ListHash("mix"), UsedAI(), 0
        with db.saving_mix(store, config.name) as save_rows:
            for batch in chosen.batches():
                stored = [_row(config.name, position + i, c, config) for i, c in enumerate(batch)]
                position += len(stored)
                digest.update([r["pair_id"], r["source"], r["chosen"], r["margin"], r["weight"], r["p_chosen"]]
                              for r in stored)
                used_ai.add(batch)
                save_rows(stored)
            summary = chosen.staged.summary()
            counts = {**_counts(chosen, summary, used_ai), "per_principle": summary["per_principle"],
                      "calibration": _applied(calibrations, summary["label_jobs"])}
            n_rows = chosen.human + chosen.ai
            report = MixReport(config.name, n_rows, chosen.human, chosen.ai, config.human_ratio,
                               chosen.human / n_rows, digest.hexdigest(), counts)
            db.save_manifest(store, {**_manifest(store, config, report, summary), "auto": auto})
    return report


def _shortfall(config: MixConfig, n_human: int, n_ai: int, used_human: int, used_ai: int) -> dict[str, int]:
    """Rows that passed every filter but were left out to keep the ratio (or the size), and how far the mix
    falls short of a requested size."""
    short = {"human_unused": n_human - used_human, "ai_unused": n_ai - used_ai}
    if config.size is not None:
        short["below_requested_size"] = max(0, config.size - used_human - used_ai)
    return short


def _manifest(store: Store, config: MixConfig, report: MixReport, summary: dict[str, Any]) -> dict[str, Any]:
    split = human_db.split_settings(store)
    return {
        "name": config.name,
        "content_hash": report.content_hash,
        "seed": config.seed,
        "human_ratio": config.human_ratio if config.human_ratio is not None else report.realised_ratio,
        "realised_ratio": report.realised_ratio,
        "n_rows": report.rows,
        "inputs": {
            "label_jobs": summary["label_jobs"],
            "human_sources": sorted({s for origin in summary["per_source"] for s in origin.split("+")}),
            "split": {"heldout": split[0], "seed": split[1]} if split else None,
        },
        "filters": {**config.model_dump(exclude={"name", "seed", "human_ratio"}),
                    "every_row": config.human_ratio is None},
        "counts": report.counts,
    }
