"""The model card's metadata is huggingface_hub's: any base is named as `base_model`, the mix is the dataset, and
every evaluation is a result in `model-index`."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import ModelCard

from prefgen.train.card import DEFAULT_BASE_ID, SMOLLM2_ID, write_model_card
from prefgen.train.config import TrainConfig


def card_of(tmp_path, **kwargs) -> ModelCard:
    return ModelCard.load(write_model_card(tmp_path, **kwargs))


def local_base(tmp_path, name_or_path: str | None):
    base = tmp_path / "my-base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"_name_or_path": name_or_path} if name_or_path else {}))
    return str(base)


@pytest.mark.parametrize("base, expected", [
    (None, SMOLLM2_ID),  # the head method's base
    ("minilm", DEFAULT_BASE_ID),
    ("smollm2", SMOLLM2_ID),
    ("hub-named", "Qwen/Qwen2.5-0.5B"),
    ("unnamed", "PATH"),
])
def test_the_card_names_whatever_base_was_trained_as_base_model(tmp_path, base, expected):
    resolved = None
    if base == "hub-named":
        base = resolved = local_base(tmp_path, "Qwen/Qwen2.5-0.5B")
    elif base == "unnamed":
        base = resolved = expected = local_base(tmp_path, None)
    out = tmp_path / "rm"
    out.mkdir()
    train = {"config": TrainConfig(base=base).to_dict(), "base": resolved or "/site-packages/model"}
    assert card_of(out, train=train).data.base_model == expected


def test_every_evaluation_is_a_model_index_result_and_the_mix_is_the_dataset(tmp_path):
    evaluations = [{"at": "2026-12-05 10:00:00 UTC", "split": "heldout", "n_pairs": 3, "accuracy": 2 / 3,
                    "ci95": [0.5, 0.8], "html": str(tmp_path / "evals" / "b" / "eval.html")},
                   {"at": "2026-12-04 10:00:00 UTC", "split": "other.jsonl", "n_pairs": 30, "accuracy": 0.6,
                    "ci95": [0.45, 0.75], "html": str(tmp_path / "evals" / "a" / "eval.html")}]
    from prefgen.train.evaluate import compute_metrics

    newest = {**compute_metrics([1.0, 2.0, -1.0], [0.0, 0.0, 0.0]), "split": "heldout"}
    card = card_of(tmp_path, train={"config": TrainConfig().to_dict()}, data={"mix": {"name": "m1"}},
                   evaluation=newest, evaluations=evaluations)
    assert card.data.datasets == ["prefgen mix m1"]
    assert card.data.model_name == tmp_path.name
    results = [(r.dataset_split, r.metric_type, r.metric_value) for r in card.data.eval_results]
    ece = newest["calibration"]["ece"]
    # model-index groups the metrics of one dataset under one result
    assert results == [("heldout", "accuracy", 2 / 3), ("heldout", "ece", ece), ("other.jsonl", "accuracy", 0.6)]
    assert "model-index:" in (tmp_path / "README.md").read_text()


def test_a_card_without_evaluations_has_no_model_index(tmp_path):
    card = card_of(tmp_path, train={"config": TrainConfig().to_dict()})
    assert card.data.eval_results is None and "model-index" not in (tmp_path / "README.md").read_text()
    assert card.data.base_model == SMOLLM2_ID and card.data.library_name == "transformers"
