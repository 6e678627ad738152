"""USD cost of a call from token counts.

Prices come from the price map that ships inside the litellm package (read as a file, so litellm is not
imported and nothing is fetched), or from the user's `--price-in/--price-out` (USD per million tokens).
A model with no known price costs 0 and is reported as unpriced, never guessed.

Input tokens served from the provider's prompt cache are charged at the cached rate and those written to it
(Anthropic's `cache_control`) at the cache-write rate, where the price map gives them; without one they are
charged as ordinary input (no discount is guessed). Provider batch jobs (`label --batch`) are charged at the
map's batch rates, or half of every rate where the map has none (OpenAI's and Anthropic's published discount).
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path


BATCH_DISCOUNT = 0.5  # what a provider batch costs against the same calls sent one by one, where no rate is known


@dataclass(frozen=True, slots=True)
class Price:
    input_per_token: float
    output_per_token: float
    cached_per_token: float | None = None  # cache reads; None: charged as input
    cache_write_per_token: float | None = None  # cache writes (Anthropic); None: charged as input
    batch: Price | None = None  # the batch rates, where the price map gives them

    def cost(self, tokens_in: int, tokens_out: int, cached: int = 0, written: int = 0) -> float:
        """`tokens_in` counts every input token, `cached` and `written` included."""
        plain = max(tokens_in - cached - written, 0)
        read_rate = self.input_per_token if self.cached_per_token is None else self.cached_per_token
        write_rate = self.input_per_token if self.cache_write_per_token is None else self.cache_write_per_token
        return (plain * self.input_per_token + cached * read_rate + written * write_rate
                + tokens_out * self.output_per_token)

    def most(self, tokens_in: int, tokens_out: int) -> float:
        """The most `tokens_in` / `tokens_out` can cost, however many of them the cache reads or writes."""
        rate = max(self.input_per_token, self.cache_write_per_token or 0.0, self.cached_per_token or 0.0)
        return tokens_in * rate + tokens_out * self.output_per_token

    def at_batch_rate(self) -> Price:
        if self.batch is not None:
            return self.batch
        half = lambda rate: None if rate is None else rate * BATCH_DISCOUNT  # noqa: E731
        return Price(self.input_per_token * BATCH_DISCOUNT, self.output_per_token * BATCH_DISCOUNT,
                     half(self.cached_per_token), half(self.cache_write_per_token))


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
            batch = _rates(entry, "_batches") if "input_cost_per_token_batches" in entry else None
            return _rates(entry, "", batch)
    return None


def _rates(entry: dict, suffix: str, batch: Price | None = None) -> Price:
    def rate(key: str) -> float | None:
        value = entry.get(f"{key}{suffix}")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    return Price(rate("input_cost_per_token") or 0.0, rate("output_cost_per_token") or 0.0,
                 rate("cache_read_input_token_cost"), rate("cache_creation_input_token_cost"), batch)


def resolve_price(model: str, backend: str, price_in: float | None, price_out: float | None) -> Price | None:
    """User prices win; local models are free; otherwise the list price, or None when unknown."""
    if price_in is not None or price_out is not None:
        return Price((price_in or 0.0) / 1e6, (price_out or 0.0) / 1e6)
    if backend == "local":
        return FREE
    return lookup_price(model)
