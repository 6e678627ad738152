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

**With covariates** (`CovariateCalibration`, the soft labels of `mix --labels corrected`): Platt maps the
judge's confidence alone, so a judge that is wrong *in a direction* keeps its direction. A judge that prefers
the longer response (the best-documented LLM-judge bias) agrees with humans about as often as an honest judge
of moderate quality, yet a reward model trained on its labels learns its taste for length. So the same
overlap also fits P(humans prefer a) = sigmoid(theta . x) on covariates of the pair, each turning sign when a
and b swap (no intercept, so the map is the same whichever response is called a): the logit of the judge's
P(a better), the length difference (tanh of the log ratio of the responses' lengths in characters), and
the judge's logit times the share of principles whose two orders disagreed. For a judge that picks the
longer response 30% of the time and is otherwise right 80% of the time, the fit gives the judge's "longer"
verdicts about 0.59 and its "shorter" verdicts about 0.85 (humans prefer the longer response in 42% of the
HH pairs): in expectation the labels then carry the humans' taste for length, not the judge's. L2-penalised
(scikit-learn's default C = 1), so on a few dozen pairs the coefficients stay near 0 (labels near 0.5)
rather than fitting noise; fewer than `MIN_COVARIATE_PAIRS` pairs fit nothing.
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
MIN_COVARIATE_PAIRS = 10
COVARIATES = ("judge_logit", "length", "judge_logit_x_inconsistency")
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

    covariate: CovariateCalibration | None = None  # fitted on the same pairs, with covariates

    def record(self) -> dict[str, Any]:
        """The stored row (`calibrations`): the map of the judge's P alone."""
        return {k: v for k, v in asdict(self).items() if k != "covariate"}


def covariate_vector(p_a: float, len_a: float | None, len_b: float | None,
                     inconsistency: float | None) -> np.ndarray:
    """The covariates of a judged pair (`COVARIATES`), each antisymmetric in a <-> b."""
    z = float(_logit_signed(p_a))
    length = math.tanh(math.log((float(len_a or 0) + 1.0) / (float(len_b or 0) + 1.0)))
    return np.array([z, length, z * float(inconsistency or 0.0)])


def _logit_signed(p: float | np.ndarray) -> float | np.ndarray:
    """logit(P), P kept within [0.02, 0.98]: a hard verdict counts as a confident one, not an infinite one."""
    p = np.clip(p, 0.02, 0.98)
    return np.log(p / (1.0 - p))


@dataclass
class CovariateCalibration:
    """P(humans prefer a) from the judge's P and covariates of the pair (module docstring), with what the
    overlap showed about length: how often the judge and the humans chose the longer response."""

    coef: dict[str, float]
    n_pairs: int
    judge_longer: float | None  # share of overlap pairs (lengths differing) where the judge's side is longer
    human_longer: float | None  # the same for the humans' side
    log_loss: float | None = None  # cross-fitted, on the overlap: each pair scored by a fit without it
    platt_log_loss: float | None = None  # the same for the map of the judge's P alone
    gain_se: float | None = None  # standard error of the per-pair gain (platt_log_loss - log_loss)
    agreement: float | None = None  # share of overlap pairs where the judge's side is the humans'
    length_pairs: int = 0  # overlap pairs of unequal lengths the humans chose a side of
    judged_pairs: int | None = None  # every pair the judge leaned on, lengths unequal (no human label needed)
    judge_longer_all: float | None = None  # the share of those where it preferred the longer response

    def expected_longer(self) -> float | None:
        """How often a judge with this agreement and no taste for length would prefer the longer response:
        right (agreement q) with the humans' share h, wrong otherwise: q h + (1 - q)(1 - h)."""
        if self.agreement is None or self.human_longer is None:
            return None
        q, h = self.agreement, self.human_longer
        return q * h + (1 - q) * (1 - h)

    def length_bias(self) -> tuple[float, float] | None:
        """(excess, z): how much more often the judge prefers the longer response, over every pair it judged,
        than `expected_longer`, and that excess in standard errors (the overlap's estimates of q and h are the
        noisy part; delta method). A judge whose errors are random leans to the longer response only as much
        as it is wrong; a length-biased one leans more."""
        expected = self.expected_longer()
        if expected is None or self.judge_longer_all is None or not self.length_pairs:
            return None
        q, h = self.agreement, self.human_longer
        variance = ((2 * q - 1) ** 2 * h * (1 - h) / self.length_pairs + (2 * h - 1) ** 2 * q * (1 - q) / self.n_pairs
                    + self.judge_longer_all * (1 - self.judge_longer_all) / max(self.judged_pairs or 1, 1))
        excess = self.judge_longer_all - expected
        return excess, excess / math.sqrt(max(variance, 1e-12))

    def length_biased(self, confidence: float) -> bool:
        """Whether the judge prefers the longer response more than its errors explain, beyond the noise."""
        from scipy.stats import norm

        bias = self.length_bias()
        return bias is not None and bias[1] > norm.ppf(confidence)

    def gain(self) -> float | None:
        """How much the covariates improve the overlap's cross-fitted log-likelihood per pair."""
        if self.log_loss is None or self.platt_log_loss is None:
            return None
        return self.platt_log_loss - self.log_loss

    def covariates_matter(self, confidence: float) -> bool:
        """Whether the covariates predict the humans better than the judge's P alone beyond the noise: the
        one-sided lower bound of the per-pair gain above 0 (normal approximation)."""
        from scipy.stats import norm

        gain = self.gain()
        if gain is None or not self.gain_se:
            return False
        return gain - norm.ppf(confidence) * self.gain_se > 0.0

    def p_a(self, p_a: float, len_a: float | None, len_b: float | None, inconsistency: float | None) -> float:
        x = covariate_vector(p_a, len_a, len_b, inconsistency)
        return float(1.0 / (1.0 + math.exp(-float(np.dot([self.coef[c] for c in COVARIATES], x)))))

    def p_chosen(self, p_a: float, chosen: str, len_a: float | None, len_b: float | None,
                 inconsistency: float | None) -> float:
        corrected = self.p_a(p_a, len_a, len_b, inconsistency)
        return corrected if chosen == "a" else 1.0 - corrected

    def length_line(self) -> str | None:
        """What the overlap says about length, in words (None when it has no pair of unequal lengths)."""
        if self.judge_longer is None or self.human_longer is None:
            return None
        line = (f"the judge prefers the longer response in {self.judge_longer:.0%} of {self.n_pairs} overlap pairs"
                + (f" ({self.judge_longer_all:.0%} of the {self.judged_pairs:,} it judged)"
                   if self.judge_longer_all is not None else "")
                + f", humans in {self.human_longer:.0%}")
        expected = self.expected_longer()
        if expected is not None:
            line += f" (a judge as often right with no taste for length: {expected:.0%})"
        return line


def _fit_covariates(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    if len(set(y.tolist())) < 2:  # one class only: no direction can be fitted, every label stays 0.5
        return np.zeros(x.shape[1])
    return LogisticRegression(C=1.0, fit_intercept=False).fit(x, y, sample_weight=w).coef_[0]


def _pair_log_loss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _log_loss(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    return float(np.average(_pair_log_loss(p, y), weights=w))


def fit_covariate_calibration(points: Sequence[dict[str, Any]],
                              lean: dict[str, Any] | None = None) -> CovariateCalibration | None:
    """Points: p_a, human, pair_id, len_a, len_b, inconsistency (and a weight) of one judge key; human ties are
    skipped. `lean`: the judge's preference for the longer response over every pair it judged (`pairs`,
    `longer`: `storage.calibration.judge_length_leans`). None with fewer than `MIN_COVARIATE_PAIRS` usable
    pairs."""
    usable = [p for p in points if p["human"] in ("a", "b")]
    if len(usable) < MIN_COVARIATE_PAIRS:
        return None
    x = np.array([covariate_vector(p["p_a"], p.get("len_a"), p.get("len_b"), p.get("inconsistency"))
                  for p in usable])
    y = np.array([int(p["human"] == "a") for p in usable])
    w = unit_mean([p.get("weight", 1.0) for p in usable], len(usable))
    coef = _fit_covariates(x, y, w)
    # Cross-fitted log-losses (folds by pair id, as for the ECE): the evidence that the covariates help.
    folds = np.array([int(hashlib.sha256(f"calibration-fold\x00{p['pair_id']}".encode()).hexdigest(), 16)
                      % CROSS_FIT_FOLDS for p in usable])
    covariate_p, platt_p = np.empty(len(usable)), np.empty(len(usable))
    judge_side = np.array([side(p["p_a"]) for p in usable])
    for fold in range(CROSS_FIT_FOLDS):
        held = folds == fold
        if not held.any():
            continue
        covariate_p[held] = 1.0 / (1.0 + np.exp(-(x[held] @ _fit_covariates(x[~held], y[~held], w[~held]))))
        own = 1.0 / (1.0 + np.exp(-np.abs(x[:, 0])))  # the judge's P for its side, as Platt reads it
        agrees = (judge_side == np.where(y == 1, "a", "b")).astype(int)
        method, params = fit_map(own[~held], agrees[~held], w[~held])
        g = np.asarray(apply_map(method, params, own[held]), dtype=float)
        platt_p[held] = np.where(judge_side[held] == "a", g, np.where(judge_side[held] == "b", 1.0 - g, 0.5))
    longer = np.sign(x[:, 1])
    differ = longer != 0
    judged = differ & (judge_side != "tie")
    gains = w * (_pair_log_loss(platt_p, y) - _pair_log_loss(covariate_p, y))
    sided = judge_side != "tie"
    return CovariateCalibration(
        {name: round(float(c), 6) for name, c in zip(COVARIATES, coef, strict=True)}, len(usable),
        float(np.mean((judge_side[judged] == "a") == (longer[judged] > 0))) if judged.any() else None,
        float(np.mean((y[differ] == 1) == (longer[differ] > 0))) if differ.any() else None,
        round(_log_loss(covariate_p, y, w), 5), round(_log_loss(platt_p, y, w), 5),
        round(float(gains.std(ddof=1) / np.sqrt(len(gains))), 5),
        float(np.mean(judge_side[sided] == np.where(y[sided] == 1, "a", "b"))) if sided.any() else None,
        int(differ.sum()), (lean or {}).get("pairs"), (lean or {}).get("longer"))


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


def fit_calibration(key: dict[str, Any], points: Sequence[dict[str, Any]],
                    lean: dict[str, Any] | None = None) -> Calibration:
    """Points: p_a, human, pair_id (and a weight, default 1) of one judge key. Judge ties and human ties carry
    no side and are skipped. `lean`: see `fit_covariate_calibration`."""
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
    calibration.covariate = fit_covariate_calibration(points, lean)
    return calibration


def calibrate(store: Store, *, save: bool = True) -> dict[str, Calibration]:
    """Fit (or refit) a calibration for every judge key of the store; by key id. Stored unless `save=False`."""
    points: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in db.calibration_pairs(store):
        points[(row["judge_spec"], row["template_version"], row["constitution_id"])].append(row)
    leans = {(r["judge_spec"], r["template_version"], r["constitution_id"]): r for r in db.judge_length_leans(store)}
    fitted = {}
    for key in db.judge_keys(store):
        named = (key["judge_spec"], key["template_version"], key["constitution_id"])
        calibration = fit_calibration(key, points[named], leans.get(named))
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
