"""`prefgen route`: pick the pairs whose human label changes the training mix most, and write them as an
annotation batch.

Candidates are judged pairs with no human label yet, whose prompt is not held out and that no earlier batch
sent out. A human label does one of two things in the mix (a human label always wins there):
- it corrects the AI row the mix holds for the pair (the pair passed the mix's filters: kept, decided) when
  that row is wrong. `mix_error` is the probability of that: 1 - the calibrated P(the kept side is better),
  the same calibrated P the mix's soft labels use (`pipelines.calibration`), so summed over a batch it is the
  number of wrong AI rows the batch is expected to fix. With `--cross-check` (`cross_check`), reward models
  trained without the pair's prompt give a second calibrated P of the same side (`rm_check`), joined to the
  judge's as independent evidence: the judge's confidence says how often rows like this one are wrong, the
  models say which;
- or, for a pair the filters dropped (order-inconsistent, under the threshold, a tie), it adds a human row the
  mix did not have: `new_row` = 1.
The score is the weighted sum of the signals present, with the weights of `RouteConfig.weights` (one wrong AI
row fixed is the unit; `new_row`'s weight is what a new human row is worth in that unit). The judges' warning
signs are stored beside them and, at small weights, order pairs of equal value:
- uncertainty: 1 - |2 P(a better) - 1|, P averaged over every judge and principle (weighted), kept or not;
- inconsistency: share of the (job, principle) verdicts that flipped when the order was swapped;
- near_threshold: 1 when the confidence sits on the keep threshold, falling to 0 a quarter away;
- principle_disagreement: 1 when the principles' sides split evenly (averaged over judges);
- judge_disagreement: 1 when the judges' sides split evenly (needs two judges; NULL otherwise);
- rm_spread: with `--model ENSEMBLE`, twice the standard deviation of the members' P(a better).
Every signal of every batch pair is stored in `route_items`, with the score, the rank and a one-line reason.

The random slice: `random_share` of the budget is drawn uniformly from all candidates first, then the rest of
the budget goes to the highest scores. The slice is an unbiased sample of the judged pool; the routed pairs
are not (they were picked for looking wrong). `prefgen agreement` uses the random slice and plain imports
only (`storage.human.selection_filter`). Calibration uses every labelled pair, each weighted by the inverse of
the probability that this design picked it (`inclusion`, exact: the slice is a uniform draw, the rest a
deterministic cut of the ranking), so the routed pairs stand only for their share of the pool
(`storage.calibration.calibration_pairs`).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from prefgen import formats
from prefgen.errors import PrefgenError
from prefgen.hashing import content_hash
from prefgen.judge.swap import side
from prefgen.pipelines.humans.calibration import calibrate, calibration_for_jobs
from prefgen.pipelines.configs import MixConfig, RouteConfig, RouteWeights
from prefgen.pipelines.mixing.auto import fold_of
from prefgen.pipelines.mixing.mix import AI, HUMAN, MixPlan, plan_mix, training_rows
from prefgen.storage import route as db
from prefgen.storage.db import Store

SIGNALS = tuple(RouteWeights.model_fields)
NEAR_WIDTH = 0.25
CROSS_CHECK_FOLDS = 5
MIN_CROSS_CHECK_HUMANS = 10
_EPS = 1e-6
ROUTED, RANDOM = "routed", "random"


@dataclass
class PairSignals:
    pair_id: str
    prompt_id: str
    p_a: float
    uncertainty: float
    inconsistency: float
    near_threshold: float
    principle_disagreement: float
    judge_disagreement: float | None = None
    rm_spread: float | None = None
    mix_error: float | None = None  # None: the mix holds no AI row of the pair
    rm_check: float | None = None  # --cross-check: the out-of-fold models' P(the mix row's side better)
    new_row: float = 0.0

    def score(self, weights: RouteWeights) -> float:
        return sum(getattr(weights, name) * value for name, value in self.present().items())

    def present(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in SIGNALS if getattr(self, name) is not None}

    def contributions(self, weights: RouteWeights) -> list[tuple[str, float]]:
        """(signal, value) of the signals that added to the score, the largest contribution first."""
        parts = sorted(((getattr(weights, k) * v, k, v) for k, v in self.present().items()
                        if v > 0 and getattr(weights, k) > 0), reverse=True)
        return [(name, value) for _, name, value in parts]

    def reason(self, weights: RouteWeights) -> str:
        """The signals that contributed most, e.g. 'mix_error 0.24, uncertainty 0.48'."""
        return ", ".join(f"{name} {value:.2f}" for name, value in self.contributions(weights)[:3]) or "no warning sign"


def even_split(sides: Sequence[str]) -> float:
    """1 when the a and b sides are equally many, 0 when all agree (ties do not count)."""
    a, b = sides.count("a"), sides.count("b")
    return 2.0 * min(a, b) / (a + b) if a + b else 0.0


def near(confidence: float, threshold: float) -> float:
    return max(0.0, 1.0 - abs(confidence - threshold) / NEAR_WIDTH)


def pair_signals(rows: Sequence[dict[str, Any]]) -> list[PairSignals]:
    """Rows: job_id, pair_id, prompt_id, principle_id, p_a, consistent, threshold, weight (one per job and
    principle of a pair, as `storage.route.candidate_verdicts` gives them). The mix signals are set apart
    (`add_mix_signals`)."""
    by_pair: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_pair[row["pair_id"]].append(row)
    out = []
    for pair_id, group in by_pair.items():
        weight = sum(r["weight"] for r in group)
        p_a = sum(r["p_a"] * r["weight"] for r in group) / weight
        confidence = abs(2.0 * p_a - 1.0)
        by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in group:
            by_job[row["job_id"]].append(row)
        job_sides = [side(sum(r["p_a"] * r["weight"] for r in g) / sum(r["weight"] for r in g))
                     for g in by_job.values()]
        out.append(PairSignals(
            pair_id=pair_id, prompt_id=group[0]["prompt_id"], p_a=p_a,
            uncertainty=1.0 - confidence,
            inconsistency=sum(not r["consistent"] for r in group) / len(group),
            near_threshold=near(confidence, max(r["threshold"] for r in group)),
            principle_disagreement=float(np.mean([even_split([side(r["p_a"]) for r in g]) for g in by_job.values()])),
            judge_disagreement=even_split(job_sides) if len(by_job) > 1 else None,
        ))
    return out


def add_mix_signals(signals: Sequence[PairSignals], p_chosen: dict[str, float],
                    checked: dict[str, float] | None = None) -> None:
    """`p_chosen`: pair id -> calibrated P(the side of the mix's AI row is better), for the pairs the mix holds
    an AI row of. The others get new_row = 1 (a human label adds a row there). `checked`: the cross-check's P
    for the same side (`cross_check`), joined to the judge's as independent evidence (`joined`)."""
    for s in signals:
        held = p_chosen.get(s.pair_id)
        s.rm_check = (checked or {}).get(s.pair_id)
        s.mix_error = None if held is None else 1.0 - joined(held, s.rm_check)
        s.new_row = 0.0 if held is not None else 1.0


def joined(p_judge: float, p_models: float | None) -> float:
    """P(the side is better) given two independent calibrated opinions of it: their odds multiply (each is
    calibrated against the same 50:50 prior, since a pair's sides have no order)."""
    if p_models is None:
        return p_judge
    logit = sum(math.log(p / (1.0 - p)) for p in (min(max(x, _EPS), 1.0 - _EPS) for x in (p_judge, p_models)))
    return 1.0 / (1.0 + math.exp(-logit))


def default_mix(judge: str | None) -> MixConfig:
    """The mix whose AI rows a label can correct: every kept AI row (the mix's own rule: kept, decided, prompt
    not held out, the most confident job) and every human train label, soft labels."""
    return MixConfig(name="route", human_ratio=None, judge=judge)


@dataclass
class CrossCheck:
    """Out-of-fold reward models' view of the mix's AI rows (`cross_check`)."""

    p_chosen: dict[str, float]  # AI row's pair id -> P(its side better) by models trained without its prompt
    scale: float  # the margins' scale, fitted on the human rows: P = sigmoid(scale * margin)
    humans: int  # human rows the scale was fitted on
    disagree: int  # AI rows the models rank the other way
    weight_decay: float | None
    base: str

    def summary(self) -> dict[str, Any]:
        """Everything but the per-row P: what the batch stores and the output says."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "p_chosen"}


def cross_check(store: Store, plan: MixPlan, mix: MixConfig, config: RouteConfig) -> CrossCheck:
    """Train reward models on all folds (by prompt) of the mix but one and score the rows of that one, so every
    row, AI or human, is scored by models that never saw its prompt; fit the margins' scale on the human rows
    (their side is the humans'), and give each AI row the models' P(its side better). Judge errors are mostly
    independent of a linear head's errors on other prompts, so a row that both doubt is the likelier error
    (what confident learning reads from out-of-sample probabilities)."""
    from prefgen.train.config import TrainConfig, resolve_base
    from prefgen.train.validate import fold_margins, margin_scale

    humans = [i for i, c in enumerate(plan.rows) if c.source == HUMAN]
    if len(humans) < MIN_CROSS_CHECK_HUMANS:
        raise PrefgenError(f"--cross-check calibrates the reward models' margins on human train labels: "
                           f"{len(humans)} in the mix, at least {MIN_CROSS_CHECK_HUMANS} needed (import human "
                           "labels and `prefgen split` first, or leave out --cross-check)")
    fold = [fold_of(c.prompt_id, CROSS_CHECK_FOLDS, config.seed) for c in plan.rows]
    folds = [([i for i, g in enumerate(fold) if g != f], [i for i, g in enumerate(fold) if g == f])
             for f in range(CROSS_CHECK_FOLDS)]
    train, rows = TrainConfig(seed=config.seed, base=config.base), training_rows(store, plan.rows, mix)
    with store.released():  # readers get in while the folds train
        result = fold_margins(rows, folds, train)
    margin = np.empty(len(plan.rows))
    for (_, val), fold_margin in zip(folds, result.margins, strict=True):
        margin[list(val)] = fold_margin
    scale = margin_scale(margin[humans])
    ai = [i for i, c in enumerate(plan.rows) if c.source == AI]
    p = {plan.rows[i].pair_id: float(1.0 / (1.0 + np.exp(-scale * margin[i]))) for i in ai}
    return CrossCheck(p, scale, len(humans), int(sum(margin[i] < 0 for i in ai)), result.weight_decay,
                      resolve_base(config.base))


def unit(seed: int, key: str, salt: str) -> bytes:
    return hashlib.sha256(f"route\x00{salt}\x00{seed}\x00{key}".encode()).digest()


def inclusion(n: int, n_random: int, n_routed: int) -> np.ndarray:
    """P(the candidate ranked r = 1..n is in a batch of `n_random` pairs drawn uniformly from all n, then the
    `n_routed` best-ranked of the rest). Ranked r, it is drawn with probability n_random / n; otherwise it is
    routed when fewer than n_routed of the r - 1 pairs above it were left undrawn, i.e. when at least
    r - n_routed of them were drawn: a hypergeometric tail (n_random draws from the other n - 1 pairs)."""
    if n_random + n_routed >= n:
        return np.ones(n)
    from scipy.stats import hypergeom

    rank = np.arange(1, n + 1)
    drawn = n_random / n
    return drawn + (1.0 - drawn) * hypergeom.sf(rank - n_routed - 1, n - 1, rank - 1, n_random)


@dataclass
class Pick:
    signals: PairSignals
    selection: str  # routed / random
    rank: int  # 1 = the highest score
    score: float
    inclusion: float  # probability that the batch's design picked this pair
    calibration_weight: float  # (picked / candidates) / inclusion: its weight in calibration


def choose(signals: Sequence[PairSignals], budget: int, random_share: float, seed: int,
           weights: RouteWeights | None = None) -> list[Pick]:
    """The batch: the random slice first (uniform over every candidate), then the best-ranked of the rest.
    Rank 1 is the highest score; equal scores are ordered by a seeded hash."""
    weights = weights or RouteWeights()
    scores = {s.pair_id: s.score(weights) for s in signals}
    ranked = sorted(signals, key=lambda s: (-scores[s.pair_id], unit(seed, s.pair_id, "rank")))
    rank = {s.pair_id: i + 1 for i, s in enumerate(ranked)}
    n_random = min(len(ranked), round(budget * random_share))
    drawn = sorted(ranked, key=lambda s: unit(seed, s.pair_id, "random"))[:n_random]
    taken = {s.pair_id for s in drawn}
    routed = [s for s in ranked if s.pair_id not in taken][: max(0, budget - n_random)]
    chance = inclusion(len(ranked), n_random, len(routed))
    picked = n_random + len(routed)
    # Without a random slice the pairs below the cut could never be picked and nothing in the batch stands for
    # them: its pairs get no weight in calibration (unless the batch took every candidate).
    rate = picked / len(ranked) if n_random or picked == len(ranked) else 0.0
    return [Pick(s, selection, rank[s.pair_id], scores[s.pair_id], float(chance[rank[s.pair_id] - 1]),
                 rate / float(chance[rank[s.pair_id] - 1]))
            for selection, group in ((RANDOM, drawn), (ROUTED, routed)) for s in group]


def shown_order(seed: int, pair_id: str) -> str:
    return "ab" if unit(seed, pair_id, "shown")[0] < 128 else "ba"


def ensemble_spread(store: Store, model_path: Any, pair_ids: Sequence[str]) -> dict[str, float]:
    """pair id -> twice the standard deviation of the ensemble members' P(a better) = sigmoid(r_a - r_b)."""
    from prefgen.train.score import RewardEnsemble, load_reward_model, score_texts

    model = load_reward_model(model_path)
    if not isinstance(model, RewardEnsemble):
        raise PrefgenError(f"{model_path}: --model needs an ensemble (`prefgen train --ensemble K`): one model "
                           "has no spread")
    texts = db.pair_texts(store, pair_ids)
    rows = [texts[pid] for pid in pair_ids]
    import orjson

    prompts = [orjson.loads(r["prompt"]) if r["is_chat"] else r["prompt"] for r in rows]
    scores = score_texts(model, prompts + prompts, [r["response_a"] for r in rows] + [r["response_b"] for r in rows])
    n = len(rows)
    p_a = 1.0 / (1.0 + np.exp(-(scores.members[:, :n] - scores.members[:, n:])))
    return dict(zip(pair_ids, (2.0 * p_a.std(axis=0)).tolist()))


@dataclass
class RouteReport:
    batch_id: str
    candidates: int
    selected: dict[str, int]
    files: list[str]
    fmt: str
    reasons: dict[str, int] = field(default_factory=dict)  # strongest signal of the routed pairs
    mean_signals: dict[str, dict[str, float]] = field(default_factory=dict)  # per selection
    effect: dict[str, dict[str, float]] = field(default_factory=dict)  # per selection: what the labels change
    cross_check: dict[str, Any] | None = None  # CrossCheck without its per-row P (--cross-check)
    ai_rows: int = 0  # AI rows of the plain mix

    def lines(self) -> list[str]:
        out = [
            f"batch {self.batch_id}: {sum(self.selected.values())} of {self.candidates} candidate pairs "
            f"({self.selected.get(ROUTED, 0)} routed by value, {self.selected.get(RANDOM, 0)} drawn at random)",
            "wrote " + ", ".join(self.files),
        ]
        if self.cross_check:
            c = self.cross_check
            out.append(f"cross-check: reward models trained without each prompt ({CROSS_CHECK_FOLDS} folds, "
                       f"{Path(c['base']).name}) rank {c['disagree']} of {self.ai_rows} AI rows the other way; "
                       f"their margins are calibrated on {c['humans']} human rows (scale {c['scale']:.3g})")
        for selection, e in self.effect.items():
            # Measured against a plain mix (every kept AI row), whatever mixes the store holds: that is the mix
            # whose rows a label can correct; a stored human-only mix has none.
            out.append(f"{selection}: {e['in_mix']:.0f} pairs whose AI label a plain mix would take (about "
                       f"{e['expected_fixes']:.1f} of those labels wrong), {e['new_rows']:.0f} pairs the filters "
                       "dropped (a human label adds a row)")
        if self.reasons:
            out.append("routed for: " + ", ".join(f"{k} {v}" for k, v in self.reasons.items()))
        for selection, means in self.mean_signals.items():
            out.append(f"mean signals, {selection}: " + ", ".join(f"{k} {v:.2f}" for k, v in means.items()))
        out.append(f"bring the answers back with: prefgen import-human EXPORT --format {self.fmt}")
        return out


def route(store: Store, config: RouteConfig) -> RouteReport:
    """Rank the candidates, write the batch file and store the batch (which pairs, why, when, for which jobs)."""
    rows = db.candidate_verdicts(store, judge=config.judge)
    if not rows:
        raise PrefgenError(f"{store.path}: no judged pair left to route (none judged"
                           f"{' by ' + config.judge if config.judge else ''}, or every one already has a human "
                           "label, a held-out prompt or a place in an earlier batch); run `prefgen label` first")
    signals = pair_signals(rows)
    calibrations = calibration_for_jobs(store, calibrate(store, save=False))
    mix = default_mix(config.judge)
    plan = plan_mix(store, mix, calibrations)
    checked = cross_check(store, plan, mix, config) if config.cross_check else None
    add_mix_signals(signals, {c.pair_id: c.p_chosen for c in plan.rows if c.source == AI},
                    checked.p_chosen if checked else None)
    if config.reward_model is not None:
        spread = ensemble_spread(store, config.reward_model, [s.pair_id for s in signals])
        for s in signals:
            s.rm_spread = spread[s.pair_id]
    picked = choose(signals, config.budget, config.random_share, config.seed, config.weights)
    batch_id = content_hash(["route", config.seed, [p.signals.pair_id for p in picked]])[:16]
    items = [{"batch_id": batch_id, "pair_id": p.signals.pair_id, "position": i, "selection": p.selection,
              "rank": p.rank, "score": round(p.score, 6), "p_a": p.signals.p_a,
              **{name: getattr(p.signals, name) for name in SIGNALS}, "rm_check": p.signals.rm_check,
              "reason": p.signals.reason(config.weights),
              "shown": shown_order(config.seed, p.signals.pair_id), "inclusion": p.inclusion,
              "calibration_weight": p.calibration_weight}
             for i, p in enumerate(picked)]
    texts = db.pair_texts(store, [item["pair_id"] for item in items])
    tool = formats.get(config.format)
    files = tool.write_batch(config.out, [{**texts[item["pair_id"]], **item} for item in items])
    selected = dict(Counter(p.selection for p in picked))
    jobs = sorted({r["job_id"] for r in rows})
    batch = {"batch_id": batch_id, "label_jobs": jobs, "judge": config.judge,
             "budget": config.budget, "random_share": config.random_share, "seed": config.seed,
             "format": config.format, "out_path": str(config.out),
             "model_path": str(config.reward_model) if config.reward_model else None,
             "weights": config.weights.model_dump(), "counts": {"candidates": len(signals), **selected},
             "cross_check": checked.summary() if checked else None,
             "calibration": {job: {k: getattr(calibrations[job], k) for k in ("method", "params", "n_pairs")}
                             for job in jobs if job in calibrations}}
    db.save_batch(store, batch, items)
    return RouteReport(batch_id, len(signals), selected, [str(f) for f in files], config.format,
                       _reasons(picked, config.weights), _mean_signals(picked), _effect(picked),
                       batch["cross_check"], sum(c.source == AI for c in plan.rows))


def _reasons(picked: Sequence[Pick], weights: RouteWeights) -> dict[str, int]:
    strongest = Counter((p.signals.contributions(weights) or [("no warning sign", 0.0)])[0][0]
                        for p in picked if p.selection == ROUTED)
    return dict(strongest.most_common())


def _mean_signals(picked: Sequence[Pick]) -> dict[str, dict[str, float]]:
    out = {}
    for selection in (ROUTED, RANDOM):
        group = [asdict(p.signals) for p in picked if p.selection == selection]
        if group:
            out[selection] = {name: float(np.mean([g[name] for g in group])) for name in SIGNALS
                              if all(g[name] is not None for g in group)}
    return out


def _effect(picked: Sequence[Pick]) -> dict[str, dict[str, float]]:
    """Per selection: AI rows of the mix the labels check, how many of them are expected wrong, new rows."""
    out = {}
    for selection in (ROUTED, RANDOM):
        group = [p.signals for p in picked if p.selection == selection]
        if group:
            held = [s.mix_error for s in group if s.mix_error is not None]
            out[selection] = {"in_mix": len(held), "expected_fixes": float(sum(held)),
                              "new_rows": len(group) - len(held)}
    return out
