"""Loading trained reward models (single or ensemble) and scoring responses with them.

Scoring encodes exactly like training (`prefgen.train.data.encode_responses`): same special tokens,
same EOS, and the same truncation, which keeps the end of the response rather than its start.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prefgen.errors import PrefgenError
from prefgen.train.data import encode_responses, normalize_row, pad_batch, prepare_tokenizer
from prefgen.train.common import ENSEMBLE_MANIFEST, SCORE_BATCH_SIZE, TRAIN_RECORD, pick_device, quiet_libraries

DEFAULT_MAX_LENGTH = 512  # a model prefgen did not train, whose config gives no length


@dataclass
class RewardModel:
    model: Any
    tokenizer: Any
    path: Path
    max_length: int
    device: str
    bf16: bool


@dataclass
class RewardEnsemble:
    members: list[RewardModel]
    path: Path


@dataclass
class Scores:
    """Rewards of N responses from K models (K = 1 for a single model)."""

    members: np.ndarray  # (K, N)
    mean: np.ndarray  # (N,) the reward to use
    min: np.ndarray  # (N,) conservative reward: the least optimistic member
    std: np.ndarray  # (N,) disagreement between members (0 for one model)

    @property
    def reward(self) -> np.ndarray:
        return self.mean


def aggregate_member_scores(member_scores: Sequence[Sequence[float]] | np.ndarray) -> Scores:
    """Mean, min and (population) standard deviation over members, per response."""
    members = np.atleast_2d(np.asarray(member_scores, dtype=float))
    return Scores(members=members, mean=members.mean(axis=0), min=members.min(axis=0), std=members.std(axis=0))


def is_ensemble_dir(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_MANIFEST).is_file()


def load_reward_model(path: str | Path, device: str | None = None) -> RewardModel | RewardEnsemble:
    """A model directory written by `train_reward_model` (or any one-output sequence classifier), or an
    ensemble directory with an `ensemble.json` manifest."""
    quiet_libraries()
    path = Path(path)
    if is_ensemble_dir(path):
        manifest = json.loads((path / ENSEMBLE_MANIFEST).read_text())
        members = [_load_single(path / member["dir"], device) for member in manifest["members"]]
        return RewardEnsemble(members=members, path=path)
    return _load_single(path, device)


def _load_single(path: Path, device: str | None) -> RewardModel:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from prefgen.train.pooled import register

    register()  # response-mean reward models load through the Auto classes without remote code
    if not (path / "config.json").is_file():
        raise PrefgenError(f"{path}: not a reward model directory (no config.json, no {ENSEMBLE_MANIFEST})")
    choice = pick_device()
    device = device or choice.device
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(path))  # a saved model: never a .gguf
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32)
    if model.config.num_labels != 1:
        raise PrefgenError(f"{path}: a reward model has one output, this one has {model.config.num_labels}")
    model.config.pad_token_id = tokenizer.pad_token_id
    model.to(device).eval()
    return RewardModel(model, tokenizer, path, _max_length(path, model), device, choice.bf16 and device == "cuda")


def _max_length(path: Path, model: Any) -> int:
    """The training max_length when prefgen trained it, else what the model's positions allow."""
    record = path / TRAIN_RECORD
    if record.is_file():
        return int(json.loads(record.read_text())["config"]["max_length"])
    return int(getattr(model.config, "max_position_embeddings", DEFAULT_MAX_LENGTH) or DEFAULT_MAX_LENGTH)


def score_texts(
    model: RewardModel | RewardEnsemble,
    prompts: Sequence[Any],
    responses: Sequence[Any],
    batch_size: int = SCORE_BATCH_SIZE,
    on_progress: Callable[[int, int], None] | None = None,
) -> Scores:
    """Reward of each (prompt, response); prompts and responses are text or message lists.
    `on_progress(done, total)` is called after every batch, counting (member, response) scores."""
    members = model.members if isinstance(model, RewardEnsemble) else [model]
    total = len(members) * len(responses)
    scored = []
    for k, member in enumerate(members):
        offset = k * len(responses)
        report = (lambda done, offset=offset: on_progress(offset + done, total)) if on_progress else None
        scored.append(_score_one_model(member, prompts, responses, batch_size, report))
    return aggregate_member_scores(scored)


def score_pairs(
    model: RewardModel | RewardEnsemble, rows: Sequence[dict[str, Any]], batch_size: int = SCORE_BATCH_SIZE,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[Scores, Scores]:
    """Scores of the chosen and of the rejected side of TRL preference rows; `on_progress(pairs done, pairs)`
    after every batch."""
    pairs = [normalize_row(i, row) for i, row in enumerate(rows)]
    prompts = [p.prompt for p in pairs]
    # One call for both sides: length-sorted batches then mix chosen and rejected of similar length.
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    n = len(pairs)
    report = (lambda done, total: on_progress(done * n // total, n)) if on_progress and n else None
    scores = score_texts(model, prompts + prompts, responses, batch_size, report)
    n = len(pairs)
    return _slice(scores, 0, n), _slice(scores, n, 2 * n)


def _slice(scores: Scores, start: int, stop: int) -> Scores:
    return aggregate_member_scores(scores.members[:, start:stop])


def _score_one_model(
    rm: RewardModel, prompts: Sequence[Any], responses: Sequence[Any], batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    import torch

    from prefgen.train.pooled import PrefgenRewardModel, response_mask

    encoded, starts = encode_responses(rm.tokenizer, prompts, responses, rm.max_length)
    pooled = isinstance(rm.model, PrefgenRewardModel)
    # Sorting by length makes each batch pad to nearly its own length.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    rewards = np.empty(len(encoded), dtype=float)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        input_ids, attention_mask = pad_batch([encoded[i] for i in index], rm.tokenizer.pad_token_id, rm.device)
        # A response-mean head reads the response's tokens only, as in training.
        extra = {"response_mask": response_mask(attention_mask, torch.tensor([starts[i] for i in index]))
                 } if pooled else {}
        with torch.inference_mode(), torch.autocast(rm.device, dtype=torch.bfloat16, enabled=rm.bf16):
            logits = rm.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits[:, 0]
        rewards[index] = logits.float().cpu().numpy()
        if on_batch is not None:
            on_batch(start + len(index))
    return rewards
