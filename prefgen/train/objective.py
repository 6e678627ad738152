"""The reward-model objective: Bradley-Terry with soft targets, per-row weights and margins.

TRL's `RewardTrainer` (1.16) trains `-log sigmoid(r_chosen - r_rejected [- margin])`, i.e. it treats every
pair as certain. The RLAIF recipe (Lee et al. 2023) trains on the judge's preference *distribution*: with
`p` the probability that `chosen` is better, the loss is the cross-entropy between that target and the
model's Bradley-Terry probability sigmoid(r_chosen - r_rejected):

    -(p log sigmoid(d) + (1 - p) log sigmoid(-d)),   d = r_chosen - r_rejected - margin

With p = 1 (and weight 1) this is exactly TRL's loss. Weights scale each row's term and the batch loss is
the mean over the batch of the weighted terms (not a weighted mean: that would renormalise a batch of
down-weighted rows back to full strength), so a row of weight 0.5 counts half as much as one of weight 1.

torch is imported inside the function: importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any


def preference_loss(
    rewards_chosen: Any,
    rewards_rejected: Any,
    *,
    p_chosen: Any = None,
    weight: Any = None,
    margin: Any = None,
) -> Any:
    """Weighted mean of the (soft) Bradley-Terry loss over a batch of pairs; every argument a 1-D tensor."""
    from torch.nn.functional import logsigmoid

    d = rewards_chosen - rewards_rejected
    if margin is not None:
        d = d - margin
    if p_chosen is None:
        per_pair = -logsigmoid(d)
    else:
        p = p_chosen.to(d.dtype)
        per_pair = -(p * logsigmoid(d) + (1.0 - p) * logsigmoid(-d))
    if weight is None:
        return per_pair.mean()
    return (weight.to(d.dtype) * per_pair).mean()
