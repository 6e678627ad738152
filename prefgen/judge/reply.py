"""Total readers for the fields of a provider's reply: any JSON the wire can carry gives a value or a
`MalformedReply` that names what was wrong, never an AttributeError / OverflowError / ValueError.

A reply is untrusted input like any other: compatible servers, proxies and gateways send content as a list of
parts, usage as strings, logprobs of 1000 or NaN. What can be read sensibly is read; what cannot is reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prefgen.judge.base import PermanentError

# Token counts are stored as 32-bit integers; a count past this is a broken report, not a real one.
MAX_TOKENS = 2**31 - 1


class MalformedReply(PermanentError):
    """The reply is JSON but not of a shape that carries an answer; stored as a judge_error with the reason."""


def shape(value: Any, limit: int = 120) -> str:
    """A short description of a value for an error message (type and the start of its text)."""
    text = repr(value)
    return f"{type(value).__name__} {text[:limit]}{'...' if len(text) > limit else ''}"


def token_count(value: Any) -> int | None:
    """A usage field as a count in [0, MAX_TOKENS], or None when it is not a count at all (text, NaN, null, a
    list): numbers and numeric strings are read.

    Negative counts become 0 and absurd ones MAX_TOKENS, so a broken report can neither refund a budget nor
    overflow the store; a count that cannot be read is None, and the call is charged the bound it reserved
    (`judge.core`): charging it nothing would let a server that sends `"usage": "n/a"` spend past --max-cost.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int):
        return min(max(value, 0), MAX_TOKENS)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(min(max(value, 0.0), float(MAX_TOKENS)))
    return None


def usage_count(usage: Any, *fields: str, optional: tuple[str, ...] = ()) -> int | None:
    """The sum of the named counts of a usage object; None when it cannot be read (no usage object, a named
    field missing or not a count, an `optional` field present but not a count)."""
    if not isinstance(usage, Mapping):
        return None
    counts = [token_count(usage.get(f)) for f in fields]
    counts += [token_count(usage[f]) for f in optional if usage.get(f) is not None]
    if any(count is None for count in counts):
        return None
    return min(sum(counts), MAX_TOKENS)


def logprob(value: Any) -> float | None:
    """A log-probability, or None for anything that is not one (NaN, +-inf, > 0, strings, booleans).

    A value a hair above 0 is rounding (log 1 = 0) and reads as 0.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if math.isnan(value) or value == -math.inf:
        return None
    if value > 1e-6:
        return None
    return min(value, 0.0)


def content_text(content: Any, where: str) -> str:
    """Message content as text: a string, or a list of parts whose text parts are joined.

    OpenAI-compatible servers may send `[{"type": "text", "text": ...}, ...]`; a part without a type but with a
    text string counts, bare strings in the list count, other parts (images, audio, tool calls) are skipped.
    None is the empty answer (a refusal or a tool call), which the verdict parser reports as no verdict.
    """
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and part.get("type", "text") in ("text", "output_text"):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
                elif isinstance(text, Mapping) and isinstance(text.get("value"), str):
                    parts.append(text["value"])  # the Assistants-style {"text": {"value": ...}}
        return "".join(parts)
    if isinstance(content, Mapping) and isinstance(content.get("text"), str):
        return content["text"]
    raise MalformedReply(f"{where} is neither text nor a list of text parts: {shape(content)}")
