"""What an evaluation of a reward model produces (`EvalReport`), and the small facts about its rows that both
the metrics (`train.evaluate`) and the page drawn from them (`train.eval_page`) read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


PLOT_FILES = {
    "reliability": "eval_reliability.png",
    "rewards": "eval_rewards.png",
    "length": "eval_length.png",
}


@dataclass
class EvalReport:
    model_dir: str
    n_pairs: int
    metrics: dict[str, Any]
    r_chosen: list[float] = field(repr=False)
    r_rejected: list[float] = field(repr=False)
    plots: dict[str, str] = field(default_factory=dict)
    html_path: str = ""
    json_path: str = ""
    context: dict[str, dict[str, Any]] = field(default_factory=dict)  # model, training data, evaluation set

    def flat_metrics(self) -> dict[str, float]:
        """Scalar metrics under dotted names (`ties.share_within_margin`), e.g. one row each in a table."""
        return dict(_flatten(self.metrics))


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, float]]:
    if isinstance(value, Mapping):
        return [item for key, sub in value.items() for item in _flatten(sub, f"{prefix}{key}.")]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [(prefix.rstrip("."), float(value))]
    if isinstance(value, list) and prefix.endswith("ci95."):
        return [(f"{prefix}lo", float(value[0])), (f"{prefix}hi", float(value[1]))]
    return []


def is_tie(row: Mapping[str, Any]) -> bool:
    """A human tie: `tie: true`, or `label`/`winner` equal to "tie"."""
    return bool(row.get("tie")) or row.get("label") == "tie" or row.get("winner") == "tie"


def response_length(response: Any) -> int:
    """Length in characters (tokenizer-independent, so reports compare across models)."""
    if isinstance(response, list):
        return sum(len(m.get("content", "")) for m in response)
    return len(response or "")
