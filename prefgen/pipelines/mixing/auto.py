"""`prefgen mix --auto`: choose how AI rows enter the mix by validation on human train folds.

Candidates (a small grid): human-only; every kept AI row with hard labels (the plain mix); with calibrated
soft labels; soft at half weight; soft as a curriculum (AI rows first, then human). Each candidate is
trained k times, once per fold: on the human train pairs outside the fold (by prompt, so no prompt is on
both sides) plus its AI rows (minus any whose prompt is in the fold), and scored on the fold's human pairs.
The held-out split is never read: calibration and folds use the train split only.

Decision: per validation pair, the difference between a candidate's and human-only's correctness (1 when
r_chosen > r_rejected), pooled over the folds; a paired bootstrap of its mean gives a one-sided 95% lower
bound by default (`--confidence`; the lower end of the 90% interval at 0.95: the question is only whether
the candidate is better). A candidate
with AI rows is chosen only when that bound is above 0 (it beats human-only beyond the noise), the best such
by mean; otherwise human-only is chosen and the report says why, with the resolution of the search: the
half-width of the interval, below which a gain cannot be told from noise with this many validation pairs.
Measured on HH data (`benchmarks/rm_quality_real.py --base smollm2 --dump`, five seeds): on ~600 validation
pairs that half-width is about 0.03, wider than what AI labels add to a 135M base (+0.01 to +0.02; the pool
with its real human labels adds +0.018). A per-pair log-likelihood of the human label (scale fitted per
model) was tried as a less noisy score and separated nothing more. `--confidence 0.8` took part of the gains
with no harm from the poor judges in those runs; 0.95 stays the default. More human labels, not a looser
test, resolve smaller gains.

Trials are stored in `mix_trials`, the decision and its evidence in the mix's manifest (`auto`), and the
chosen mix is built as an ordinary mix.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prefgen.intervals import interval_name, mean_interval
from prefgen.errors import PrefgenError
from prefgen.pipelines.configs import AutoMixConfig
from prefgen.pipelines.humans.calibration import calibrate, calibration_for_jobs
from prefgen.pipelines.mixing.mix import AI, HUMAN, Candidate, MixConfig, MixReport, build_mix, plan_mix, row_weight
from prefgen.storage import mixes as db
from prefgen.storage.db import Store
from prefgen.storage.export import training_rows_for
from prefgen.train.config import TrainConfig

HUMAN_ONLY = "human-only"
# One-sided: the question is only whether a candidate is better than human-only.
DEFAULT_CONFIDENCE = AutoMixConfig.model_fields["confidence"].default
# The mix options the grid sets for each candidate: a value given for them would be overridden.
SEARCHED = ("human_ratio", "labels", "ai_weight")


@dataclass(frozen=True)
class Trial:
    """One candidate of the grid: how its mix is built, and how it is trained."""

    name: str
    mix: dict[str, Any]  # MixConfig fields
    curriculum: str | None = None


GRID = (
    Trial(HUMAN_ONLY, {"human_ratio": 1.0}),
    Trial("ai-hard", {"human_ratio": None, "labels": "hard"}),
    Trial("ai-soft", {"human_ratio": None, "labels": "soft"}),
    Trial("ai-soft-half-weight", {"human_ratio": None, "labels": "soft", "ai_weight": 0.5}),
    Trial("ai-soft-curriculum", {"human_ratio": None, "labels": "soft"}, "ai-then-human"),
)


@dataclass
class CandidateScore:
    name: str
    accuracy: float  # over every validation pair of every fold
    delta: float  # mean paired difference to human-only
    low: float  # bootstrap interval of the difference: its low end is the one-sided bound at the confidence
    high: float
    n_ai: int  # AI rows in the full mix
    per_fold: list[float] = field(default_factory=list)


@dataclass
class AutoMixReport:
    search_id: str
    chosen: str
    reason: str
    n_val: int
    folds: int
    candidates: list[CandidateScore]
    mix: MixReport
    margins: dict[str, list[np.ndarray]] = field(default_factory=dict)  # per candidate and fold: the scores' basis
    confidence: float = DEFAULT_CONFIDENCE

    def lines(self) -> list[str]:
        if not self.candidates:
            return [f"chosen: {self.chosen}: {self.reason}", *self.mix.lines()]
        out = [f"mix search {self.search_id}: {self.folds} folds of the human train split, {self.n_val} "
               "validation pairs (held-out split untouched)",
               f"{'candidate':<22}{'AI rows':>8}{'agreement':>11}{'vs human-only':>15}"
               f"{interval_name(self.confidence):>18}"]
        for c in self.candidates:
            interval = "" if c.name == HUMAN_ONLY else f"{c.low:+.3f} to {c.high:+.3f}"
            delta = "" if c.name == HUMAN_ONLY else f"{c.delta:+.3f}"
            out.append(f"{c.name:<22}{c.n_ai:>8}{c.accuracy:>11.3f}{delta:>15}{interval:>18}")
        out.append(f"chosen: {self.chosen}: {self.reason}")
        return out + self.mix.lines()


def fold_of(prompt_id: str, folds: int, seed: int) -> int:
    digest = hashlib.sha256(f"fold\x00{seed}\x00{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % folds


def _rows(store: Store, candidates: Sequence[Candidate], config: MixConfig) -> list[dict[str, Any]]:
    """TRL training rows of candidates, with the p_chosen / weight the mix config gives them."""
    records = [{"pair_id": c.pair_id, "source": c.source, "chosen": c.chosen,
                "p_chosen": 1.0 if config.labels == "hard" else c.p_chosen,
                "weight": row_weight(c, config)} for c in candidates]
    return training_rows_for(store, records)


def _validation_rows(store: Store, humans: Sequence[Candidate]) -> list[dict[str, Any]]:
    return training_rows_for(store, [{"pair_id": c.pair_id, "source": c.source, "chosen": c.chosen,
                                      "p_chosen": None, "weight": None} for c in humans])


def _train_and_score(rows: list[dict[str, Any]], val: list[dict[str, Any]], train: TrainConfig,
                     curriculum: str | None) -> np.ndarray:
    """The margins r_chosen - r_rejected the candidate's model gives the validation pairs."""
    from prefgen.train.trainer import train_reward_model

    config = train.model_copy(update={"curriculum": curriculum, "ensemble": 1})
    result = train_reward_model(rows, config, score_rows=val, save=False)
    return np.array([c - r for c, r in result.scores], dtype=float)


def stage(text: str) -> None:
    """One line on stderr per stage of the search (its trainings take minutes; each shows its own progress
    below), never on stdout, where --json output goes; -q keeps it quiet."""
    from rich.console import Console

    from prefgen.pipelines.reporting.output import OUTPUT

    if not OUTPUT.quiet:
        Console(stderr=True, width=OUTPUT.max_width).print(text, markup=False, highlight=False)


def auto_mix(store: Store, config: MixConfig, auto: AutoMixConfig | None = None, *,
             grid: Sequence[Trial] = GRID) -> AutoMixReport:
    """Run the grid over `auto.folds` folds, store the trials, build the chosen mix under `config.name`: a
    candidate with AI rows only when, with `auto.confidence` (one-sided), it beats human-only. Every candidate
    trains with `auto.train` (seeded with the mix's seed unless it sets one), recorded with the mix."""
    auto = auto or AutoMixConfig()
    searched = [name for name in SEARCHED if name in config.model_fields_set]
    if searched:
        flags = ", ".join("--" + name.replace("_", "-") for name in searched)
        raise PrefgenError(f"mix --auto chooses {flags} itself (every candidate sets them): leave {flags} out, "
                           "or build the mix you want without --auto")
    folds, confidence = auto.folds, auto.confidence
    train = auto.train if "seed" in auto.train.chosen else auto.train.model_copy(update={"seed": config.seed})
    calibrations = calibration_for_jobs(store, calibrate(store))
    plans = {trial.name: plan_mix(store, MixConfig(**{**config.model_dump(), **trial.mix}), calibrations)
             for trial in grid}
    humans = [c for c in plans[HUMAN_ONLY].rows if c.source == HUMAN]
    # A candidate without AI rows is human-only under another name: it is not trained.
    grid = [t for t in grid if t.name == HUMAN_ONLY or any(c.source == AI for c in plans[t.name].rows)]
    if len(grid) == 1:
        return _decided_without_search(store, config, calibrations, auto, train)
    if len(humans) < 2 * folds:
        raise PrefgenError(f"mix --auto needs human train labels to validate on: {len(humans)} pairs for "
                           f"{folds} folds (import human labels and `prefgen split` first)")
    fold = {c.pair_id: fold_of(c.prompt_id, folds, config.seed) for c in humans}
    fold_prompts = [{c.prompt_id for c in humans if fold[c.pair_id] == f} for f in range(folds)]
    search_id = f"search-{uuid.uuid4().hex[:12]}"
    margins: dict[str, list[np.ndarray]] = {trial.name: [] for trial in grid}
    trials_rows = []
    for f in range(folds):
        val_humans = [c for c in humans if fold[c.pair_id] == f]
        val = _validation_rows(store, val_humans)
        for k, trial in enumerate(grid):
            trial_config = MixConfig(**{**config.model_dump(), **trial.mix})
            train_candidates = [c for c in plans[trial.name].rows
                                if (c.source == HUMAN and fold.get(c.pair_id) != f)
                                or (c.source == AI and c.prompt_id not in fold_prompts[f])]
            rows = _rows(store, train_candidates, trial_config)
            stage(f"mix --auto: fold {f + 1}/{folds}, candidate {k + 1}/{len(grid)} ({trial.name}): training on "
                  f"{len(rows)} rows, validating on {len(val)} pairs")
            with store.released():  # readers get in while each candidate trains
                fold_margins = _train_and_score(rows, val, train, trial.curriculum)
            margins[trial.name].append(fold_margins)
            trials_rows.append({"search_id": search_id, "mix_name": config.name, "candidate": trial.name,
                                "fold": f, "n_train": len(rows),
                                "n_ai": sum(c.source == AI for c in train_candidates), "n_val": len(val),
                                "accuracy": float((fold_margins > 0).mean()) if len(fold_margins) else None,
                                "settings": {**trial.mix, "curriculum": trial.curriculum}})
    db.save_mix_trials(store, trials_rows)
    scored = score_candidates(margins, {t.name: sum(c.source == AI for c in plans[t.name].rows) for t in grid},
                              confidence=confidence, seed=config.seed)
    n_val = sum(len(m) for m in margins[HUMAN_ONLY])
    winner, reason = decide(scored, confidence)
    chosen = next(t for t in grid if t.name == winner.name)
    evidence = {
        "search_id": search_id, "chosen": winner.name, "reason": reason, "folds": folds, "confidence": confidence,
        "n_val": n_val, "train": recipe(train, chosen.curriculum),
        "candidates": [vars(c) for c in scored],
    }
    mix = build_mix(store, MixConfig(**{**config.model_dump(), **chosen.mix}), auto=evidence,
                    calibrations=calibrations)
    return AutoMixReport(search_id, winner.name, reason, n_val, folds, scored, mix, margins, confidence)


def score_candidates(margins: dict[str, list[np.ndarray]], n_ai: dict[str, int], *,
                     confidence: float = DEFAULT_CONFIDENCE, seed: int = 0) -> list[CandidateScore]:
    """Validation agreement of every candidate, paired with human-only's on the same pairs
    (`margins[name][fold]`: r_chosen - r_rejected on that fold's pairs, in the same order for every name)."""
    baseline = np.concatenate([m > 0 for m in margins[HUMAN_ONLY]]).astype(float)
    scored = []
    for name, folds in margins.items():
        correct = np.concatenate([m > 0 for m in folds]).astype(float)
        # Paired: one difference per pair. The two-sided level whose low end is the one-sided bound.
        low, high = mean_interval(correct - baseline, level=2 * confidence - 1, seed=seed)
        scored.append(CandidateScore(name, float(correct.mean()), float((correct - baseline).mean()), low, high,
                                     n_ai[name], [float((m > 0).mean()) for m in folds]))
    return scored


def recipe(train: TrainConfig, curriculum: str | None) -> dict[str, Any]:
    """Every training setting a candidate was validated with (all but the directory a model is written to): what
    the mix records and `prefgen train` re-applies."""
    settings = train.model_copy(update={"curriculum": curriculum, "ensemble": 1}).to_dict()
    return {k: v for k, v in settings.items() if k != "out_dir"}


def _decided_without_search(store: Store, config: MixConfig, calibrations: dict[str, Any],
                            auto: AutoMixConfig, train: TrainConfig) -> AutoMixReport:
    reason = "no AI rows pass the filters (nothing to validate): the mix is human-only"
    evidence = {"search_id": None, "chosen": HUMAN_ONLY, "reason": reason, "folds": auto.folds, "n_val": 0,
                "confidence": auto.confidence, "train": recipe(train, None), "candidates": []}
    mix = build_mix(store, MixConfig(**{**config.model_dump(), "human_ratio": 1.0}), auto=evidence,
                    calibrations=calibrations)
    return AutoMixReport("none", HUMAN_ONLY, reason, 0, auto.folds, [], mix, confidence=auto.confidence)


def decide(scored: Sequence[CandidateScore], confidence: float = DEFAULT_CONFIDENCE) -> tuple[CandidateScore, str]:
    """Human-only unless a candidate with AI rows beats it beyond the noise (its one-sided bound above 0)."""
    human = next(c for c in scored if c.name == HUMAN_ONLY)
    with_ai = [c for c in scored if c.name != HUMAN_ONLY and c.n_ai > 0]
    if not with_ai:
        return human, "there are no AI rows that pass the filters"
    better = [c for c in with_ai if c.low > 0.0]
    if better:
        best = max(better, key=lambda c: c.delta)
        return best, (f"beats human-only by {best.delta:+.3f} on the validation folds (paired bootstrap: at "
                      f"least {best.low:+.3f} with {confidence:.0%} confidence)")
    best = max(with_ai, key=lambda c: c.delta)
    resolution = (best.high - best.low) / 2
    return human, (f"no mix with AI rows beats human-only beyond the noise (best: {best.name}, {best.delta:+.3f}, "
                   f"{interval_name(confidence)} {best.low:+.3f} to {best.high:+.3f}): the AI rows are left "
                   f"out. These "
                   f"validation pairs resolve differences of about ±{resolution:.3f}; smaller gains need more "
                   "human labels to show")
