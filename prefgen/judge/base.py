"""The judge protocol: backends answer one ordered comparison; everything else is shared.

A backend only moves bytes: it turns rendered chat messages into a `Completion` (texts, first-token
logprobs, token counts). Rendering, parsing, confidence, retries and cost live in `judge.core`, so every
backend goes through the same code (TRL's removed judges pasted that logic into each class).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# Parse status of one judge call.
OK = "ok"
PARSE_ERROR = "parse_error"
JUDGE_ERROR = "judge_error"

# Where P(first better) came from.
SOURCE_LOGPROBS = "logprobs"
SOURCE_VERBALISED = "verbalised"
SOURCE_SELF_CONSISTENCY = "self_consistency"
SOURCE_VERDICT = "verdict"  # a hard A/B with no graded confidence


@dataclass(frozen=True, slots=True)
class Comparison:
    """One ordered question: is `first` better than `second` for `prompt` under `principle`?"""

    prompt: str | tuple[dict[str, str], ...]
    first: str
    second: str
    principle: str


@dataclass(slots=True)
class Completion:
    """What a backend got back for one request. `first_token_logprobs` maps token text to logprob."""

    texts: list[str]
    # Every input token, those read from or written to the prompt cache included. None: the reply's usage could
    # not be read, and the call is charged its reserved bound.
    tokens_in: int | None = 0
    tokens_out: int | None = 0
    first_token_logprobs: dict[str, float] | None = None
    cost: float | None = None  # set only when the provider reports a price itself
    limits: Any = None  # the answer's rate-limit headers (judge.ratelimit.RateLimits), where the backend reads them
    tokens_cached: int | None = 0  # input tokens the prompt cache served (at the cached rate); None: unread
    tokens_cache_written: int | None = 0  # input tokens written to the prompt cache (Anthropic cache_control)


@dataclass(slots=True)
class Verdict:
    """The judged answer to one `Comparison`, ready to be stored as a judgement row."""

    p_first: float | None
    raw_text: str
    status: str
    confidence_source: str | None
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    latency_s: float = 0.0
    error: str | None = None
    attempts: int = 1
    letter: str | None = None  # "A" / "B": the slot the answer named
    tokens_cached: int = 0
    tokens_cache_written: int = 0


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Everything about a request besides its text that can change the answer (part of the request hash)."""

    max_tokens: int = 1
    temperature: float = 0.0
    n: int = 1
    logprobs: bool = True
    top_logprobs: int = 5
    extra: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "n": self.n,
            "logprobs": self.logprobs,
            "top_logprobs": self.top_logprobs,
            **dict(self.extra),
        }


class TransientError(Exception):
    """A failure worth retrying (429, 5xx, timeout, connection reset). `retry_after` is in seconds.

    `billed`: the provider may have charged for the attempt (it had the request and may have answered: a timeout,
    a reply cut off or unreadable). Such attempts are charged to the budget at the call's upper bound.
    """

    def __init__(self, message: str, retry_after: float | None = None, *, billed: bool = False,
                 throttled: bool = False, limits: Any = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.billed = billed
        self.throttled = throttled  # a 429: the server asks for fewer calls (judge.ratelimit)
        self.limits = limits  # the answer's rate-limit headers (judge.ratelimit.RateLimits), if any


class PermanentError(Exception):
    """A failure that a retry will not fix (400, 401, 404, bad model name)."""


@runtime_checkable
class Backend(Protocol):
    """One judge backend. `name` is the spec prefix (`openai`, `anthropic`, `litellm`, `local`)."""

    name: str
    model: str
    supports_logprobs: bool
    # The keyword options the constructor takes (`api_base`, `timeout`, `batch_size`, ...): the pipeline offers
    # every setting it has and each backend gets the ones it declares, so no backend swallows unknown options.
    options: tuple[str, ...]

    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion: ...

    async def aclose(self) -> None: ...
