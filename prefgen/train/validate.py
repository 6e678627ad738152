"""Models trained on all folds but one of a set of rows and scored on that fold: the evidence of `mix --auto`.

`fold_margins(rows, folds, config)` trains, for each fold, a model on the fold's training rows and returns its
margins r_chosen - r_rejected on the fold's validation rows (indices into the same `rows`: a mix search
validates on the human rows every candidate holds).

With the head method the base is frozen, so every fold shares one forward pass per sequence (the feature
cache) and a fold costs a head's training only: the heads are trained by `prefgen.train.regularise.fit_heads`,
the run's training without the Trainer around it, at the weight decay the run would use (chosen once, by
cross-validation on all the rows, when the config leaves it open). A search then takes seconds per candidate
where a RewardTrainer per fold took tens of seconds. Other methods train every fold through
`train_reward_model` (TRL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prefgen.errors import PrefgenError
from prefgen.train.config import TrainConfig

Fold = tuple[Sequence[int], Sequence[int]]  # (training rows, validation rows), indices into the rows


@dataclass
class FoldMargins:
    margins: list[np.ndarray]  # per fold: the margins of its validation rows, in their order
    decay: dict[str, Any] | None = None  # the weight decay choice the heads were trained with (head method)
    weight_decay: float | None = None


def fold_margins(rows: Sequence[dict[str, Any]], folds: Sequence[Fold], config: TrainConfig) -> FoldMargins:
    """Train on each fold's training rows, score its validation rows (TRL rows, scored as chosen vs
    rejected whatever their p_chosen)."""
    if config.method != "head":
        return _trained_folds(rows, folds, config)
    return _head_folds(rows, folds, config)


def _trained_folds(rows: Sequence[dict[str, Any]], folds: Sequence[Fold], config: TrainConfig) -> FoldMargins:
    from prefgen.train.trainer import train_reward_model

    out = []
    for train, val in folds:
        result = train_reward_model([rows[i] for i in train], config, score_rows=[_certain(rows[i]) for i in val],
                                    save=False)
        out.append(np.array([c - r for c, r in result.scores], dtype=float))
    return FoldMargins(out, weight_decay=config.weight_decay)


def _certain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("p_chosen", "weight")}


def _head_folds(rows: Sequence[dict[str, Any]], folds: Sequence[Fold], config: TrainConfig) -> FoldMargins:
    import torch
    from transformers import set_seed

    from prefgen.train.common import feature_precision, pick_device, quiet_libraries
    from prefgen.train.config import resolve_base
    from prefgen.train.data import build_preference_dataset
    from prefgen.train.head import feature_cache, feature_rows, head_spec
    from prefgen.train.regularise import fit_heads, margins, pair_table, _Copies
    from prefgen.train.trainer import (choose_decay, head_steps, head_threads, load_base_model, load_tokenizer,
                                       prompt_groups, sides)

    quiet_libraries()  # a search loads the base once per candidate: their bars would fill the terminal
    base = resolve_base(config.base)
    tokenizer = load_tokenizer(base)
    config = config.for_tokenizer(tokenizer)
    dataset, report = build_preference_dataset(rows, tokenizer, config.max_length, config.use_margin,
                                               soft=config.loss == "soft", starts=True)
    if len(dataset) != len(rows):
        raise PrefgenError(f"{report['n_dropped_identical']} rows have identical sides after truncation to "
                           f"{config.max_length} tokens: raise --max-length or leave them out")
    device = pick_device()
    set_seed(config.seed)
    model = load_base_model(base, tokenizer, config.pooling)
    spec = head_spec(model, tokenizer.pad_token_id)
    cache = feature_cache(base, device.device, spec.pooling, feature_precision(config.precision, device.device))
    cache.add(model, spec, sides(dataset), tokenizer.pad_token_id, device.device)
    groups = prompt_groups(dataset)
    indexed = cache.index_dataset(dataset)
    features = cache.table()
    spec.fit(features[feature_rows([indexed])])
    with head_threads(device):
        decay = None
        if config.weight_decay is None:
            decay = choose_decay(spec, features, [indexed], groups, config)
            config = config.model_copy(update={"weight_decay": decay.chosen})
        table = pair_table([indexed], groups)
        copies = _Copies(spec)
        prepared = copies.prepare(features)
        out = []
        for f, (train, val) in enumerate(folds):
            train_index = torch.tensor(list(train), dtype=torch.long)
            params = fit_heads(copies, prepared, table, train_index, weight_decays=[config.weight_decay],
                               lr=config.lr, batch_size=config.batch_size * config.grad_accum,
                               steps=head_steps(config, len(train)), scheduler=config.scheduler,
                               warmup_ratio=config.warmup_ratio,
                               generator=torch.Generator().manual_seed(config.seed * 1000 + f))
            out.append(margins(copies, params, prepared, table, torch.tensor(list(val), dtype=torch.long))[0].numpy())
    return FoldMargins(out, decay.record() if decay is not None else None, config.weight_decay)


def margin_scale(margins: Sequence[float] | np.ndarray) -> float:
    """The s >= 0 that maximises sum log sigmoid(s * m) over margins m of pairs oriented so that m > 0 ranks the
    humans' side higher (0 when no s > 0 helps): sigmoid(s * m) is then the models' calibrated P(that side
    better). Models trained on folds rank well before their margins mean probabilities; one scale, fitted on
    labelled pairs, maps them."""
    from scipy.optimize import minimize_scalar

    m = np.asarray(margins, dtype=float)
    if not len(m) or not np.any(m):
        return 0.0
    spread = float(np.abs(m).max())
    result = minimize_scalar(lambda s: float(np.logaddexp(0.0, -s * m).sum()), bounds=(0.0, 50.0 / spread),
                             method="bounded")
    return float(result.x)
