"""Frozen-base features at the machine's speed: bf16 where it is native, a time estimate, blocks kept as they
are done, and SmolLM2 as the head method's default base."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from prefgen.train.config import TrainConfig, default_base_path, resolve_base  # noqa: E402
from tests.test_head_decay import polite_rows  # noqa: E402


def cpu_flags() -> set[str]:
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
        return set(next((line for line in cpuinfo if line.startswith("flags")), "").split())


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="reads the CPU flags from /proc/cpuinfo")
def test_auto_precision_is_bf16_exactly_where_the_cpu_has_native_bf16():
    from prefgen.train.common import feature_precision

    native = bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
    assert feature_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert feature_precision("fp32", "cpu") == "fp32" and feature_precision("bf16", "cpu") == "bf16"


def test_the_head_method_defaults_to_smollm2_and_minilm_stays_by_name():
    assert TrainConfig().base == "smollm2" and TrainConfig().precision == "auto"
    assert TrainConfig(method="full").base == "minilm" and TrainConfig(method="lora").base == "minilm"
    assert resolve_base("minilm") == str(default_base_path()) == resolve_base(None)
    assert resolve_base("smollm2").endswith(".gguf")


def test_the_time_estimate_is_said_once_after_a_few_seconds_of_work():
    from prefgen.train.head import FeatureClock, duration_words

    clock = FeatureClock(total_tokens=1000, after_s=0.0)
    first = clock.after_batch(100)
    assert first is not None and first.endswith(" s")
    assert clock.after_batch(100) is None  # said once
    assert FeatureClock(total_tokens=100, after_s=0.0).after_batch(100) is None  # nothing left to estimate
    assert FeatureClock(total_tokens=1000, after_s=60.0).after_batch(100) is None  # too early to tell
    assert (duration_words(30), duration_words(600), duration_words(3 * 3600)) == ("30 s", "10 min", "3.0 h")


def test_a_feature_pass_that_dies_keeps_the_blocks_it_finished(tmp_path):
    import torch

    from prefgen.train.head import FeatureCache, HeadSpec

    calls = []

    def extract(ids, mask, starts):
        calls.append(len(ids))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user gives up on the third batch
        return ids.float()[:, :1].repeat(1, 4)

    spec = HeadSpec(extract=extract, modules=[], apply=lambda x: x)
    sequences = [((i + 1, i + 2, i + 3), 1) for i in range(96)]
    cache = FeatureCache(tmp_path / "features")
    with pytest.raises(KeyboardInterrupt):
        cache.add(torch.nn.Identity(), spec, sequences, pad_token_id=0, device="cpu", block_size=32)
    again = FeatureCache(tmp_path / "features")  # what the next run reads
    assert len(again.rows) == 64  # two batches of 32 were done and kept; the third is computed next time
    calls.clear()
    assert again.add(torch.nn.Identity(), spec, sequences, pad_token_id=0, device="cpu") == 32


@pytest.mark.slow
def test_bf16_features_are_cached_apart_from_fp32_and_train_the_same_head(tmp_path, monkeypatch):
    import numpy as np

    from prefgen.train import head
    from prefgen.train.trainer import train_reward_model

    monkeypatch.setenv("PREFGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(head, "_CACHES", {})
    rows, held = polite_rows(24, "b"), polite_rows(8, "h")
    runs = {precision: train_reward_model(rows, TrainConfig(base="minilm", pooling="response-mean", max_length=48,
                                                            weight_decay=0.01, precision=precision),
                                          score_rows=held, save=False)
            for precision in ("fp32", "bf16")}
    assert {r.features_precision for r in runs.values()} == {"fp32", "bf16"}
    assert all(r.features_computed == 48 for r in runs.values())  # neither read the other's features
    assert len(list((tmp_path / "cache" / "features").iterdir())) == 2
    fp32, bf16 = (head._CACHES[key].table() for key in sorted(head._CACHES, key=lambda k: k[3], reverse=True))
    cosine = torch_cosine(fp32, bf16)
    assert cosine.min() > 0.99 and not np.allclose(fp32.numpy(), bf16.numpy())
    margins = {p: np.array([c - r for c, r in run.scores]) for p, run in runs.items()}
    assert ((margins["fp32"] > 0) == (margins["bf16"] > 0)).all()


def torch_cosine(a, b):
    import torch

    return torch.nn.functional.cosine_similarity(a, b, dim=1)
