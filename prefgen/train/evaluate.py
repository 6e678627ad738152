"""Evaluation of a reward model against human preference labels.

The metric functions are pure: they take arrays of rewards of the human-chosen and human-rejected
responses (and optional tie flags, lengths and group labels) and need no model, so they are tested on
hand-made numbers. `evaluate_model` scores rows with a trained model, computes all of them, and writes
plots and a single `eval.html` (train/eval_page.py) into a folder of its own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from prefgen.intervals import mean_interval
from prefgen.train.common import SCORE_BATCH_SIZE
from prefgen.train.eval_report import EvalReport, is_tie, response_length

DEFAULT_TIE_MARGIN = 0.2  # |r_a - r_b| <= 0.2 means P(a better) within about 0.45-0.55
EVALS_DIR = "evals"  # MODEL/evals/<time>/: one folder per evaluation


def _arrays(r_chosen: Any, r_rejected: Any, ties: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rc, rr = np.asarray(r_chosen, dtype=float), np.asarray(r_rejected, dtype=float)
    if rc.shape != rr.shape:
        raise ValueError(f"{rc.shape[0]} chosen rewards but {rr.shape[0]} rejected rewards")
    tie = np.zeros(rc.shape, dtype=bool) if ties is None else np.asarray(ties, dtype=bool)
    return rc, rr, tie


def pairwise_correct(r_chosen: Any, r_rejected: Any) -> np.ndarray:
    """1 where the model prefers the human-chosen response, 0 where it prefers the other, 0.5 on a tie."""
    rc, rr, _ = _arrays(r_chosen, r_rejected)
    return (rc > rr) + 0.5 * (rc == rr)


def accuracy(r_chosen: Any, r_rejected: Any, ties: Any = None) -> float:
    """Agreement with the humans over the pairs they did not call a tie."""
    rc, rr, tie = _arrays(r_chosen, r_rejected, ties)
    correct = pairwise_correct(rc[~tie], rr[~tie])
    return float(correct.mean()) if correct.size else math.nan


def tie_report(r_chosen: Any, r_rejected: Any, ties: Any, tie_margin: float = DEFAULT_TIE_MARGIN) -> dict[str, Any]:
    """For pairs the humans called a tie: how often the model also rates them within `tie_margin`."""
    rc, rr, tie = _arrays(r_chosen, r_rejected, ties)
    close = np.abs(rc[tie] - rr[tie]) <= tie_margin
    return {
        "n_ties": int(tie.sum()),
        "tie_margin": tie_margin,
        "share_within_margin": float(close.mean()) if close.size else None,
    }


def mean_margin(r_chosen: Any, r_rejected: Any, ties: Any = None) -> float:
    rc, rr, tie = _arrays(r_chosen, r_rejected, ties)
    return float((rc[~tie] - rr[~tie]).mean()) if (~tie).any() else math.nan


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def calibration(r_chosen: Any, r_rejected: Any, ties: Any = None, n_bins: int = 10) -> dict[str, Any]:
    """Expected calibration error of P(chosen better) = sigmoid(r_chosen - r_rejected), and its bins.

    The model's prediction for a pair is the side it prefers, with confidence max(p, 1 - p) in [0.5, 1];
    confidences are binned in equal-width bins over [0.5, 1]. ECE = sum over bins of
    (bin size / n) * |accuracy in bin - mean confidence in bin|.
    """
    rc, rr, tie = _arrays(r_chosen, r_rejected, ties)
    p = sigmoid(rc[~tie] - rr[~tie])
    confidence = np.maximum(p, 1 - p)
    correct = pairwise_correct(rc[~tie], rr[~tie])
    index = np.minimum(((confidence - 0.5) / (0.5 / n_bins)).astype(int), n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        members = index == b
        n = int(members.sum())
        bin_conf = float(confidence[members].mean()) if n else None
        bin_acc = float(correct[members].mean()) if n else None
        if n:
            ece += n / confidence.size * abs(bin_acc - bin_conf)
        bins.append({"lo": 0.5 + b * 0.5 / n_bins, "hi": 0.5 + (b + 1) * 0.5 / n_bins, "n": n,
                     "confidence": bin_conf, "accuracy": bin_acc})
    return {"ece": float(ece) if confidence.size else math.nan, "n_bins": n_bins, "bins": bins}


def summarize(values: Any) -> dict[str, float]:
    values = np.asarray(values, dtype=float)
    q25, median, q75 = np.quantile(values, [0.25, 0.5, 0.75]) if values.size else (math.nan,) * 3
    return {
        "n": int(values.size),
        "mean": float(values.mean()) if values.size else math.nan,
        "std": float(values.std()) if values.size else math.nan,
        "min": float(values.min()) if values.size else math.nan,
        "q25": float(q25),
        "median": float(median),
        "q75": float(q75),
        "max": float(values.max()) if values.size else math.nan,
    }


def reward_distributions(r_chosen: Any, r_rejected: Any) -> dict[str, dict[str, float]]:
    rc, rr, _ = _arrays(r_chosen, r_rejected)
    return {"chosen": summarize(rc), "rejected": summarize(rr)}


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation, or None when either side is constant (undefined)."""
    if x.size < 2 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def length_bias(
    r_chosen: Any, r_rejected: Any, len_chosen: Any, len_rejected: Any, ties: Any = None
) -> dict[str, Any]:
    """Does the model reward length? Correlation of reward with response length over all responses, and
    how often the longer response of a pair wins under the model vs under the humans (pairs of unequal
    length that the humans did not call a tie)."""
    rc, rr, tie = _arrays(r_chosen, r_rejected, ties)
    lc, lr = np.asarray(len_chosen, dtype=float), np.asarray(len_rejected, dtype=float)
    unequal = (lc != lr) & ~tie
    chosen_longer = lc[unequal] > lr[unequal]
    model_prefers_chosen = rc[unequal] > rr[unequal]
    return {
        "pearson_reward_length": pearson(np.concatenate([lc, lr]), np.concatenate([rc, rr])),
        "n_unequal_length": int(unequal.sum()),
        "longer_wins_model": float((model_prefers_chosen == chosen_longer).mean()) if unequal.any() else None,
        "longer_wins_human": float(chosen_longer.mean()) if unequal.any() else None,
    }


def accuracy_by_group(r_chosen: Any, r_rejected: Any, groups: Sequence[Any], ties: Any = None) -> dict[str, Any]:
    """Accuracy per group label (data source, principle category); human ties are left out."""
    rc, rr, tie = _arrays(r_chosen, r_rejected, ties)
    labels = np.asarray(["unknown" if g is None else str(g) for g in groups], dtype=object)
    correct = pairwise_correct(rc, rr)
    report = {}
    for label in sorted(set(labels[~tie])):
        members = (labels == label) & ~tie
        report[label] = {"n": int(members.sum()), "accuracy": float(correct[members].mean())}
    return report


def compute_metrics(
    r_chosen: Any,
    r_rejected: Any,
    *,
    ties: Any = None,
    len_chosen: Any = None,
    len_rejected: Any = None,
    groups: Mapping[str, Sequence[Any]] | None = None,
    n_bins: int = 10,
    tie_margin: float = DEFAULT_TIE_MARGIN,
    seed: int = 0,
) -> dict[str, Any]:
    """Every metric of the evaluation report, as one JSON-able dict. The accuracy's interval is prefgen's one
    bootstrap (`prefgen.intervals.mean_interval`), as judge/human agreement's is; NaNs when nothing is scored."""
    rc, rr, tie = _arrays(r_chosen, r_rejected, ties)
    correct = pairwise_correct(rc[~tie], rr[~tie])
    metrics: dict[str, Any] = {
        "n_pairs": int(rc.size),
        "n_scored": int((~tie).sum()),
        "accuracy": accuracy(rc, rr, tie),
        "accuracy_ci95": list(mean_interval(correct, seed=seed) or (math.nan, math.nan)),
        "mean_margin": mean_margin(rc, rr, tie),
        "ties": tie_report(rc, rr, tie, tie_margin),
        "calibration": calibration(rc, rr, tie, n_bins),
        "rewards": reward_distributions(rc, rr),
    }
    if len_chosen is not None and len_rejected is not None:
        metrics["length_bias"] = length_bias(rc, rr, len_chosen, len_rejected, tie)
    metrics["groups"] = {name: accuracy_by_group(rc, rr, labels, tie) for name, labels in (groups or {}).items()}
    return metrics


# --- evaluating a trained model -------------------------------------------------------------------






def new_eval_dir(model_dir: str | Path) -> Path:
    """A new folder for one evaluation, `MODEL/evals/<UTC time>`: an evaluation never overwrites another."""
    root = Path(model_dir) / EVALS_DIR
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S")
    out, n = root / stamp, 1
    while out.exists():
        n += 1
        out = root / f"{stamp}-{n}"
    return out


def evaluate_model(
    model_dir: str | Path,
    rows: Sequence[dict[str, Any]],
    out_dir: str | Path | None = None,
    *,
    batch_size: int = SCORE_BATCH_SIZE,
    n_bins: int = 10,
    tie_margin: float = DEFAULT_TIE_MARGIN,
    seed: int = 0,
    plots: bool = True,
    context: Mapping[str, Mapping[str, Any]] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Score TRL preference rows with a model (or ensemble) and write eval.json, PNG plots (unless
    `plots=False`, for benchmarks) and eval.html to `out_dir` (default: a new `MODEL/evals/<time>` folder).

    `context` (section -> label -> value: the model, its training data, the evaluation set) heads the page and
    is kept in eval.json; `on_progress(done, total)` is called as pairs are scored.
    """
    from prefgen.train.eval_page import write_html, write_plots
    from prefgen.train.score import RewardEnsemble, load_reward_model

    from prefgen.train.score import score_pairs

    model = load_reward_model(model_dir)
    if on_progress is not None:
        on_progress(0, len(rows))
    chosen, rejected = score_pairs(model, rows, batch_size, on_progress)
    ties = np.array([is_tie(row) for row in rows], dtype=bool)
    groups = {key: [row.get(key) for row in rows] for key in ("source", "category") if any(key in r for r in rows)}
    metrics = compute_metrics(
        chosen.mean, rejected.mean, ties=ties,
        len_chosen=[response_length(row["chosen"]) for row in rows],
        len_rejected=[response_length(row["rejected"]) for row in rows],
        groups=groups, n_bins=n_bins, tie_margin=tie_margin, seed=seed,
    )
    if isinstance(model, RewardEnsemble):
        metrics["ensemble"] = ensemble_metrics(chosen.members, rejected.members, ties)
    out = Path(out_dir) if out_dir is not None else new_eval_dir(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = EvalReport(str(model_dir), len(rows), metrics, chosen.mean.tolist(), rejected.mean.tolist(),
                        context={k: dict(v) for k, v in (context or {}).items()})
    report.plots = write_plots(out, chosen.mean, rejected.mean, metrics["calibration"], rows) if plots else {}
    report.json_path = str(out / "eval.json")
    Path(report.json_path).write_text(json.dumps(_json_safe({"context": report.context, **metrics}), indent=2,
                                                 default=str))
    report.html_path = str(write_html(out / "eval.html", report))
    return report


def ensemble_metrics(chosen_members: np.ndarray, rejected_members: np.ndarray, ties: Any) -> dict[str, Any]:
    """Per-member accuracy, the conservative (min-reward) accuracy and the members' disagreement."""
    chosen_members, rejected_members = np.asarray(chosen_members), np.asarray(rejected_members)
    return {
        "n_members": int(chosen_members.shape[0]),
        "member_accuracy": [accuracy(c, r, ties) for c, r in zip(chosen_members, rejected_members)],
        "accuracy_min_reward": accuracy(chosen_members.min(axis=0), rejected_members.min(axis=0), ties),
        "mean_std": float(np.concatenate([chosen_members.std(axis=0), rejected_members.std(axis=0)]).mean()),
    }


def _json_safe(value: Any) -> Any:
    """NaN is not JSON: write null."""
    if isinstance(value, Mapping):
        return {key: _json_safe(sub) for key, sub in value.items()}
    if isinstance(value, list):
        return [_json_safe(sub) for sub in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
