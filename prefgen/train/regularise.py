"""The reward head's weight decay, chosen for its data by cross-validation on the training rows.

Why: over a frozen base the head is a linear model of a few hundred features, trained on anything from a
few dozen pairs to thousands. How hard it must be held back depends on that number, and no fixed value
suits both ends (MEASURED below): a decay that keeps 25 pairs from being memorised throws away what 1,300
pairs could teach.

How: the training rows are cut into `FOLDS` folds by prompt (no prompt on both sides of a cut). For every
value of the grid, the head is trained on all folds but one with the settings the run itself trains with:
AdamW at the run's learning rate and schedule, its batch size, the steps `stage_config` gives that many
pairs, the soft loss and the row weights, on the cached features. Its margins r_chosen - r_rejected on the
fold left out are kept. `fit_heads` is that training without the Trainer around it, one copy of the head
per value trained side by side on the same batches (`torch.func.vmap`): a choice takes folds x grid fits,
and setting up a RewardTrainer alone takes seconds. The model itself is then trained by TRL's
RewardTrainer with the value chosen.

Criterion: the out-of-fold log-likelihood of the rows' labels (p_chosen, weighted) under
sigmoid(s * margin), with one scale s fitted per grid value. Agreement with humans depends on the direction
of the head only; a decay also shrinks its scale, which would otherwise dominate a plain log-loss. The
chosen value is the best by that criterion (on ties, the stronger decay).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# The grid spans what AdamW's decoupled decay can do to a head trained for 100-400 steps at lr 1e-3:
# from nothing (0.01) to holding every weight near 1/decay (100).
WEIGHT_DECAY_GRID = (0.01, 0.1, 1.0, 3.0, 10.0, 30.0, 100.0)
FOLDS = 5
MIN_ROWS = 2 * FOLDS  # fewer rows cannot be cut into folds that each train and score something


@dataclass
class DecayChoice:
    """The weight decay chosen for a run, and the evidence (what the run record and the model card show)."""

    chosen: float
    grid: list[float]
    criterion: list[float]  # out-of-fold log-loss per row (scale fitted) per grid value: lower is better
    accuracy: list[float]  # out-of-fold share of rows whose margin takes the label's side, per grid value
    folds: int
    rows: int
    seconds: float = 0.0
    note: str = ""

    def record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PairTable:
    """Training rows as indices into a feature table, with their soft targets, weights and prompt groups."""

    chosen: Any  # LongTensor (n,)
    rejected: Any
    p_chosen: Any  # FloatTensor (n,)
    weight: Any
    groups: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.groups)


def pair_table(datasets: Sequence[Any], groups: Sequence[str]) -> PairTable:
    """The rows of indexed datasets (`FeatureCache.index_dataset`) as one table: rows without a `p_chosen`
    are certain (1), rows without a `weight` weigh 1."""
    import torch

    def column(dataset: Any, name: str, default: float) -> list[float]:
        return list(dataset[name]) if name in dataset.column_names else [default] * len(dataset)

    return PairTable(
        torch.tensor([ids[0] for d in datasets for ids in d["chosen_ids"]]),
        torch.tensor([ids[0] for d in datasets for ids in d["rejected_ids"]]),
        torch.tensor([p for d in datasets for p in column(d, "p_chosen", 1.0)], dtype=torch.float32),
        torch.tensor([w for d in datasets for w in column(d, "weight", 1.0)], dtype=torch.float32),
        list(groups))


def fold_of(group: str, folds: int, seed: int) -> int:
    digest = hashlib.sha256(f"decay-fold\x00{seed}\x00{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % folds


class _Copies:
    """G copies of a head, trained side by side: `rewards(params, x)` gives each copy's rewards for the same
    features. A head that is one Linear module over fixed inputs (`HeadSpec.linear_inputs`, the default
    response-mean head) is one (G, H) matrix product; any other head is called through `torch.func.vmap`."""

    def __init__(self, spec: Any) -> None:
        import torch

        self.linear = spec.linear_inputs is not None and len(spec.modules) == 1 \
            and isinstance(spec.modules[0], torch.nn.Linear)
        if self.linear:
            self.inputs, self.module = spec.linear_inputs, spec.modules[0]
            return

        class Wrapper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.parts = torch.nn.ModuleList(spec.modules)

            def forward(self, x: Any) -> Any:
                return spec.apply(x).squeeze(-1)

        self.module = Wrapper()

    def params(self, copies: int) -> dict[str, Any]:
        return {name: p.detach().clone().unsqueeze(0).repeat(copies, *[1] * p.ndim).requires_grad_(True)
                for name, p in self.module.named_parameters()}

    def prepare(self, features: Any) -> Any:
        """What `rewards` reads for these features (the fixed inputs of a linear head, computed once)."""
        if not self.linear:
            return features
        import torch

        with torch.no_grad():
            return self.inputs(features)

    def rewards(self, params: dict[str, Any], x: Any) -> Any:
        """(G, B) rewards of the G copies for the (B, ...) prepared features `x`."""
        if self.linear:
            out = params["weight"][:, 0, :] @ x.T  # one output: weight (G, 1, H)
            return out + params["bias"][:, 0, None] if "bias" in params else out
        from torch.func import functional_call, vmap

        return vmap(lambda p: functional_call(self.module, p, (x,)))(params)


def fit_heads(head: _Copies, features: Any, table: PairTable, rows: Any, *, weight_decays: Sequence[float],
              lr: float, batch_size: int, steps: int, scheduler: str, warmup_ratio: float, generator: Any) -> Any:
    """Train one copy of the head per weight decay on `rows` (indices into `table`), all on the same batches,
    as the run's trainer would train one: AdamW with decoupled decay on weights (not on biases or norms, as
    transformers does), the run's schedule, shuffled batches epoch after epoch. Returns their parameters,
    stacked (copy g first)."""
    from prefgen.train.common import torch_threads

    with torch_threads(1):  # small ops: see `torch_threads`
        return _train_copies(head, features, table, rows, weight_decays, lr=lr, batch_size=batch_size, steps=steps,
                             scheduler=scheduler, warmup_ratio=warmup_ratio, generator=generator)


def _train_copies(head: _Copies, features: Any, table: PairTable, rows: Any, weight_decays: Sequence[float], *,
                  lr: float, batch_size: int, steps: int, scheduler: str, warmup_ratio: float,
                  generator: Any) -> Any:
    import torch
    from transformers import get_scheduler

    from prefgen.train.objective import preference_loss

    g = len(weight_decays)
    params = head.params(g)
    decays = torch.tensor(weight_decays, dtype=torch.float32)
    # AdamW without decay, and the decoupled decay applied by hand before each step (as AdamW does), one
    # rate per copy: a parameter group per copy would need a tensor per copy.
    optimiser = torch.optim.Adam(list(params.values()), lr=lr)
    schedule = get_scheduler(scheduler, optimiser, num_warmup_steps=math.ceil(steps * warmup_ratio),
                             num_training_steps=steps)
    order, position = rows[torch.randperm(len(rows), generator=generator)], 0
    for _ in range(steps):
        if position >= len(order):
            order, position = rows[torch.randperm(len(rows), generator=generator)], 0
        batch = order[position : position + batch_size]
        position += batch_size
        rewards = head.rewards(params, features[torch.cat([table.chosen[batch], table.rejected[batch]])])
        chosen, rejected = rewards.chunk(2, dim=1)
        # Every copy's mean loss, summed: one backward pass gives each copy its own gradient.
        loss = g * preference_loss(chosen.flatten(), rejected.flatten(), p_chosen=table.p_chosen[batch].repeat(g),
                                   weight=table.weight[batch].repeat(g))
        optimiser.zero_grad()
        loss.backward()
        with torch.no_grad():
            rate = optimiser.param_groups[0]["lr"]
            for p in params.values():
                if p.ndim >= 3:  # a weight matrix per copy; biases and norms are not decayed
                    p.mul_((1.0 - rate * decays).view(g, *[1] * (p.ndim - 1)))
        optimiser.step()
        schedule.step()
    return {name: p.detach() for name, p in params.items()}


def margins(head: _Copies, params: dict[str, Any], features: Any, table: PairTable, rows: Any) -> Any:
    """(G, rows) margins r_chosen - r_rejected of the stacked heads."""
    import torch

    with torch.no_grad():
        rewards = head.rewards(params, features[torch.cat([table.chosen[rows], table.rejected[rows]])])
    chosen, rejected = rewards.chunk(2, dim=1)
    return (chosen - rejected).double()


def scaled_log_loss(margin: Any, p: Any, weight: Any) -> float:
    """min over s >= 0 of the weighted mean cross-entropy between p and sigmoid(s * margin)."""
    from scipy.optimize import minimize_scalar

    m, p, w = (x.double().numpy() for x in (margin, p, weight))

    def loss(s: float) -> float:
        z = s * m
        return float((w * (p * _softplus(-z) + (1 - p) * _softplus(z))).sum() / w.sum())

    spread = float(abs(m).max()) or 1.0
    return float(minimize_scalar(loss, bounds=(0.0, 50.0 / spread), method="bounded").fun)


def _softplus(z: Any) -> Any:
    import numpy as np

    return np.logaddexp(0.0, z)


def choose_weight_decay(spec: Any, features: Any, table: PairTable, *, steps_for: Any, lr: float,
                        batch_size: int, scheduler: str, warmup_ratio: float, seed: int,
                        grid: Sequence[float] = WEIGHT_DECAY_GRID, folds: int = FOLDS) -> DecayChoice:
    """Cross-validate the grid on the rows of `table`; the head's modules are left as they were (the copies
    are trained on parameters taken from them).

    `steps_for(n)`: the optimiser steps the run takes on n pairs (`stage_config`), so that each fold trains
    for as long as the run would on that many pairs."""
    import time

    import torch

    started = time.perf_counter()
    n = len(table)
    table = _canonical(table)
    fold = torch.tensor([fold_of(g, folds, seed) for g in table.groups])
    if n < MIN_ROWS or len(set(fold.tolist())) < 2:
        return DecayChoice(max(grid), list(grid), [], [], folds, n, note=f"{n} rows are too few to cross-validate "
                           f"({MIN_ROWS} needed): the strongest decay of the grid")
    head = _Copies(spec)
    features = head.prepare(features)
    splits = [((fold != f).nonzero().squeeze(1), (fold == f).nonzero().squeeze(1)) for f in sorted(set(fold.tolist()))]
    steps = [steps_for(len(train)) for train, _ in splits]
    key = _content_key(features, table, [lr, batch_size, scheduler, warmup_ratio, seed, list(grid), folds, steps])
    if key in _CHOSEN:
        return DecayChoice(**{**_CHOSEN[key].record(), "seconds": 0.0, "note": "the same rows were cross-validated "
                              "earlier in this process"})
    out_of_fold = torch.zeros(len(grid), n, dtype=torch.float64)
    for f, ((train, held), fold_steps) in enumerate(zip(splits, steps, strict=True)):
        params = fit_heads(head, features, table, train, weight_decays=grid, lr=lr, batch_size=batch_size,
                           steps=fold_steps, scheduler=scheduler, warmup_ratio=warmup_ratio,
                           generator=torch.Generator().manual_seed(seed * 1000 + f))
        out_of_fold[:, held] = margins(head, params, features, table, held)
    criterion = [scaled_log_loss(out_of_fold[g], table.p_chosen, table.weight) for g in range(len(grid))]
    accuracy = [float(((out_of_fold[g] > 0) == (table.p_chosen > 0.5)).double().mean()) for g in range(len(grid))]
    best = min(range(len(grid)), key=lambda g: (round(criterion[g], 6), -grid[g]))
    choice = DecayChoice(grid[best], list(grid), [round(c, 5) for c in criterion], [round(a, 4) for a in accuracy],
                         folds, n, round(time.perf_counter() - started, 2))
    if len(_CHOSEN) >= _MEMO:
        _CHOSEN.pop(next(iter(_CHOSEN)))
    _CHOSEN[key] = choice
    return choice


# A mix search cross-validates the rows of each candidate, and training the chosen mix then meets the same
# rows again (in another order): the choice is kept for the process, by content. Rows are put in a canonical
# order first, so that the choice does not depend on the order they came in.
_CHOSEN: dict[str, DecayChoice] = {}
_MEMO = 64


def _canonical(table: PairTable) -> PairTable:
    import torch

    order = sorted(range(len(table)), key=lambda i: (int(table.chosen[i]), int(table.rejected[i]),
                                                      float(table.p_chosen[i]), float(table.weight[i])))
    index = torch.tensor(order, dtype=torch.long)
    return PairTable(table.chosen[index], table.rejected[index], table.p_chosen[index], table.weight[index],
                     [table.groups[i] for i in order])


def _content_key(features: Any, table: PairTable, settings: list[Any]) -> str:
    """A digest of what a choice depends on: the prepared features of the rows, their targets, weights and
    groups, and the training settings."""
    import torch

    digest = hashlib.blake2b(digest_size=16)
    rows = torch.cat([table.chosen, table.rejected])
    digest.update(features[rows].contiguous().numpy().tobytes())
    for tensor in (table.p_chosen, table.weight):
        digest.update(tensor.contiguous().numpy().tobytes())
    digest.update(repr((table.groups, settings)).encode())
    return digest.hexdigest()
