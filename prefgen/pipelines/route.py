"""`prefgen route`: pick the pairs whose human label is worth most, and write them as an annotation batch.

Candidates are judged pairs with no human label yet, whose prompt is not held out and that no earlier batch
sent out. Each gets signals in [0, 1], stored per pair (`route_items`) so the ranking can be explained:
- uncertainty: 1 - |2 P(a better) - 1|, P averaged over every judge and principle (weighted), kept or not;
  for a calibrated judge this is twice its probability of being wrong;
- inconsistency: share of the (job, principle) verdicts that flipped when the order was swapped;
- near_threshold: 1 when the confidence sits on the keep threshold, falling to 0 a quarter away: those
  pairs enter or miss the mix on a coin toss;
- principle_disagreement: 1 when the principles' sides split evenly (averaged over judges);
- judge_disagreement: 1 when the judges' sides split evenly (needs two judges; NULL otherwise);
- rm_spread: with `--model ENSEMBLE`, twice the standard deviation of the members' P(a better).
score = the weighted sum of the signals present (`WEIGHTS`); a human label is worth most where the AI label
is most likely wrong or missing, and uncertainty is the most direct estimate of that, so it weighs most.

The random slice: `random_share` of the budget is drawn uniformly from all candidates first, then the rest of
the budget goes to the highest scores. The slice is an unbiased sample of the judged pool; the routed pairs
are not (they were picked for looking wrong). `prefgen agreement` and the calibration behind soft labels
therefore use the random slice and never the routed pairs (`storage.human.selection_filter`), while the mix
uses both (a human label always wins there).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from prefgen.errors import PrefgenError
from prefgen.hashing import content_hash
from prefgen.judge.swap import side
from prefgen.pipelines.annotation import write_batch
from prefgen.pipelines.configs import RouteConfig
from prefgen.storage import route as db
from prefgen.storage.db import Store

SIGNALS = ("uncertainty", "inconsistency", "near_threshold", "principle_disagreement", "judge_disagreement",
           "rm_spread")
WEIGHTS = {"uncertainty": 1.0, "inconsistency": 0.5, "near_threshold": 0.25, "principle_disagreement": 0.5,
           "judge_disagreement": 1.0, "rm_spread": 1.0}
NEAR_WIDTH = 0.25
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

    def score(self) -> float:
        return sum(WEIGHTS[name] * value for name, value in self.present().items())

    def present(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in SIGNALS if getattr(self, name) is not None}

    def contributions(self) -> list[tuple[str, float]]:
        """(signal, value) of the signals that added to the score, the largest contribution first."""
        parts = sorted(((WEIGHTS[k] * v, k, v) for k, v in self.present().items() if v > 0), reverse=True)
        return [(name, value) for _, name, value in parts]

    def reason(self) -> str:
        """The signals that contributed most, e.g. 'uncertainty 0.92, inconsistency 0.50'."""
        return ", ".join(f"{name} {value:.2f}" for name, value in self.contributions()[:3]) or "no warning sign"


def even_split(sides: Sequence[str]) -> float:
    """1 when the a and b sides are equally many, 0 when all agree (ties do not count)."""
    a, b = sides.count("a"), sides.count("b")
    return 2.0 * min(a, b) / (a + b) if a + b else 0.0


def near(confidence: float, threshold: float) -> float:
    return max(0.0, 1.0 - abs(confidence - threshold) / NEAR_WIDTH)


def pair_signals(rows: Sequence[dict[str, Any]]) -> list[PairSignals]:
    """Rows: job_id, pair_id, prompt_id, principle_id, p_a, consistent, threshold, weight (one per job and
    principle of a pair, as `storage.route.candidate_verdicts` gives them)."""
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


def unit(seed: int, key: str, salt: str) -> bytes:
    return hashlib.sha256(f"route\x00{salt}\x00{seed}\x00{key}".encode()).digest()


def choose(signals: Sequence[PairSignals], budget: int, random_share: float,
           seed: int) -> list[tuple[PairSignals, str, int]]:
    """(pair, selection, rank) of the batch: the random slice first (uniform over every candidate), then the
    best-ranked of the rest. Rank 1 is the highest score; equal scores are ordered by a seeded hash."""
    ranked = sorted(signals, key=lambda s: (-s.score(), unit(seed, s.pair_id, "rank")))
    rank = {s.pair_id: i + 1 for i, s in enumerate(ranked)}
    n_random = min(len(ranked), round(budget * random_share))
    drawn = sorted(ranked, key=lambda s: unit(seed, s.pair_id, "random"))[:n_random]
    taken = {s.pair_id for s in drawn}
    routed = [s for s in ranked if s.pair_id not in taken][: max(0, budget - n_random)]
    return [(s, RANDOM, rank[s.pair_id]) for s in drawn] + [(s, ROUTED, rank[s.pair_id]) for s in routed]


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

    def lines(self) -> list[str]:
        out = [
            f"batch {self.batch_id}: {sum(self.selected.values())} of {self.candidates} candidate pairs "
            f"({self.selected.get(ROUTED, 0)} routed by value, {self.selected.get(RANDOM, 0)} drawn at random)",
            "wrote " + ", ".join(self.files),
        ]
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
    if config.reward_model is not None:
        spread = ensemble_spread(store, config.reward_model, [s.pair_id for s in signals])
        for s in signals:
            s.rm_spread = spread[s.pair_id]
    picked = choose(signals, config.budget, config.random_share, config.seed)
    batch_id = content_hash(["route", config.seed, [s.pair_id for s, _, _ in picked]])[:16]
    items = [{"batch_id": batch_id, "pair_id": s.pair_id, "position": i, "selection": selection, "rank": rank,
              "score": round(s.score(), 6), "p_a": s.p_a,
              **{name: getattr(s, name) for name in SIGNALS}, "reason": s.reason(),
              "shown": shown_order(config.seed, s.pair_id)}
             for i, (s, selection, rank) in enumerate(picked)]
    texts = db.pair_texts(store, [item["pair_id"] for item in items])
    files = write_batch(config.format, config.out, [{**texts[item["pair_id"]], **item} for item in items])
    selected = dict(Counter(selection for _, selection, _ in picked))
    batch = {"batch_id": batch_id, "label_jobs": sorted({r["job_id"] for r in rows}), "judge": config.judge,
             "budget": config.budget, "random_share": config.random_share, "seed": config.seed,
             "format": config.format, "out_path": str(config.out),
             "model_path": str(config.reward_model) if config.reward_model else None, "weights": WEIGHTS,
             "counts": {"candidates": len(signals), **selected}}
    db.save_batch(store, batch, items)
    return RouteReport(batch_id, len(signals), selected, [str(f) for f in files], config.format,
                       _reasons(picked), _mean_signals(picked))


def _reasons(picked: Sequence[tuple[PairSignals, str, int]]) -> dict[str, int]:
    strongest = Counter((s.contributions() or [("no warning sign", 0.0)])[0][0]
                        for s, selection, _ in picked if selection == ROUTED)
    return dict(strongest.most_common())


def _mean_signals(picked: Sequence[tuple[PairSignals, str, int]]) -> dict[str, dict[str, float]]:
    out = {}
    for selection in (ROUTED, RANDOM):
        group = [asdict(s) for s, sel, _ in picked if sel == selection]
        if group:
            out[selection] = {name: float(np.mean([g[name] for g in group])) for name in SIGNALS
                              if all(g[name] is not None for g in group)}
    return out
