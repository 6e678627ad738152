"""A fleet of servers for one model: several `--api-base` values, used in turn.

Local judges at scale are a fleet of vLLM (or SGLang, llama.cpp) servers, each serving the same model behind
an OpenAI-compatible API. One backend per server; calls go round-robin. The fleet answers to the name and model
of its members, so the request hash, and therefore the cache, does not depend on which server answered.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from prefgen.errors import PrefgenError
from prefgen.judge.base import Backend, Completion, SamplingParams


def split_api_bases(value: str | Sequence[str] | None) -> list[str]:
    """`--api-base` values: repeated, or one comma-separated list (URLs carry no bare commas)."""
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


class Fleet:
    """Round-robin over backends that serve the same model (one per server)."""

    def __init__(self, members: Sequence[Backend]) -> None:
        if not members:
            raise PrefgenError("a fleet needs at least one --api-base")
        first = members[0]
        self.members = list(members)
        self.name = first.name
        self.model = first.model
        self.supports_logprobs = all(m.supports_logprobs for m in members)
        self.options = first.options
        self._turn = itertools.cycle(self.members)

    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        return await next(self._turn).complete(messages, params)

    async def aclose(self) -> None:
        for member in self.members:
            await member.aclose()
