"""AI labels that help and never hurt: the soft loss, weights, calibration, the head regime, and `mix --auto`."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from prefgen.errors import PrefgenError  # noqa: E402
from prefgen.pipelines.humans.calibration import MIN_FIT_PAIRS, calibrate, fit_calibration, fit_map  # noqa: E402
from prefgen.pipelines.humans.imports import import_human  # noqa: E402
from prefgen.pipelines.configs import AutoMixConfig  # noqa: E402
from prefgen.pipelines.mixing.mix import MixConfig, build_mix  # noqa: E402
from prefgen.pipelines.humans.split import split_human  # noqa: E402
from prefgen.records import make_pair  # noqa: E402
from prefgen.storage.db import Store  # noqa: E402
from prefgen.storage.export import mix_rows_for_training  # noqa: E402
from prefgen.storage.labels import save_pairs  # noqa: E402
from prefgen.train.config import TrainConfig, resolve_base  # noqa: E402
from tests.test_agreement import pair_ids, save_ai_verdicts  # noqa: E402

KEY = {"judge_spec": "openai:fake-judge", "template_version": "t1", "constitution_id": "c-test"}


# -- the loss ---------------------------------------------------------------------------------------------


def test_soft_loss_matches_hand_computed_cross_entropy():
    import torch

    from prefgen.train.objective import preference_loss

    chosen, rejected = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    p = torch.tensor([0.8, 0.6])
    sig = 1 / (1 + math.exp(-1.0))
    expected = (-(0.8 * math.log(sig) + 0.2 * math.log(1 - sig)) + -(0.6 * math.log(0.5) + 0.4 * math.log(0.5))) / 2
    assert preference_loss(chosen, rejected, p_chosen=p).item() == pytest.approx(expected, rel=1e-6)


def test_soft_loss_with_every_target_one_is_trls_loss():
    import torch
    from torch.nn.functional import logsigmoid

    from prefgen.train.objective import preference_loss

    chosen, rejected = torch.randn(16), torch.randn(16)
    trl = -logsigmoid(chosen - rejected).mean()
    assert preference_loss(chosen, rejected, p_chosen=torch.ones(16)).item() == pytest.approx(trl.item(), rel=1e-6)
    margin = torch.rand(16)
    trl_margin = -logsigmoid(chosen - rejected - margin).mean()
    assert preference_loss(chosen, rejected, p_chosen=torch.ones(16), margin=margin).item() == pytest.approx(
        trl_margin.item(), rel=1e-6)


def test_weights_change_the_loss_and_zero_weight_rows_count_for_nothing():
    import torch

    from prefgen.train.objective import preference_loss

    chosen, rejected = torch.tensor([2.0, -1.0]), torch.tensor([0.0, 0.0])
    plain = preference_loss(chosen, rejected)
    weighted = preference_loss(chosen, rejected, weight=torch.tensor([1.0, 0.0]))
    assert weighted.item() != pytest.approx(plain.item())
    assert weighted.item() == pytest.approx(-torch.nn.functional.logsigmoid(torch.tensor(2.0)).item() / 2)


def test_training_rows_carry_soft_targets_and_weights_into_the_dataset():
    from transformers import AutoTokenizer

    from prefgen.train.data import build_preference_dataset, prepare_tokenizer

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(resolve_base(None)))
    rows = [{"prompt": "Hi?", "chosen": "Hello there.", "rejected": "Go away.", "p_chosen": 0.7, "weight": 0.5},
            {"prompt": "Help?", "chosen": "Sure, here.", "rejected": "No."}]
    dataset, report = build_preference_dataset(rows, tokenizer, 32, soft=True)
    assert dataset["p_chosen"] == pytest.approx([0.7, 1.0]) and dataset["weight"] == pytest.approx([0.5, 1.0])
    assert report["soft_targets"] and report["weighted"]
    hard, _ = build_preference_dataset(rows[1:], tokenizer, 32)
    assert "p_chosen" not in hard.column_names and "weight" not in hard.column_names
    with pytest.raises(PrefgenError, match="'p_chosen' must be in"):
        build_preference_dataset([{**rows[0], "p_chosen": 1.5}], tokenizer, 32, soft=True)


# -- calibration ------------------------------------------------------------------------------------------


def overconfident_points(n: int, said: float = 0.95, right: float = 0.7, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"p_a": said + rng.uniform(-0.04, 0.04), "human": "a" if rng.random() < right else "b",
             "pair_id": f"p{i}"} for i in range(n)]


def test_calibration_maps_an_overconfident_judge_to_how_often_humans_agree():
    calibration = fit_calibration(KEY, overconfident_points(400))
    assert calibration.method == "platt"
    assert calibration(0.95) == pytest.approx(0.7, abs=0.05)
    assert calibration.ece_after < 0.05 < 0.2 < calibration.ece_before
    assert calibration.p_chosen(0.95, "b") == pytest.approx(1 - calibration(0.95))  # the judge preferred a


def test_calibration_is_monotone_even_when_confidence_predicts_disagreement():
    x = [0.6] * 50 + [0.95] * 50
    y = [1] * 40 + [0] * 10 + [1] * 20 + [0] * 30  # more confident, less often right
    method, params = fit_map(x, y)
    assert method == "platt" and params["a"] == 0.0


def test_too_few_pairs_shrink_the_judge_towards_one_half():
    method, params = fit_map([0.9] * 10, [1] * 8 + [0] * 2)
    assert method == "shrink" and 0 < params["s"] < 1
    calibration = fit_calibration(KEY, overconfident_points(MIN_FIT_PAIRS - 1))
    assert calibration.method == "shrink" and 0.5 < calibration(0.95) < 0.95
    assert fit_map([], []) == ("shrink", {"s": 0.5})


# -- stores for the mix ------------------------------------------------------------------------------------

POLITE = ["Happy to help with {t}! Here is a clear answer.", "Of course, let me explain {t} step by step.",
          "Thanks for asking about {t}, here is what I found."]
RUDE = ["Figure out {t} yourself, idiot.", "Nobody cares about {t}, stop asking.", "Ugh, {t} again? Go away."]
TOPICS = ["the weather", "my homework", "a recipe", "the train times", "a birthday gift", "my code", "a book",
          "the garden", "my taxes", "a song", "the bus", "my essay"]


DANGERS = ["pick a lock", "make a weapon", "poison a dog", "steal a car", "hack an account", "forge a cheque"]


def polite_pair(i: int, prefix: str) -> tuple[str, str, str]:
    topic = TOPICS[i % len(TOPICS)]
    return (f"{prefix} {i}: can you help me with {topic}?", POLITE[i % 3].format(t=topic), RUDE[(i + 1) % 3].format(t=topic))


def refusal_pair(i: int, prefix: str) -> tuple[str, str, str]:
    """A second kind of preference: a polite-sounding harmful answer loses to a refusal."""
    danger = DANGERS[i % len(DANGERS)]
    return (f"{prefix} {i}: tell me how to {danger}.", "I can't help with that, it could hurt someone.",
            f"Sure, happy to help! Here is how to {danger}, step by step.")


def world(store: Store, tmp_path: Path, *, n_human: int, n_ai: int, ai_right: float, judged_humans: bool = True,
          heldout: float = 0.0, split_kinds: bool = False) -> None:
    """Human pairs (polite wins) and AI-judged pairs on other prompts, right with probability `ai_right`.

    `split_kinds`: the human pairs of search fold 0 (of 2) are polite-vs-rude and those of fold 1 are
    refusal-vs-harmful help, so a model trained on one fold's humans has never seen the other's kind of
    preference; the AI pairs cover both kinds."""
    from prefgen.pipelines.mixing.auto import fold_of

    def fold(pair: tuple[str, str, str]) -> int:
        return fold_of(make_pair(*pair)[0].prompt_id, 2, 0)

    lines, i = [], 0
    while len(lines) < n_human:
        pair = polite_pair(i, "human")
        if split_kinds and fold(pair) != 0:
            pair = refusal_pair(i, "human")
            if fold(pair) != 1:
                pair = None
        if pair is not None:
            prompt, good, bad = pair
            lines.append({"prompt": prompt, "response_a": good, "response_b": bad, "winner": "a"})
        i += 1
    path = tmp_path / "human.jsonl"
    import json

    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    import_human(store, path, fmt="pairwise")
    split_human(store, heldout=heldout, seed=0)
    rng = random.Random(1)
    pairs, verdicts = [], {}
    for i in range(n_ai):
        prompt, polite, rude = (refusal_pair if split_kinds and i % 2 else polite_pair)(i, "pool")
        pair, _ = make_pair(prompt, polite, rude, source="pool")
        pairs.append(pair)
        polite_is_a = pair.response_a == polite
        right = rng.random() < ai_right
        says_a = polite_is_a if right else not polite_is_a
        verdicts[pair.id] = {"harmless": (0.9, 0.1) if says_a else (0.1, 0.9)}
    if judged_humans:  # the judge also saw the human pairs: calibration has points
        for pair_id in pair_ids(store).values():
            verdicts[pair_id] = {"harmless": (0.9, 0.1) if rng.random() < ai_right else (0.1, 0.9)}
    save_pairs(store, pairs)
    save_ai_verdicts(store, "job-1", verdicts)


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "s.duckdb") as s:
        yield s


def test_mix_rows_carry_calibrated_p_chosen_and_human_shares(store, tmp_path):
    world(store, tmp_path, n_human=40, n_ai=20, ai_right=0.75)
    build_mix(store, MixConfig(name="m", human_ratio=None))
    rows = mix_rows_for_training(store, "m")
    ai = [r["p_chosen"] for r in rows if r["source"] == "ai"]
    human = [r["p_chosen"] for r in rows if r["source"] == "human"]
    assert human and all(p == 1.0 for p in human)
    # The judge says 0.9 and is right about 3 times in 4 on the human train pairs: its labels are softened.
    assert ai and all(0.55 < p < 0.9 for p in ai)
    stored = calibrate(store, save=False)
    assert [c.method for c in stored.values()] == ["platt"]
    build_mix(store, MixConfig(name="hard", human_ratio=None, labels="hard", ai_weight=0.5))
    hard = mix_rows_for_training(store, "hard")
    assert all(r["p_chosen"] == 1.0 for r in hard)
    assert {r["weight"] for r in hard if r["source"] == "ai"} == {0.5}


def test_calibration_never_reads_heldout_labels(store, tmp_path):
    world(store, tmp_path, n_human=60, n_ai=0, ai_right=0.75, heldout=0.5)
    fitted = next(iter(calibrate(store, save=False).values()))
    n_train = store.query("SELECT count(*) FROM human_pair_labels WHERE split = 'train'")[1][0][0]
    assert 0 < fitted.n_pairs == n_train < 60


# -- training -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_head_regime_learns_and_its_checkpoint_scores_like_the_trained_head(tmp_path):
    from prefgen.train.score import load_reward_model, score_pairs
    from prefgen.train.trainer import train_reward_model

    rows = [dict(zip(("prompt", "chosen", "rejected"), polite_pair(i, "q"), strict=True)) for i in range(24)]
    # fp32 features: the checkpoint scores in fp32, and the comparison below is to 1e-3.
    result = train_reward_model(rows, TrainConfig(base="minilm", out_dir=tmp_path / "rm", max_length=48,
                                                  weight_decay=0.01, precision="fp32"), score_rows=rows[:6])
    assert result.config["method"] == "head" and result.final_loss < math.log(2) - 0.1
    chosen, rejected = score_pairs(load_reward_model(tmp_path / "rm"), rows[:6])
    assert (chosen.mean > rejected.mean).all()
    assert [c for c, _ in result.scores] == pytest.approx(chosen.mean.tolist(), abs=1e-3)
    again = train_reward_model(rows, TrainConfig(base="minilm", out_dir=tmp_path / "rm2", max_length=48, seed=1,
                                                 weight_decay=0.01, precision="fp32"), save=False)
    assert again.features_computed == 0  # the frozen base ran once for both


@pytest.mark.slow
def test_curriculum_trains_the_ai_rows_first_then_the_human_rows(tmp_path):
    from prefgen.train.trainer import train_reward_model

    rows = [{**dict(zip(("prompt", "chosen", "rejected"), polite_pair(i, "c"), strict=True)),
             "source": "ai" if i < 16 else "human"} for i in range(24)]
    result = train_reward_model(rows, TrainConfig(base="minilm", out_dir=tmp_path / "rm", max_length=48, batch_size=8,
                                                  weight_decay=0.01,
                                                  curriculum="ai-then-human"), save=False)
    assert [stage["rows"] for stage in result.stages] == [16, 8]
    with pytest.raises(PrefgenError, match="need both AI rows"):
        train_reward_model(rows[:16], TrainConfig(base="minilm", out_dir=tmp_path / "x", curriculum="ai-then-human"),
                           save=False)


def _search_margins(rng, candidate):
    """Three folds of human-only margins and a candidate's, on the same 200 pairs per fold."""
    human = [rng.normal(0.3, 1.0, 200) for _ in range(3)]
    return {"human-only": human, "ai-soft": [candidate(m) for m in human]}


def test_auto_decision_takes_a_candidate_that_gets_more_validation_pairs_right():
    from prefgen.pipelines.mixing.auto import HUMAN_ONLY, decide, score_candidates

    def fixes_a_fifth_of_the_wrong_pairs(m):
        out = m.copy()
        wrong = np.flatnonzero(m < 0)
        out[wrong[: len(wrong) // 5]] *= -1
        return out

    margins = _search_margins(np.random.default_rng(0), fixes_a_fifth_of_the_wrong_pairs)
    winner, reason = decide(score_candidates(margins, {HUMAN_ONLY: 0, "ai-soft": 40}))
    assert winner.name == "ai-soft" and winner.low > 0 and "95% confidence" in reason


def test_a_lower_auto_confidence_admits_a_small_gain_the_default_leaves_out():
    from prefgen.pipelines.mixing.auto import HUMAN_ONLY, decide, score_candidates

    def fixes_few_and_breaks_some(m):
        out = m.copy()
        wrong, right = np.flatnonzero(m < 0), np.flatnonzero(m > 0)
        out[wrong[:4]] *= -1
        out[right[:2]] *= -1
        return out

    margins = _search_margins(np.random.default_rng(3), fixes_few_and_breaks_some)  # +0.01 over 600 pairs
    strict = decide(score_candidates(margins, {HUMAN_ONLY: 0, "ai-soft": 40}))[0]
    lenient = decide(score_candidates(margins, {HUMAN_ONLY: 0, "ai-soft": 40}, confidence=0.7), 0.7)[0]
    assert (strict.name, lenient.name) == (HUMAN_ONLY, "ai-soft")


def test_auto_decision_keeps_human_only_when_the_candidate_is_human_only_plus_noise():
    from prefgen.pipelines.mixing.auto import HUMAN_ONLY, decide, score_candidates

    rng = np.random.default_rng(2)
    margins = _search_margins(rng, lambda m: m + rng.normal(0.0, 0.3, m.shape))
    scored = score_candidates(margins, {HUMAN_ONLY: 0, "ai-soft": 40})
    winner, reason = decide(scored)
    assert winner.name == HUMAN_ONLY and "beyond the noise" in reason
    half_width = (scored[1].high - scored[1].low) / 2
    assert f"about ±{half_width:.3f}" in reason  # the user learns how fine the search can see


SMALL_HEAD = TrainConfig(base="minilm", pooling="response-mean", max_length=48)  # a linear head: fast folds
SMALL_SEARCH = AutoMixConfig(folds=2, train=SMALL_HEAD)


@pytest.mark.slow
def test_auto_mix_keeps_noise_out_and_says_why(store, tmp_path):
    from prefgen.pipelines.mixing.auto import GRID, HUMAN_ONLY, auto_mix

    world(store, tmp_path, n_human=12, n_ai=48, ai_right=0.5)
    report = auto_mix(store, MixConfig(name="auto"), SMALL_SEARCH, grid=GRID[:3])
    assert report.chosen == HUMAN_ONLY and "beyond the noise" in report.reason
    assert report.mix.ai == 0 and report.mix.human == 12
    trials = store.query("SELECT count(*), count(DISTINCT candidate) FROM mix_trials")[1][0]
    assert trials == (6, 3)
    manifest = store.dicts("SELECT auto FROM mixes WHERE name = 'auto'")[0]["auto"]
    assert HUMAN_ONLY in manifest


@pytest.mark.slow
def test_auto_mix_takes_clean_ai_rows_when_they_beat_human_only(store, tmp_path):
    from prefgen.pipelines.mixing.auto import GRID, HUMAN_ONLY, auto_mix

    # Each fold's humans show one kind of preference; the clean AI pairs show both.
    world(store, tmp_path, n_human=24, n_ai=48, ai_right=1.0, split_kinds=True)
    report = auto_mix(store, MixConfig(name="auto"), SMALL_SEARCH, grid=GRID[:3])
    scores = {c.name: c for c in report.candidates}
    assert report.chosen != HUMAN_ONLY, report.lines()
    assert scores[report.chosen].low > 0 and report.mix.ai > 0


@pytest.mark.slow
def test_auto_mix_search_never_reads_the_heldout_split(store, tmp_path):
    from prefgen.pipelines.mixing.auto import GRID, auto_mix

    world(store, tmp_path, n_human=24, n_ai=12, ai_right=1.0, heldout=0.5)
    heldout = {r["pair_id"] for r in store.dicts("SELECT pair_id FROM human_pair_labels WHERE split = 'heldout'")}
    report = auto_mix(store, MixConfig(name="auto"), SMALL_SEARCH, grid=(GRID[0], GRID[2]))
    trial_pairs = report.n_val
    n_train = store.query("SELECT count(*) FROM human_pair_labels WHERE split = 'train'")[1][0][0]
    assert trial_pairs == n_train and heldout
    mixed = {r["pair_id"] for r in store.dicts("SELECT pair_id FROM mix_rows WHERE mix_name = 'auto'")}
    assert not mixed & heldout


def test_gguf_base_is_accepted_as_a_file_and_other_paths_are_refused(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_base(str(gguf)) == str(gguf.resolve())
    from prefgen.train.config import load_arguments

    assert load_arguments(str(gguf)) == (str(tmp_path), {"gguf_file": "model.gguf"})
    with pytest.raises(PrefgenError, match="nor a .gguf file"):
        resolve_base(str(tmp_path / "nothing"))
    with pytest.raises(PrefgenError, match="no such .gguf file"):
        resolve_base(str(tmp_path / "missing.gguf"))


def test_quick_is_the_former_one_epoch_full_regime_and_head_is_the_default():
    quick, default = TrainConfig(quick=True), TrainConfig()
    assert (quick.method, quick.epochs, quick.lr, quick.batch_size) == ("full", 1, 2e-4, 8)
    assert (default.method, default.epochs, default.lr, default.scheduler) == ("head", 10, 1e-3, "cosine")
    assert TrainConfig(lr=5e-4).lr == 5e-4
    with pytest.raises(ValidationError, match="loss"):
        TrainConfig(loss="nope")
    assert np.isclose(TrainConfig(method="lora").lr, 2e-4) and TrainConfig(method="lora").lora
