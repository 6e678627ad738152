"""A judge's labels calibrated with covariates on the overlap (human pairs it also judged): a length-biased
judge's soft labels corrected, in the mix as `--labels corrected`, and what `mix --auto` does with them."""

from __future__ import annotations

import math
import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from prefgen.pipelines.humans.calibration import (MIN_COVARIATE_PAIRS, fit_calibration,  # noqa: E402
                                                  fit_covariate_calibration)
from prefgen.pipelines.mixing.mix import MixConfig, build_mix  # noqa: E402
from prefgen.storage.export import mix_rows_for_training  # noqa: E402
from tests.test_soft_labels import KEY, store, world  # noqa: E402, F401


def overlap(n: int, *, length_bias: float, right: float = 0.8, humans_prefer_longer: float = 0.42,
            seed: int = 0) -> list[dict]:
    """Overlap points of a judge that picks the longer response with probability `length_bias`, else the
    humans' side with probability `right`; it says 0.8 for its side either way."""
    rng = random.Random(seed)
    points = []
    for i in range(n):
        long, short = rng.randint(200, 900), rng.randint(20, 150)
        a_longer = rng.random() < 0.5
        len_a, len_b = (long, short) if a_longer else (short, long)
        human_longer = rng.random() < humans_prefer_longer
        human = "a" if human_longer == a_longer else "b"
        if rng.random() < length_bias:
            judge = "a" if a_longer else "b"
        else:
            judge = human if rng.random() < right else ("b" if human == "a" else "a")
        points.append({"pair_id": f"p{i}", "p_a": 0.8 if judge == "a" else 0.2, "human": human, "len_a": len_a,
                       "len_b": len_b, "inconsistency": 0.0})
    return points


def test_calibration_with_covariates_undoes_a_judge_that_prefers_the_longer_response():
    points = overlap(2000, length_bias=0.3)
    corrected = fit_covariate_calibration(points)
    # The judge's "a" when a is the longer is worth less than its "a" when a is the shorter (module docstring:
    # about 0.59 and 0.85 for this judge).
    says_longer = corrected.p_a(0.8, 600, 60, 0.0)
    says_shorter = corrected.p_a(0.8, 60, 600, 0.0)
    assert says_longer == pytest.approx(0.59, abs=0.06) and says_shorter == pytest.approx(0.85, abs=0.06)
    platt = fit_calibration(KEY, points)
    assert platt(0.8) == pytest.approx(0.69, abs=0.04)  # the map of the judge's P alone: one value for both
    assert corrected.log_loss < corrected.platt_log_loss - 0.02  # cross-fitted: the covariates earn their keep
    assert corrected.judge_longer == pytest.approx(0.62, abs=0.04)
    assert corrected.human_longer == pytest.approx(0.42, abs=0.04)
    line = corrected.length_line()
    assert line.startswith(f"the judge prefers the longer response in {corrected.judge_longer:.0%} of 2000 overlap")
    assert line.endswith(f"humans in {corrected.human_longer:.0%}")


def test_an_honest_judges_labels_keep_their_direction_whatever_the_length():
    corrected = fit_covariate_calibration(overlap(2000, length_bias=0.0, humans_prefer_longer=0.5, seed=1))
    says_longer, says_shorter = corrected.p_a(0.8, 600, 60, 0.0), corrected.p_a(0.8, 60, 600, 0.0)
    assert says_longer == pytest.approx(says_shorter, abs=0.06) and says_longer == pytest.approx(0.8, abs=0.05)
    # Either way round, the map is the same: a and b are names, not positions.
    assert corrected.p_a(0.2, 60, 600, 0.0) == pytest.approx(1 - says_longer, abs=1e-9)


def test_order_inconsistent_verdicts_count_for_less():
    points = overlap(1500, length_bias=0.0, humans_prefer_longer=0.5, seed=2)
    rng = random.Random(3)
    for p in points:  # half the verdicts flipped with the order, and those are coin flips
        if rng.random() < 0.5:
            p["inconsistency"] = 1.0
            p["p_a"] = 0.8 if rng.random() < 0.5 else 0.2
    corrected = fit_covariate_calibration(points)
    assert corrected.p_a(0.8, 300, 300, 1.0) < corrected.p_a(0.8, 300, 300, 0.0) - 0.15


def test_too_few_overlap_pairs_fit_no_covariates():
    assert fit_covariate_calibration(overlap(MIN_COVARIATE_PAIRS - 1, length_bias=0.3)) is None
    small = fit_covariate_calibration(overlap(MIN_COVARIATE_PAIRS, length_bias=0.3))
    assert small is not None and all(math.isfinite(c) for c in small.coef.values())


def test_a_mix_with_corrected_labels_carries_them_and_says_how_they_were_fitted(store, tmp_path):  # noqa: F811
    world(store, tmp_path, n_human=40, n_ai=20, ai_right=0.75)
    build_mix(store, MixConfig(name="soft", human_ratio=None))
    build_mix(store, MixConfig(name="corrected", human_ratio=None, labels="corrected"))
    soft = {r["pair_id"]: r["p_chosen"] for r in mix_rows_for_training(store, "soft") if r["source"] == "ai"}
    corrected = {r["pair_id"]: r["p_chosen"] for r in mix_rows_for_training(store, "corrected")
                 if r["source"] == "ai"}
    assert soft.keys() == corrected.keys() and soft != corrected
    assert all(0.0 < p < 1.0 for p in corrected.values())
    manifest = store.dicts("SELECT counts FROM mixes WHERE name = 'corrected'")[0]["counts"]
    import json

    (applied,) = json.loads(manifest)["calibration"].values()
    assert applied["covariate"]["n_pairs"] == 40 and set(applied["covariate"]["coef"]) == {
        "judge_logit", "length", "judge_logit_x_inconsistency"}
