"""Internal records shared by the stages, and the identity of a pair.

A pair's id is a hash of its normalised content with the two responses in a canonical order, so the same
pair read from a JSONL file, a human-label file or an AI run is one row in the store, whichever response
came first. Readers canonicalise once, on the way in, and map their labels through `swapped`.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

import orjson

from prefgen.errors import InputError
from prefgen.hashing import content_hash

Prompt = str | tuple[dict[str, str], ...]


def normalise_text(text: str) -> str:
    """NFC and trimmed: the form used for identity (stored texts keep their inner whitespace)."""
    return unicodedata.normalize("NFC", text).strip()


def normalise_prompt(prompt: Prompt | list[dict[str, str]]) -> Prompt:
    if isinstance(prompt, str):
        return normalise_text(prompt)
    return tuple({"role": str(m["role"]), "content": normalise_text(str(m["content"]))} for m in prompt)


def prompt_hash(prompt: Prompt) -> str:
    """Identity of a prompt alone: the unit of the train/held-out split, so no prompt sits on both sides."""
    norm = normalise_prompt(prompt)
    return content_hash(["prompt", norm if isinstance(norm, str) else [dict(m) for m in norm]])


@dataclass(frozen=True, slots=True)
class Pair:
    """A prompt with two responses, stored in canonical order (response_a sorts first)."""

    id: str
    prompt: Prompt
    response_a: str
    response_b: str
    source: str = ""
    source_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # The input named these responses the other way round: its first response is response_b. The store keeps a
    # canonical order so that one pair from two files is one row; this is how to get the input's order back.
    input_swapped: bool = field(default=False, compare=False)

    @property
    def prompt_id(self) -> str:
        return prompt_hash(self.prompt)

    @property
    def is_chat(self) -> bool:
        return not isinstance(self.prompt, str)


def make_pair(
    prompt: Prompt | list[dict[str, str]],
    first: str,
    second: str,
    *,
    source: str = "",
    source_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[Pair, bool]:
    """Build the canonical pair. Returns (pair, swapped): swapped means `first` became response_b."""
    norm_prompt = normalise_prompt(prompt)
    a, b = normalise_text(first), normalise_text(second)
    swapped = b < a
    if swapped:
        a, b = b, a
    key_prompt = norm_prompt if isinstance(norm_prompt, str) else [dict(m) for m in norm_prompt]
    pair_id = content_hash(["pair", key_prompt, a, b])
    return Pair(pair_id, norm_prompt, a, b, source, source_id, dict(metadata or {}), swapped), swapped


CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")


def parse_prompt(value: Any, path: str, line: int) -> str | list[dict[str, str]]:
    """A prompt is text or a list of {role, content} messages (a JSON string of one is accepted too)."""
    if isinstance(value, str) and value.lstrip().startswith("[{"):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    ):
        for i, m in enumerate(value):
            if m["role"] not in CHAT_ROLES:
                # The role is printed into the judge's prompt as "Role: content": a role with a newline, or one
                # of no known kind, could forge turns of the transcript.
                raise InputError(path, f"unknown chat role {m['role'][:40]!r}", line=line,
                                 field=f"prompt[{i}].role", hint=f"use one of {', '.join(CHAT_ROLES)}")
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise InputError(path, "must be text or a list of {role, content} messages", line=line, field="prompt")


def flip_winner(winner: str, swapped: bool) -> str:
    """Map a winner given for (first, second) onto the canonical (a, b) order."""
    if not swapped or winner == "tie":
        return winner
    return {"a": "b", "b": "a"}[winner]


@dataclass(slots=True)
class Judgement:
    """One judge call, as stored: the source of truth that every preference is derived from."""

    request_hash: str
    job_id: str
    run_id: str
    pair_id: str
    constitution_id: str
    principle_id: str
    ordering: str  # "ab": response_a shown first; "ba": response_b shown first
    backend: str
    model: str
    template_version: str
    raw_text: str
    verdict: str | None  # "A" / "B": the slot the judge named, None when it named none
    p_first: float | None
    confidence_source: str | None
    status: str
    tokens_in: int
    tokens_out: int
    cost: float
    latency_s: float
    attempts: int
    error: str | None
    tokens_cached: int = 0  # of tokens_in, served by the provider's prompt cache
    tokens_cache_written: int = 0  # of tokens_in, written to the prompt cache
    batch_id: str | None = None  # the provider batch that answered it (`label --batch`); None: asked directly


@dataclass(frozen=True, slots=True)
class Answer:
    """One judge answer as the swap step needs it, fresh from a call or read back from the store."""

    status: str
    p_first: float | None
    confidence_source: str | None


@dataclass(frozen=True, slots=True)
class SwapResult:
    """The two orders of one (pair, principle) question combined (`prefgen.judge.swap.aggregate_orders`)."""

    p_a: float | None
    consistent: bool
    confidence: float | None
    chosen: str | None  # "a" / "b" / "tie"
    kept: bool
    drop_reason: str | None


@dataclass(frozen=True, slots=True)
class Preference(SwapResult):
    """The position-swapped verdict for one (pair, principle) of a label job, as stored: the swap result
    and where it came from. Build it with `prefgen.judge.swap.preference`."""

    job_id: str
    pair_id: str
    principle_id: str
    p_ab: float | None
    p_ba: float | None
    confidence_source: str | None
    threshold: float


@dataclass(frozen=True, slots=True)
class PairAggregate:
    """A pair's per-principle results combined (`prefgen.judge.swap.aggregate_principles`)."""

    n_principles: int
    n_kept: int
    p_a: float | None
    confidence: float | None
    chosen: str | None
    principle_agreement: float | None
    kept: bool
    drop_reason: str | None


@dataclass(frozen=True, slots=True)
class PairPreference(PairAggregate):
    """All principles of one pair in a job, aggregated (weighted by principle weight), as stored."""

    job_id: str
    pair_id: str
