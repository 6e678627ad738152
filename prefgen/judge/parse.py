"""Strict verdict parsing. An answer that names no verdict is a parse error, never a guess."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from prefgen.judge.base import (
    SOURCE_LOGPROBS,
    SOURCE_SELF_CONSISTENCY,
    SOURCE_VERBALISED,
    SOURCE_VERDICT,
    Completion,
)

# The letter must be the whole first word: "A", "A.", "**B**", "(A)" pass; "Apples", "A or B" do not.
_DIRECT = re.compile(r"^\W*([AB])\W*(?:\s|$)")
_VERDICT_LINE = re.compile(r"^\W*verdict\W*([AB])\W*$", re.IGNORECASE | re.MULTILINE)
_CONFIDENCE = re.compile(r"confidence\W*(\d+(?:\.\d+)?)\s*%?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Parsed:
    verdict: str | None  # "A" / "B"
    p_first: float | None
    source: str | None
    error: str | None = None


def parse_letter(text: str, mode: str) -> str | None:
    """The slot named by one answer text, or None when it names none unambiguously."""
    if not isinstance(text, str):
        return None
    if mode == "cot":
        found = _VERDICT_LINE.findall(text)
        return found[-1].upper() if found else None
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    match = _DIRECT.match(first_line)
    if not match:
        return None
    if mode == "direct" and re.search(r"\b[AB]\b", first_line[match.end():]):
        return None  # "A ... B": two letters, no verdict
    return match[1]


def p_from_logprobs(logprobs: dict[str, float] | None) -> float | None:
    """P(A) / (P(A) + P(B)) from the first token's top logprobs; None when neither letter is there."""
    if not logprobs or not isinstance(logprobs, dict):
        return None
    mass = {"A": 0.0, "B": 0.0}
    for token, lp in logprobs.items():
        if not isinstance(token, str) or isinstance(lp, bool) or not isinstance(lp, (int, float)):
            continue
        if not math.isfinite(lp) or lp > 1e-6:  # not a log-probability (1000, NaN, inf): no evidence
            continue
        letter = token.strip().strip("*(")
        if letter in mass:  # " A" and "A" are different tokens with the same meaning
            mass[letter] += math.exp(min(lp, 0.0))
    total = mass["A"] + mass["B"]
    if not total > 0 or not math.isfinite(total):
        return None
    p = mass["A"] / total
    return p if math.isfinite(p) else None


def p_from_verbalised(text: str, letter: str) -> float | None:
    match = _CONFIDENCE.search(text)
    if not match:
        return None
    value = float(match[1])
    if not math.isfinite(value):  # "Confidence: 1e999" style digits overflow to inf
        return None
    value = value / 100 if value > 1 else value
    value = min(max(value, 0.5), 1.0)  # "I'm 30% sure it's A" is not a coherent answer; clamp to the scale asked
    return value if letter == "A" else 1.0 - value


def parse_completion(completion: Completion, mode: str) -> Parsed:
    """Verdict and P(first better) from a completion, with the source of the probability."""
    texts = [t if isinstance(t, str) else "" for t in completion.texts or ()]
    if len(texts) > 1:
        return _parse_samples(texts, mode)
    text = texts[0] if texts else ""
    letter = parse_letter(text, mode)
    if letter is None:
        return Parsed(None, None, None, error="the answer names no verdict (expected A or B)")
    if mode == "verbalised":
        p = p_from_verbalised(text, letter)
        if p is None:
            return Parsed(letter, None, None, error="the answer gives no `Confidence: N` line")
        return Parsed(letter, p, SOURCE_VERBALISED)
    if mode == "direct":
        p = p_from_logprobs(completion.first_token_logprobs)
        if p is not None:
            return Parsed(letter, p, SOURCE_LOGPROBS)
    return Parsed(letter, 1.0 if letter == "A" else 0.0, SOURCE_VERDICT)


def _parse_samples(texts: list[str], mode: str) -> Parsed:
    letters = [parse_letter(t, mode) for t in texts]
    valid = [x for x in letters if x is not None]
    if not valid:
        return Parsed(None, None, None, error=f"none of the {len(texts)} samples names a verdict")
    p = sum(1 for x in valid if x == "A") / len(valid)
    majority = "A" if p > 0.5 else "B" if p < 0.5 else None
    return Parsed(majority, p, SOURCE_SELF_CONSISTENCY)
