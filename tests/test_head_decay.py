"""The reward head's weight decay, chosen by cross-validation on the training rows, and the fast head fits
that cross-validation (and `mix --auto`) train."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from prefgen.train.config import TrainConfig  # noqa: E402
from tests.test_soft_labels import polite_pair  # noqa: E402


def polite_rows(n: int, prefix: str) -> list[dict[str, str]]:
    return [dict(zip(("prompt", "chosen", "rejected"), polite_pair(i, prefix), strict=True)) for i in range(n)]


def linear_world(n: int, *, signal_dims: int, dims: int = 64, noise: float = 0.0, seed: int = 0):
    """A linear head over random features whose preferences follow `signal_dims` of the `dims` dimensions."""
    import torch

    from prefgen.train.head import HeadSpec
    from prefgen.train.regularise import PairTable

    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(2 * n, dims, generator=generator)
    truth = torch.zeros(dims)
    truth[:signal_dims] = 1.0
    score = (features[:n] - features[n:]) @ truth + noise * torch.randn(n, generator=generator)
    first_wins = score > 0
    chosen = torch.where(first_wins, torch.arange(n), torch.arange(n, 2 * n))
    rejected = torch.where(first_wins, torch.arange(n, 2 * n), torch.arange(n))
    head = torch.nn.Linear(dims, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    spec = HeadSpec(extract=None, modules=[head], apply=head, linear_inputs=lambda x: x)
    table = PairTable(chosen, rejected, torch.ones(n), torch.ones(n), [f"prompt-{i}" for i in range(n)])
    return spec, features, table


def choose(spec, features, table, **overrides):
    from prefgen.train.regularise import choose_weight_decay

    settings = {"steps_for": lambda n: max(100, -(-n // 32) * 10), "lr": 1e-3, "batch_size": 32,
                "scheduler": "cosine", "warmup_ratio": 0.1, "seed": 0, **overrides}
    return choose_weight_decay(spec, features, table, **settings)


def test_cross_validation_leaves_a_clear_signal_unshrunk_and_scores_every_value():
    from prefgen.train.regularise import WEIGHT_DECAY_GRID

    spec, features, table = linear_world(600, signal_dims=4)
    choice = choose(spec, features, table)
    assert choice.grid == list(WEIGHT_DECAY_GRID) and len(choice.criterion) == len(WEIGHT_DECAY_GRID)
    # Four informative dimensions of 64: the strongest decay pins every weight near the same size and lets
    # the 60 noise dimensions in as much as the four; the search sees that on the folds.
    assert choice.chosen < max(WEIGHT_DECAY_GRID)
    assert min(choice.criterion) < choice.criterion[-1] - 0.01
    assert choice.accuracy[choice.grid.index(choice.chosen)] > choice.accuracy[-1]


def test_the_choice_does_not_depend_on_the_order_of_the_rows_and_is_reused():
    import torch

    from prefgen.train.regularise import PairTable

    spec, features, table = linear_world(200, signal_dims=8, noise=2.0, seed=1)
    first = choose(spec, features, table)
    order = torch.randperm(len(table), generator=torch.Generator().manual_seed(5))
    shuffled = PairTable(table.chosen[order], table.rejected[order], table.p_chosen[order], table.weight[order],
                         [table.groups[i] for i in order.tolist()])
    again = choose(spec, features, shuffled)
    assert again.chosen == first.chosen and again.criterion == first.criterion
    assert "cross-validated earlier" in again.note and again.seconds == 0.0
    other_seed = choose(spec, features, shuffled, seed=1)
    assert other_seed.note == ""  # other folds: a new search


def test_too_few_rows_take_the_strongest_decay_and_say_so():
    spec, features, table = linear_world(6, signal_dims=2)
    choice = choose(spec, features, table)
    assert choice.chosen == max(choice.grid) and "too few to cross-validate" in choice.note


def test_the_head_copies_keep_the_heads_own_parameters_untouched():
    import torch

    spec, features, table = linear_world(100, signal_dims=4, seed=2)
    torch.nn.init.constant_(spec.modules[0].weight, 0.25)
    choose(spec, features, table)
    assert torch.all(spec.modules[0].weight == 0.25)


@pytest.mark.slow
def test_training_without_a_weight_decay_chooses_one_and_records_it_in_the_run_and_the_card(tmp_path):
    from prefgen.train.card import write_model_card
    from prefgen.train.regularise import WEIGHT_DECAY_GRID
    from prefgen.train.trainer import train_reward_model

    config = TrainConfig(base="minilm", pooling="response-mean", out_dir=tmp_path / "rm", max_length=48)
    assert config.weight_decay is None  # the head regime leaves it to cross-validation
    result = train_reward_model(polite_rows(30, "d"), config)
    search = result.weight_decay_search
    assert search["chosen"] in WEIGHT_DECAY_GRID and search["rows"] == 30 and search["folds"] == 5
    assert result.config["weight_decay"] == search["chosen"]
    record = json.loads((tmp_path / "rm" / "prefgen_train.json").read_text())
    assert record["config"]["weight_decay"] == search["chosen"]
    assert record["weight_decay_search"]["criterion"] == search["criterion"]
    card = write_model_card(tmp_path / "rm", train=record).read_text()
    assert f"weight decay {search['chosen']:g}, chosen by 5-fold cross-validation" in card
    fixed = train_reward_model(polite_rows(30, "d"), config.model_copy(update={"weight_decay": 0.3}), save=False)
    assert fixed.weight_decay_search is None and fixed.config["weight_decay"] == 0.3


@pytest.mark.slow
def test_a_fast_head_fit_learns_what_the_reward_trainer_learns(tmp_path):
    """The fits cross-validation and `mix --auto` train stand for TRL's RewardTrainer at the same settings."""
    import numpy as np

    from prefgen.train.trainer import train_reward_model
    from prefgen.train.validate import fold_margins

    rows, held = polite_rows(40, "f"), polite_rows(12, "g")
    config = TrainConfig(base="minilm", pooling="response-mean", max_length=48, weight_decay=0.1)
    trained = train_reward_model(rows, config, score_rows=held, save=False)
    trl = np.array([c - r for c, r in trained.scores])
    fast = fold_margins([*rows, *held], [(range(40), range(40, 52))], config).margins[0]
    assert (fast > 0).all() and (trl > 0).all()
    assert np.corrcoef(fast, trl)[0, 1] > 0.9
    assert fast.mean() == pytest.approx(trl.mean(), rel=0.3)
