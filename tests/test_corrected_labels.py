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
    assert f"humans in {corrected.human_longer:.0%} (a judge as often right with no taste for length: 4" in line


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


# -- mix --auto with a judge that prefers the longer response ----------------------------------------------

CONCISE = ["Yes: {t} is fine, but check the label first.", "No, {t} is not safe for children.",
           "Ask a pharmacist about {t}; it depends on the dose."]
RAMBLING = ["Well, there are a great many things one could say about {t}, and honestly it depends on so many "
            "factors that I could not possibly list them all here, so maybe just try it and see what happens.",
            "Great question about {t}! People have argued about {t} for years and years, and opinions differ "
            "widely, so whatever you decide will probably be fine in the end, I would think, more or less."]


def length_world(store, tmp_path, *, n_human: int, n_ai: int) -> None:
    """Humans prefer the concise, right answer in 70% of pairs and a long, right one in the rest; the judge
    prefers the longer response every time (it is right only where the long answer is the good one)."""
    import json

    from prefgen.pipelines.humans.imports import import_human
    from prefgen.pipelines.humans.split import split_human
    from prefgen.records import make_pair
    from prefgen.storage.labels import save_pairs
    from tests.test_agreement import save_ai_verdicts

    topics = ["aspirin", "bleach", "a ladder", "a space heater", "raw eggs", "a chainsaw", "ibuprofen", "mould"]

    def pair(i: int, prefix: str) -> tuple[str, str, str]:
        topic = f"{topics[i % len(topics)]} #{i}"
        concise, rambling = CONCISE[i % 3].format(t=topic), RAMBLING[i % 2].format(t=topic)
        good_is_short = i % 10 < 7
        bad = rambling if good_is_short else "No idea."
        good = concise if good_is_short else rambling
        return f"{prefix} {i}: is {topic} safe?", good, bad

    humans = [pair(i, "human") for i in range(n_human)]
    path = tmp_path / "human.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "response_a": g, "response_b": b, "winner": "a"}) + "\n"
                            for p, g, b in humans), encoding="utf-8")
    import_human(store, path, fmt="pairwise")
    split_human(store, heldout=0.0, seed=0)
    pairs, verdicts = [], {}
    for prompt, good, bad in [*humans, *(pair(i, "pool") for i in range(n_ai))]:
        canonical, _ = make_pair(prompt, good, bad, source="pool")
        pairs.append(canonical)
        a_longer = len(canonical.response_a) > len(canonical.response_b)
        verdicts[canonical.id] = {"harmless": (0.9, 0.1) if a_longer else (0.1, 0.9)}
    save_pairs(store, pairs)
    save_ai_verdicts(store, "job-1", verdicts)


def test_the_length_bias_test_flags_a_judge_that_leans_to_the_longer_response_beyond_its_errors(store,  # noqa: F811
                                                                                                tmp_path):
    from prefgen.pipelines.humans.calibration import calibrate

    length_world(store, tmp_path, n_human=40, n_ai=80)
    (calibration,) = calibrate(store, save=False).values()
    corrected = calibration.covariate
    assert corrected.judge_longer_all == 1.0 and corrected.human_longer == pytest.approx(0.3)
    excess, z = corrected.length_bias()
    # Right only when the long answer is the good one (about 30%): an honest judge that often right would
    # prefer the longer response about 0.3 * 0.3 + 0.7 * 0.7 = 58% of the time, not always.
    assert excess > 0.25 and z > 3 and corrected.length_biased(0.95)
    assert "(a judge as often right with no taste for length: 5" in corrected.length_line() \
        or "(a judge as often right with no taste for length: 6" in corrected.length_line()


def test_an_honest_judge_is_not_flagged_for_leaning_as_far_as_its_errors_take_it():
    # Humans prefer the longer response in 42% of pairs; a judge right 70% of the time, at random, prefers it
    # in 0.7 * 0.42 + 0.3 * 0.58 = 47% of all the pairs it judges.
    corrected = fit_covariate_calibration(overlap(100, length_bias=0.0, right=0.7, seed=4),
                                          {"pairs": 1200, "longer": 0.468})
    assert abs(corrected.length_bias()[1]) < 1.65 and not corrected.length_biased(0.95)


def scored(name: str, n_ai: int, ll_delta: float, ll_low: float, ll_high: float, vs_default_low=None):
    from prefgen.pipelines.mixing.auto import CandidateScore

    return CandidateScore(name, 0.6, ll_delta, ll_low, ll_high, n_ai, log_lik=-0.6, ll_delta=ll_delta,
                          ll_low=ll_low, ll_high=ll_high, vs_default_low=vs_default_low)


def test_an_unbiased_judges_soft_labels_go_in_unless_human_only_beats_them_beyond_the_noise():
    from prefgen.pipelines.mixing.auto import HUMAN_ONLY, decide

    human = scored(HUMAN_ONLY, 0, 0.0, 0.0, 0.0)
    unclear = [human, scored("ai-soft", 700, 0.02, -0.03, 0.07), scored("ai-corrected", 700, 0.03, -0.02, 0.08, 0.0)]
    winner, reason = decide(unclear, 0.95, biased=False)
    assert winner.name == "ai-soft" and "default way in" in reason
    worse = [human, scored("ai-soft", 700, -0.05, -0.09, -0.01), scored("ai-hard", 700, -0.04, -0.08, -0.01, -0.02)]
    assert decide(worse, 0.95, biased=False)[0].name == HUMAN_ONLY
    beaten = [human, scored("ai-soft", 700, 0.02, -0.03, 0.07), scored("ai-corrected", 700, 0.06, 0.01, 0.1, 0.01)]
    assert decide(beaten, 0.95, biased=False)[0].name == "ai-corrected"


def test_a_biased_judge_gets_in_only_corrected_and_only_beyond_the_noise():
    from prefgen.pipelines.mixing.auto import HUMAN_ONLY, decide

    human = scored(HUMAN_ONLY, 0, 0.0, 0.0, 0.0)
    soft_looks_best = [human, scored("ai-soft", 700, 0.08, 0.02, 0.12), scored("ai-corrected", 700, 0.03, -0.02, 0.08)]
    winner, reason = decide(soft_looks_best, 0.95, biased=True)
    assert winner.name == HUMAN_ONLY and "only corrected labels may enter" in reason
    clear = [human, scored("ai-soft", 700, 0.08, 0.02, 0.12), scored("ai-corrected", 700, 0.05, 0.01, 0.09)]
    assert decide(clear, 0.95, biased=True)[0].name == "ai-corrected"


@pytest.mark.slow
def test_mix_auto_says_in_one_line_that_the_judge_prefers_longer_responses(store, tmp_path):  # noqa: F811
    from prefgen.pipelines.configs import AutoMixConfig
    from prefgen.pipelines.mixing.auto import auto_mix
    from prefgen.train.config import TrainConfig

    length_world(store, tmp_path, n_human=30, n_ai=60)
    search = AutoMixConfig(folds=2, train=TrainConfig(base="minilm", pooling="response-mean", max_length=64))
    report = auto_mix(store, MixConfig(name="auto"), search)
    assert report.saw.startswith("the judge prefers the longer response in 100% of 30 overlap pairs (100% of the 90")
    assert "humans in" in report.saw and ": a length bias beyond its errors, " in report.saw
    assert {c.name for c in report.candidates} == {"human-only", "ai-corrected", "ai-corrected-half-weight"}
    assert report.chosen in ("human-only", "ai-corrected", "ai-corrected-half-weight")
    manifest = store.dicts("SELECT auto FROM mixes WHERE name = 'auto'")[0]["auto"]
    import json

    assert json.loads(manifest)["saw"] == report.saw
    assert report.saw in "\n".join(report.lines())
