"""Calibrating a judge against humans: how often do humans agree with the judge when it says P?

For every (judge, template, constitution), the pairs that carry both the judge's swap-averaged P(a better) and
a human label in the *train* split give points (x, y): x = the judge's probability for the side it prefers,
max(P, 1 - P); y = 1 when the humans chose that side. The map g(x) ~ P(humans agree) turns the judge's
confidence into a soft label for training (`prefgen mix`), and its reliability is shown by `prefgen agreement`.

Method: Platt scaling, y ~ sigmoid(a * logit(x) + b), fitted by scikit-learn's LogisticRegression. Why Platt
and not isotonic regression: the overlap of judged pairs and human train labels is small (tens to a few
hundred pairs), and judges report a few distinct confidence levels; isotonic regression then fits a
staircase to noise, with flat steps at 0 or 1 that turn into certain labels, while two parameters are
stable at that size. The map stays monotone: a negative slope (higher confidence, less agreement) is set to
0, which leaves the constant agreement rate.

Points are weighted (`storage.calibration.calibration_pairs`): pairs that `prefgen route` sent to annotators
for looking wrong count for the share of the pool they stand for (inverse inclusion probability), so a batch's
routed labels sharpen the map where they lie without tilting it; every other labelled pair counts 1. Weights
are scaled to average 1, so the fit's regularisation is that of an unweighted fit of as many points.

With fewer than `MIN_FIT_PAIRS` pairs, a conservative rule instead of a fit: shrink P towards 0.5 by the
measured agreement, g(x) = 0.5 + s (x - 0.5) with s = clamp(2 a - 1, 0, 1) and a the agreement rate with a
Laplace prior ((k + 1) / (n + 2)); with no overlapping pair at all, s = 0.5 (the judge's lean is halved).
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from prefgen.hashing import content_hash
from prefgen.judge.swap import side
from prefgen.storage import calibration as db
from prefgen.storage.db import Store

MIN_FIT_PAIRS = 30
NO_DATA_SHRINK = 0.5
CROSS_FIT_FOLDS = 5
BIN_EDGES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_EPS = 1e-4


@dataclass
class Calibration:
    """A fitted (or fallback) map from the judge's P(its side) to P(humans agree), for one judge key."""

    calibration_id: str
    judge_spec: str
    template_version: str
    constitution_id: str
    method: str  # platt / shrink
    params: dict[str, float]
    n_pairs: int
    agreement: float | None
    ece_before: float | None = None
    ece_after: float | None = None
    reliability: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, x: float | np.ndarray) -> float | np.ndarray:
        return apply_map(self.method, self.params, x)

    def p_chosen(self, p_a: float, chosen: str) -> float:
        """Calibrated probability that `chosen` is better, given the judge's P(a better)."""
        p_side = p_a if chosen == "a" else 1.0 - p_a
        if p_side >= 0.5:
            return float(self(p_side))
        return 1.0 - float(self(1.0 - p_side))  # the judge preferred the other side

    def record(self) -> dict[str, Any]:
        return asdict(self)


def key_id(judge_spec: str, template_version: str, constitution_id: str) -> str:
    return content_hash(["calibration", judge_spec, template_version, constitution_id])


def _logit(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.5, 1.0 - _EPS)
    return np.log(x / (1.0 - x))


def apply_map(method: str, params: dict[str, float], x: float | np.ndarray) -> float | np.ndarray:
    x = np.asarray(x, dtype=float)
    if method == "platt":
        out = 1.0 / (1.0 + np.exp(-(params["a"] * _logit(x) + params["b"])))
    else:
        out = 0.5 + params["s"] * (np.clip(x, 0.5, 1.0) - 0.5)
    return float(out) if out.ndim == 0 else out


def unit_mean(w: Sequence[float] | None, n: int) -> np.ndarray:
    """Weights scaled to average 1 (all 1 when none are given)."""
    w = np.ones(n) if w is None else np.asarray(w, dtype=float)
    return w * (n / w.sum()) if n and w.sum() > 0 else w


def fit_map(x: Sequence[float], y: Sequence[int], w: Sequence[float] | None = None) -> tuple[str, dict[str, float]]:
    """Platt scaling on enough points, else the shrinkage rule of the module docstring (`w`: point weights)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=int)
    n = len(x)
    w = unit_mean(w, n)
    rate = float(np.average(y, weights=w)) if n else 0.0
    if n < MIN_FIT_PAIRS or len(set(y.tolist())) < 2:
        if n == 0:
            return "shrink", {"s": NO_DATA_SHRINK}
        agreement = (rate * n + 1.0) / (n + 2.0)
        return "shrink", {"s": float(min(1.0, max(0.0, 2.0 * agreement - 1.0)))}
    from sklearn.linear_model import LogisticRegression

    z = _logit(x).reshape(-1, 1)
    model = LogisticRegression(C=1.0).fit(z, y, sample_weight=w)
    a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
    if a < 0.0:  # confidence that predicts disagreement is no confidence: keep the base rate
        a, b = 0.0, float(math.log((rate + _EPS) / (1.0 - rate + _EPS)))
    return "platt", {"a": a, "b": b}


def cross_fitted(x: np.ndarray, y: np.ndarray, keys: Sequence[str], w: np.ndarray) -> np.ndarray:
    """g(x_i) from maps fitted without pair i (folds by pair id), for an honest after-calibration ECE."""
    folds = np.array([int(hashlib.sha256(f"calibration-fold\x00{k}".encode()).hexdigest(), 16) % CROSS_FIT_FOLDS
                      for k in keys])
    out = np.empty(len(x))
    for fold in range(CROSS_FIT_FOLDS):
        held = folds == fold
        if held.any():
            method, params = fit_map(x[~held], y[~held], w[~held])
            out[held] = apply_map(method, params, x[held])
    return out


def reliability_table(x: np.ndarray, y: np.ndarray, after: np.ndarray,
                      w: np.ndarray) -> tuple[list[dict[str, Any]], float, float]:
    """Per bin of the judge's P: pairs, mean P before and after calibration, observed agreement; and both ECEs
    (means and bin shares weighted by the points' weights)."""
    rows, ece_before, ece_after = [], 0.0, 0.0
    bins = np.clip(np.digitize(x, BIN_EDGES[1:-1]), 0, len(BIN_EDGES) - 2)
    for b in range(len(BIN_EDGES) - 1):
        mask = bins == b
        n = int(mask.sum())
        if not n:
            continue
        observed = float(np.average(y[mask], weights=w[mask]))
        before = float(np.average(x[mask], weights=w[mask]))
        calibrated = float(np.average(after[mask], weights=w[mask]))
        share = w[mask].sum() / w.sum()
        ece_before += share * abs(before - observed)
        ece_after += share * abs(calibrated - observed)
        rows.append({"bin": f"{BIN_EDGES[b]:.1f}-{BIN_EDGES[b + 1]:.1f}", "pairs": n, "judge_p": round(before, 4),
                     "calibrated_p": round(calibrated, 4), "human_agreement": round(observed, 4)})
    return rows, ece_before, ece_after


def fit_calibration(key: dict[str, Any], points: Sequence[dict[str, Any]]) -> Calibration:
    """Points: p_a, human, pair_id (and a weight, default 1) of one judge key. Judge ties and human ties carry
    no side and are skipped."""
    usable = [p for p in points if p["human"] in ("a", "b") and side(p["p_a"]) != "tie"]
    x = np.array([max(p["p_a"], 1.0 - p["p_a"]) for p in usable], dtype=float)
    y = np.array([int(side(p["p_a"]) == p["human"]) for p in usable], dtype=int)
    w = unit_mean([p.get("weight", 1.0) for p in usable], len(usable))
    method, params = fit_map(x, y, w)
    calibration = Calibration(key_id(key["judge_spec"], key["template_version"], key["constitution_id"]),
                              key["judge_spec"], key["template_version"], key["constitution_id"], method, params,
                              len(usable), float(np.average(y, weights=w)) if len(y) else None)
    if len(usable):
        after = cross_fitted(x, y, [p["pair_id"] for p in usable], w)
        calibration.reliability, calibration.ece_before, calibration.ece_after = reliability_table(x, y, after, w)
    return calibration


def calibrate(store: Store, *, save: bool = True) -> dict[str, Calibration]:
    """Fit (or refit) a calibration for every judge key of the store; by key id. Stored unless `save=False`."""
    points: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in db.calibration_pairs(store):
        points[(row["judge_spec"], row["template_version"], row["constitution_id"])].append(row)
    fitted = {}
    for key in db.judge_keys(store):
        calibration = fit_calibration(key, points[(key["judge_spec"], key["template_version"],
                                                   key["constitution_id"])])
        fitted[calibration.calibration_id] = calibration
    if save:
        db.save_calibrations(store, [c.record() for c in fitted.values()])
    return fitted


def calibration_for_jobs(store: Store, fitted: dict[str, Calibration]) -> dict[str, Calibration]:
    """The calibration that applies to each label job id."""
    by_job = {}
    for key in db.judge_keys(store):
        calibration = fitted[key_id(key["judge_spec"], key["template_version"], key["constitution_id"])]
        for job_id in key["job_ids"]:
            by_job[job_id] = calibration
    return by_job


def calibration_rows(calibrations: Sequence[Calibration]) -> dict[str, list[dict[str, Any]]]:
    """Flat tables for printing: one row per judge, and the reliability bins of each."""
    # ECE of the judge's own P ("judge") and of the calibrated P ("calibrated", cross-fitted). The method says
    # how the map was made; `shrink` (too few pairs to fit) is explained under the table, not in a column.
    judges = [{"judge": c.judge_spec, "template": c.template_version, "method": c.method, "pairs": c.n_pairs,
               "agreement": c.agreement, "ece_judge": c.ece_before, "ece_calibrated": c.ece_after}
              for c in calibrations]
    bins = [{"judge": c.judge_spec, **row} for c in calibrations for row in c.reliability]
    return {"judge calibration (human train split)": judges, "reliability (P -> human agreement)": bins}


def calibration_notes(calibrations: Sequence[Calibration]) -> list[str]:
    """One line per judge whose map could not be fitted, saying what was done instead."""
    return [f"{c.judge_spec}: {c.n_pairs} human train pair(s) with a verdict, fewer than the {MIN_FIT_PAIRS} a fit "
            "needs: its P is shrunk towards 0.5 by the measured agreement instead" for c in calibrations
            if c.method == "shrink"]
