"""`prefgen mix --auto`: choose how AI rows enter the mix, by what the human train labels can show.

Candidates (`GRID`): human-only; every kept AI row with its label **corrected** by the calibration with
covariates (`prefgen.pipelines.humans.calibration`: the judge's P, the length difference and order
consistency, fitted on the human train pairs the judge also labelled, the overlap), at full and at half
weight; with the calibrated judge P (soft, Platt); with hard labels. Each candidate is trained k times, once
per fold of the human train pairs (by prompt, so no prompt is on both sides): on the human pairs outside
the fold plus its AI rows (minus any whose prompt is in the fold), and scored on the fold's human pairs, so
that every human train pair is scored once by a model that never saw it. The held-out split is never read.
With the head method the folds cost a head's training each on cached features (`prefgen.train.validate`).

Score: per human pair, the log-likelihood of the humans' side under sigmoid(s * margin), one scale s fitted
per candidate (the decision is about the direction of the models, not their scale). Log-likelihoods
separate candidates with fewer pairs than 0/1 agreement does: a pair the model gets barely right or barely
wrong counts little either way.

Decision (`decide`), built for the regime where AI labels matter, tens to a couple of hundred human labels,
where validation on so few pairs cannot show a gain of a few points beyond the noise, and the judge's
bias is what does harm:
1. First, is the judge biased towards longer responses? Over every pair it judged (no human label needed)
   the judge prefers the longer response in some share L; a judge whose errors are random, right with the
   overlap's agreement q where humans prefer the longer response in a share h, would say q h + (1 - q)(1 - h).
   An excess beyond the noise of q and h (one-sided, at `confidence`) is a length bias
   (`CovariateCalibration.length_biased`; on the HH benchmark it flags a judge that picks the longer
   response 30% of the time in 14 of 20 samples of 25 human pairs and in all of 50, and an honest judge in
   at most 1 of 20).
2. A biased judge's labels enter only corrected (soft and hard labels would carry the bias into the reward
   model), and only when they beat human-only beyond the noise.
3. A judge with no such bias: its calibrated soft labels are the default way in, taken unless human-only
   beats them beyond the noise; corrected or hard labels replace them only when they beat them beyond the
   noise (both compared per pair).
4. Without a calibration with covariates (fewer than `MIN_COVARIATE_PAIRS` human pairs judged) nothing is
   known about the judge's bias: a candidate with AI rows is taken only when it beats human-only beyond
   the noise.
"Beyond the noise" is a one-sided paired bootstrap bound of the per-pair log-likelihood difference. What the
human labels cannot show, the decision cannot guard against: a bias along something other than length, on
too few human pairs to show in validation. Judge the human pairs too (the overlap): with fewer than ~200
human labels it is what the decision stands on.

Trials are stored in `mix_trials`, the decision and its evidence in the mix's manifest (`auto`), with one
line on what the overlap showed (`saw`: "the judge prefers the longer response in 81% of 100 overlap
pairs, humans in 42%: corrected"), and the chosen mix is built as an ordinary mix.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prefgen.errors import PrefgenError
from prefgen.intervals import interval_name, mean_interval
from prefgen.pipelines.configs import AutoMixConfig
from prefgen.pipelines.humans.calibration import MIN_COVARIATE_PAIRS, calibrate, calibration_for_jobs
from prefgen.pipelines.mixing.mix import (AI, HUMAN, MixConfig, MixPlan, MixReport, build_mix, plan_mix,
                                          training_rows)
from prefgen.storage import mixes as db
from prefgen.storage.db import Store
from prefgen.train.config import TrainConfig
from prefgen.train.validate import margin_scale

HUMAN_ONLY = "human-only"
CORRECTED = ("ai-corrected", "ai-corrected-half-weight")
DEFAULT_LABELS = "ai-soft"  # the way in for a judge without a length bias
DEFAULT_FOLDS = AutoMixConfig.model_fields["folds"].default
DEFAULT_CONFIDENCE = AutoMixConfig.model_fields["confidence"].default  # one-sided
# The mix options the grid sets for each candidate: a value given for them would be overridden.
SEARCHED = ("human_ratio", "labels", "ai_weight")


@dataclass(frozen=True)
class Trial:
    """One candidate of the grid: how its mix is built."""

    name: str
    mix: dict[str, Any]  # MixConfig fields


GRID = (
    Trial(HUMAN_ONLY, {"human_ratio": 1.0}),
    Trial("ai-corrected", {"human_ratio": None, "labels": "corrected"}),
    Trial("ai-corrected-half-weight", {"human_ratio": None, "labels": "corrected", "ai_weight": 0.5}),
    Trial("ai-soft", {"human_ratio": None, "labels": "soft"}),
    Trial("ai-hard", {"human_ratio": None, "labels": "hard"}),
)


@dataclass
class CandidateScore:
    name: str
    accuracy: float  # over every validation pair of every fold
    delta: float  # mean paired difference of agreement to human-only
    low: float  # bootstrap interval of `delta`: its low end is the one-sided bound at the confidence
    high: float
    n_ai: int  # AI rows in the full mix
    per_fold: list[float] = field(default_factory=list)
    log_lik: float = 0.0  # mean per-pair log-likelihood of the humans' side (scale fitted)
    ll_delta: float = 0.0  # mean paired difference of log-likelihood to human-only: what the decision reads
    ll_low: float = 0.0  # its bootstrap interval (one-sided bound at the confidence at either end)
    ll_high: float = 0.0
    weight_decay: float | None = None  # the head's weight decay the candidate's folds trained with
    vs_default_low: float | None = None  # one-sided bound of the paired log-likelihood difference to the
                                         # default candidate (`decide`), when there is one


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
    saw: str = ""  # what the overlap showed about the judge, in one line

    def lines(self) -> list[str]:
        if not self.candidates:
            return [f"chosen: {self.chosen}: {self.reason}", *self.mix.lines()]
        out = [f"mix search {self.search_id}: {self.folds} folds of the human train split, {self.n_val} "
               "validation pairs (held-out split untouched)",
               # Within 100 columns: agreement and the per-pair log-likelihood of the human labels, each as the
               # difference to human-only, then the interval the decision reads.
               f"{'candidate':<26}{'AI rows':>8}{'agreement':>10}{'vs human':>10}{'log-lik':>10}"
               f"{interval_name(self.confidence) + ' (log-lik)':>26}"]
        for c in self.candidates:
            human = c.name == HUMAN_ONLY
            out.append(f"{c.name:<26}{c.n_ai:>8}{c.accuracy:>10.3f}{'' if human else f'{c.delta:+.3f}':>10}"
                       f"{'' if human else f'{c.ll_delta:+.4f}':>10}"
                       f"{'' if human else f'{c.ll_low:+.4f} to {c.ll_high:+.4f}':>26}")
        if self.saw:
            out.append(self.saw)
        out.append(f"chosen: {self.chosen}: {self.reason}")
        return out + self.mix.lines()


def fold_of(prompt_id: str, folds: int, seed: int) -> int:
    digest = hashlib.sha256(f"fold\x00{seed}\x00{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % folds


def _folds(plan: MixPlan, fold: dict[str, int], fold_prompts: list[set[str]],
           order: list[str]) -> list[tuple[list[int], list[int]]]:
    """Per fold, indices into the plan's rows: training rows (human rows of other folds, AI rows whose prompt
    is not in the fold) and the fold's human rows in `order` (the same for every candidate)."""
    index = {c.pair_id: i for i, c in enumerate(plan.rows) if c.source == HUMAN}
    out = []
    for f, prompts in enumerate(fold_prompts):
        train = [i for i, c in enumerate(plan.rows)
                 if (c.source == HUMAN and fold[c.pair_id] != f) or (c.source == AI and c.prompt_id not in prompts)]
        out.append((train, [index[p] for p in order if fold[p] == f]))
    return out


def stage(text: str) -> None:
    """One line on stderr per stage of the search, never on stdout, where --json output goes; -q keeps it
    quiet."""
    from rich.console import Console

    from prefgen.pipelines.reporting.output import OUTPUT

    if not OUTPUT.quiet:
        Console(stderr=True).print(text, markup=False, highlight=False, soft_wrap=True)


def auto_mix(store: Store, config: MixConfig, auto: AutoMixConfig | None = None, *,
             grid: Sequence[Trial] = GRID) -> AutoMixReport:
    """Run the grid over `auto.folds` folds, store the trials, decide (`decide`, at `auto.confidence`), build the
    chosen mix under `config.name`. Every candidate trains with `auto.train` (seeded with the mix's seed unless
    it sets one), recorded with the mix."""
    from prefgen.train.validate import fold_margins

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
    corrected = _covariate_calibrations(plans, calibrations)
    biased = any(c.length_biased(confidence) for c in corrected) if corrected else None
    # A candidate without AI rows is human-only under another name: it is not trained. Corrected labels need
    # a calibration with covariates, and a biased judge's labels enter corrected or not at all.
    grid = [t for t in grid if t.name == HUMAN_ONLY or (any(c.source == AI for c in plans[t.name].rows)
                                                       and (t.mix.get("labels") != "corrected" or corrected)
                                                       and (not biased or t.name in CORRECTED))]
    if len(grid) == 1:
        return _decided_without_search(store, config, calibrations, auto, train)
    if len(humans) < 2 * folds:
        raise PrefgenError(f"mix --auto needs human train labels to validate on: {len(humans)} pairs for "
                           f"{folds} folds (import human labels and `prefgen split` first)")
    fold = {c.pair_id: fold_of(c.prompt_id, folds, config.seed) for c in humans}
    fold_prompts = [{c.prompt_id for c in humans if fold[c.pair_id] == f} for f in range(folds)]
    order = [c.pair_id for c in humans]
    search_id = f"search-{uuid.uuid4().hex[:12]}"
    margins: dict[str, list[np.ndarray]] = {}
    decays: dict[str, float | None] = {}
    trials_rows = []
    for k, trial in enumerate(grid):
        trial_config = MixConfig(**{**config.model_dump(), **trial.mix})
        rows = training_rows(store, plans[trial.name].rows, trial_config)
        trial_folds = _folds(plans[trial.name], fold, fold_prompts, order)
        stage(f"mix --auto: candidate {k + 1}/{len(grid)} ({trial.name}): {folds} folds of {len(rows)} rows, "
              f"validating on {len(order)} human pairs")
        with store.released():  # readers get in while the candidate trains
            result = fold_margins(rows, trial_folds, train)
        margins[trial.name], decays[trial.name] = result.margins, result.weight_decay
        for f, ((train_rows, val_rows), fold_margin) in enumerate(zip(trial_folds, result.margins, strict=True)):
            trials_rows.append({"search_id": search_id, "mix_name": config.name, "candidate": trial.name,
                                "fold": f, "n_train": len(train_rows),
                                "n_ai": sum(plans[trial.name].rows[i].source == AI for i in train_rows),
                                "n_val": len(val_rows),
                                "accuracy": float((fold_margin > 0).mean()) if len(fold_margin) else None,
                                "settings": {**trial.mix, "weight_decay": result.weight_decay}})
    db.save_mix_trials(store, trials_rows)
    scored = score_candidates(margins, {t.name: sum(c.source == AI for c in plans[t.name].rows) for t in grid},
                              confidence=confidence, seed=config.seed, decays=decays,
                              default=DEFAULT_LABELS if biased is False else None)
    n_val = sum(len(m) for m in margins[HUMAN_ONLY])
    winner, reason = decide(scored, confidence, biased=biased)
    chosen = next(t for t in grid if t.name == winner.name)
    saw = _saw(corrected, winner.name, biased)
    evidence = {
        "search_id": search_id, "chosen": winner.name, "reason": reason, "saw": saw, "folds": folds,
        "confidence": confidence, "n_val": n_val, "train": recipe(train, None),
        "candidates": [vars(c) for c in scored],
    }
    mix = build_mix(store, MixConfig(**{**config.model_dump(), **chosen.mix}), auto=evidence,
                    calibrations=calibrations)
    return AutoMixReport(search_id, winner.name, reason, n_val, folds, scored, mix, margins, confidence, saw)


def _covariate_calibrations(plans: dict[str, MixPlan], calibrations: dict[str, Any]) -> list[Any]:
    """The calibrations with covariates of the label jobs whose AI rows the candidates hold."""
    jobs = {c.origin for plan in plans.values() for c in plan.rows if c.source == AI}
    found = {id(calibrations[j].covariate): calibrations[j].covariate for j in sorted(jobs)
             if j in calibrations and calibrations[j].covariate is not None}
    return list(found.values())


def _saw(corrected: Sequence[Any], chosen: str, biased: bool | None) -> str:
    """One line on what the overlap showed about length, and what became of it."""
    lines = [line for line in (c.length_line() for c in corrected) if line]
    if not lines:
        return (f"fewer than {MIN_COVARIATE_PAIRS} human train pairs were also judged: no calibration with "
                "covariates (label the human pairs too)") if not corrected else ""
    seen = "a length bias beyond its errors" if biased else "no length bias beyond its errors"
    outcome = {HUMAN_ONLY: "human-only", "ai-soft": "calibrated soft labels", "ai-hard": "hard labels"}.get(
        chosen, "corrected")
    return "; ".join(lines) + f": {seen}, {outcome}"


def scaled_log_likelihoods(margins: np.ndarray) -> np.ndarray:
    """log sigmoid(s * m) per pair, with the s >= 0 that maximises their sum (`margin_scale`)."""
    m = np.asarray(margins, dtype=float)
    return -np.logaddexp(0.0, -margin_scale(m) * m)


def score_candidates(margins: dict[str, list[np.ndarray]], n_ai: dict[str, int], *,
                     confidence: float = DEFAULT_CONFIDENCE, seed: int = 0,
                     decays: dict[str, float | None] | None = None, default: str | None = None
                     ) -> list[CandidateScore]:
    """Validation agreement and log-likelihood of every candidate, paired with human-only's on the same pairs
    (`margins[name][fold]`: r_chosen - r_rejected on that fold's pairs, in the same order for every name)."""
    base_margins = np.concatenate(margins[HUMAN_ONLY])
    baseline, base_ll = (base_margins > 0).astype(float), scaled_log_likelihoods(base_margins)
    level = 2 * confidence - 1  # the two-sided level whose ends are the one-sided bounds
    scored, lls = [], {}
    for name, folds in margins.items():
        joined = np.concatenate(folds)
        correct, lls[name] = (joined > 0).astype(float), scaled_log_likelihoods(joined)
        low, high = mean_interval(correct - baseline, level=level, seed=seed)
        ll_low, ll_high = mean_interval(lls[name] - base_ll, level=level, seed=seed)
        scored.append(CandidateScore(name, float(correct.mean()), float((correct - baseline).mean()), low, high,
                                     n_ai[name], [float((m > 0).mean()) for m in folds], float(lls[name].mean()),
                                     float((lls[name] - base_ll).mean()), ll_low, ll_high,
                                     (decays or {}).get(name)))
    if default in lls:
        for c in scored:
            if c.name not in (HUMAN_ONLY, default):
                c.vs_default_low = mean_interval(lls[c.name] - lls[default], level=level, seed=seed)[0]
    return scored


def recipe(train: TrainConfig, curriculum: str | None) -> dict[str, Any]:
    """Every training setting a candidate was validated with (all but the directory a model is written to): what
    the mix records and `prefgen train` re-applies."""
    settings = train.model_copy(update={"curriculum": curriculum, "ensemble": 1}).to_dict()
    return {k: v for k, v in settings.items() if k != "out_dir"}


def _decided_without_search(store: Store, config: MixConfig, calibrations: dict[str, Any],
                            auto: AutoMixConfig, train: TrainConfig) -> AutoMixReport:
    reason = "no AI rows pass the filters (nothing to validate): the mix is human-only"
    evidence = {"search_id": None, "chosen": HUMAN_ONLY, "reason": reason, "saw": "", "folds": auto.folds,
                "n_val": 0, "confidence": auto.confidence, "train": recipe(train, None), "candidates": []}
    mix = build_mix(store, MixConfig(**{**config.model_dump(), "human_ratio": 1.0}), auto=evidence,
                    calibrations=calibrations)
    return AutoMixReport("none", HUMAN_ONLY, reason, 0, auto.folds, [], mix, confidence=auto.confidence)


def decide(scored: Sequence[CandidateScore], confidence: float = DEFAULT_CONFIDENCE, *,
           biased: bool | None = None) -> tuple[CandidateScore, str]:
    """The rule of the module docstring. `biased`: whether the overlap shows a length bias (None: no
    calibration with covariates, nothing known)."""
    human = next(c for c in scored if c.name == HUMAN_ONLY)
    with_ai = [c for c in scored if c.name != HUMAN_ONLY and c.n_ai > 0]
    if biased:
        with_ai = [c for c in with_ai if c.name in CORRECTED]
    if not with_ai:
        return human, "there are no AI rows that pass the filters"
    bound = f"{confidence:.0%} confidence"
    default = next((c for c in with_ai if c.name == DEFAULT_LABELS), None) if biased is False else None
    if default is not None:
        better = [c for c in with_ai if c is not default and (c.vs_default_low or 0.0) > 0.0]
        if better:
            best = max(better, key=lambda c: c.ll_delta)
            return best, (f"beats the calibrated soft labels beyond the noise ({bound}); vs human-only "
                          f"{best.ll_delta:+.4f} log-likelihood per pair, agreement {best.delta:+.3f}")
        if default.ll_high < 0.0:
            return human, (f"human-only beats the calibrated soft labels beyond the noise ({default.ll_delta:+.4f} "
                           f"log-likelihood per pair, at most {default.ll_high:+.4f} with {bound}): the AI rows "
                           "are left out")
        return default, (f"no length bias beyond the judge's errors, so its calibrated soft labels are the default "
                         f"way in, and human-only does not beat them beyond the noise ({default.ll_delta:+.4f} "
                         f"log-likelihood per pair vs human-only, {interval_name(confidence)} "
                         f"{default.ll_low:+.4f} to {default.ll_high:+.4f}; agreement {default.delta:+.3f})")
    better = [c for c in with_ai if c.ll_low > 0.0]
    why = "the judge prefers longer responses beyond its errors, so only corrected labels may enter, and "\
        if biased else ""
    if better:
        best = max(better, key=lambda c: c.ll_delta)
        return best, (f"{why}it beats human-only by {best.ll_delta:+.4f} log-likelihood per pair on the "
                      f"validation folds (at least {best.ll_low:+.4f} with {bound}; agreement {best.delta:+.3f})")
    best = max(with_ai, key=lambda c: c.ll_delta)
    resolution = (best.high - best.low) / 2
    return human, (f"{why}no mix with AI rows beats human-only beyond the noise (best: {best.name}, agreement "
                   f"{best.delta:+.3f}, {interval_name(confidence)} {best.low:+.3f} to {best.high:+.3f}): the AI "
                   f"rows are left out. These validation pairs resolve differences of about ±{resolution:.3f}; "
                   "smaller gains need more human labels to show")
