"""USD cost of a call from token counts.

Prices come from the price map that ships inside the litellm package (read as a file, so litellm is not
imported and nothing is fetched), or from the user's `--price-in/--price-out` (USD per million tokens).
A model with no known price costs 0 and is reported as unpriced, never guessed.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Price:
    input_per_token: float
    output_per_token: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return tokens_in * self.input_per_token + tokens_out * self.output_per_token


FREE = Price(0.0, 0.0)


@functools.cache
def _litellm_price_map() -> dict[str, dict]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return {}
    path = Path(spec.origin).parent / "model_prices_and_context_window_backup.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def lookup_price(model: str) -> Price | None:
    """The list price of `model` ("gpt-4o-mini", "openai/gpt-4o-mini", "anthropic/claude-..."), if known."""
    table = _litellm_price_map()
    candidates = [model, model.split("/", 1)[-1]]
    for name in candidates:
        entry = table.get(name)
        if entry and "input_cost_per_token" in entry:
            return Price(float(entry["input_cost_per_token"]), float(entry.get("output_cost_per_token", 0.0)))
    return None


def resolve_price(model: str, backend: str, price_in: float | None, price_out: float | None) -> Price | None:
    """User prices win; local models are free; otherwise the list price, or None when unknown."""
    if price_in is not None or price_out is not None:
        return Price((price_in or 0.0) / 1e6, (price_out or 0.0) / 1e6)
    if backend == "local":
        return FREE
    return lookup_price(model)
