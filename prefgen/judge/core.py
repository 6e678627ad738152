"""One judge call from comparison to verdict: render, hash, retry, parse, price. Every backend goes through it."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from prefgen.hashing import HASH_TAG, canonical_json
from prefgen.judge.base import (
    JUDGE_ERROR,
    OK,
    PARSE_ERROR,
    Backend,
    Comparison,
    Completion,
    PermanentError,
    SamplingParams,
    TransientError,
    Verdict,
)
from prefgen.judge.parse import parse_completion
from prefgen.judge.reply import token_count
from prefgen.redact import redact
from prefgen.judge.pricing import Price
from prefgen.judge.prompts import Template
from prefgen.judge.ratelimit import AdaptiveLimit

MAX_RETRY_AFTER_S = 120.0
# Chat formats wrap each message in a few special tokens (role, start, end) and add a few per request.
_PER_MESSAGE_TOKENS = 8
_PER_REQUEST_TOKENS = 16


def _wait(backoff: wait_exponential_jitter):
    """Honour a server's Retry-After when it gives one; otherwise exponential backoff with jitter."""

    def wait(state) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), MAX_RETRY_AFTER_S)
        return backoff(state)

    return wait


@dataclass
class JudgeClient:
    """A backend with a template, sampling parameters, a price and a retry policy."""

    backend: Backend
    template: Template
    params: SamplingParams
    price: Price | None = None
    max_attempts: int = 5
    timeout_s: float = 120.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    limiter: AdaptiveLimit | None = None  # calls in flight adapted to the server's rate limits (judge.ratelimit)
    _hash_head: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def identity(self) -> dict:
        """What, besides the texts, shapes an answer: part of every request hash."""
        return {
            "backend": self.backend.name,
            "model": self.backend.model,
            "template": self.template.version,
            "params": self.params.as_dict(),
        }

    def request_hash(self, messages: list[dict[str, str]]) -> str:
        """`content_hash(["judge-request", identity, messages])`, with the identity's canonical JSON made once."""
        if self._hash_head is None:
            self._hash_head = canonical_json(["judge-request", self.identity])[:-1] + b","
        digest = hashlib.sha256(self._hash_head + canonical_json(messages) + b"]").hexdigest()[:32]
        return f"{HASH_TAG}-{digest}"

    def render(self, comparison: Comparison) -> list[dict[str, str]]:
        return self.template.render(comparison)

    def upper_bound_tokens(self, messages: list[dict[str, str]]) -> tuple[int, int]:
        """(input, output) tokens that one call cannot pass, for the budget's reservation.

        Input: one token per UTF-8 byte (byte-level BPE tokens are at least a byte long) plus the chat
        format's per-message tokens; no tokenizer is consulted. Output: max_tokens per sample. With n samples
        the input counts n times, since backends without a native `n` send n calls.
        """
        n = max(self.params.n, 1)
        tokens_in = _PER_REQUEST_TOKENS
        for m in messages:
            content = str(m.get("content", ""))
            # An ASCII text has one byte a character: len() spares encoding every prompt once per call.
            tokens_in += (len(content) if content.isascii() else len(content.encode("utf-8"))) + _PER_MESSAGE_TOKENS
        return tokens_in * n, self.params.max_tokens * n

    def upper_bound_cost(self, messages: list[dict[str, str]], tokens: tuple[int, int] | None = None) -> float:
        """What one attempt at this call can cost at most (0 without a price); `tokens`: its upper_bound_tokens,
        when known already."""
        if self.price is None:
            return 0.0
        return self.price.most(*(tokens or self.upper_bound_tokens(messages)))

    async def judge(self, messages: list[dict[str, str]], may_retry: Callable[[float], bool] | None = None,
                    tokens: tuple[int, int] | None = None) -> Verdict:
        """Ask once (with retries); a final failure is a verdict with status judge_error, never an exception.

        An attempt that the provider may have billed (a timeout, a cut-off reply) is charged at the call's upper
        bound; before a retry that follows one, `may_retry(bound)` must reserve that much again (the budget), or
        the call ends as a judge error instead of retrying. `tokens`: the call's upper_bound_tokens, when the
        caller has them already.
        """
        started = time.perf_counter()
        attempts = 1
        billed = 0  # failed attempts the provider may have charged for
        tokens = tokens or self.upper_bound_tokens(messages)
        bound = self.price.most(*tokens) if self.price is not None else 0.0
        # What the call counts against a provider's tokens-per-minute budget (judge.ratelimit): the prompt at
        # about four bytes a token, and the most it may answer (OpenAI counts max_tokens, not the answer).
        window = tokens[0] // max(self.params.n, 1) // 4 + tokens[1]

        async def attempt_once():
            nonlocal billed
            try:
                return await self._complete_once(messages, window)
            except TransientError as exc:
                billed += int(exc.billed)
                raise

        try:
            try:
                completion = await attempt_once()
            except TransientError as exc:
                # The first try runs outside tenacity: an AsyncRetrying loop costs about a third of a millisecond
                # of CPU per call, a large share of the per-call budget at hundreds of calls/s. Only a failed
                # call pays for it, and the policy sees that failure as its attempt 1, so waits and the
                # attempt limit are the same as if tenacity had made the first try itself.
                first_failure: TransientError | None = exc
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self.max_attempts),
                    wait=_wait(wait_exponential_jitter(multiplier=self.backoff_initial_s, max=self.backoff_max_s)),
                    retry=retry_if_exception_type(TransientError),
                    reraise=True,
                ):
                    with attempt:
                        if first_failure is not None:
                            failed, first_failure = first_failure, None
                            raise failed
                        if billed and may_retry is not None and not may_retry(bound):
                            raise PermanentError("not retried: the retry could pass --max-cost")
                        attempts += 1
                        completion = await attempt_once()
        except (TransientError, PermanentError) as exc:
            return self._failure(exc, started, attempts, cost=billed * bound)
        except Exception as exc:  # noqa: BLE001 - the last resort: a backend bug fails one call, not the run
            return self._failure(exc, started, attempts, unexpected=True, cost=billed * bound)
        try:
            verdict = self._verdict(completion, started, attempts, tokens)
        except Exception as exc:  # noqa: BLE001 - a reply no parser foresaw is a parse error with its reason
            verdict = Verdict(None, _raw_text(completion), PARSE_ERROR, None,
                              latency_s=time.perf_counter() - started,
                              error=f"unreadable reply: {_describe(exc)}", attempts=attempts, cost=bound)
        verdict.cost += billed * bound
        return verdict

    def answer_verdict(self, completion: Completion, bound: tuple[int, int], price: Price | None,
                       latency_s: float) -> Verdict:
        """The verdict of a completion that came some other way than `judge` (a provider batch), charged at
        `price`; a reply no parser foresaw is a parse error, as in `judge`."""
        started = time.perf_counter() - latency_s
        try:
            return self._verdict(completion, started, 1, bound, price)
        except Exception as exc:  # noqa: BLE001 - as in `judge`
            return Verdict(None, _raw_text(completion), PARSE_ERROR, None, latency_s=latency_s,
                           error=f"unreadable reply: {_describe(exc)}", cost=price.most(*bound) if price else 0.0)

    def _failure(self, exc: Exception, started: float, attempts: int, *, unexpected: bool = False,
                 cost: float = 0.0) -> Verdict:
        error = _describe(exc)
        if unexpected:
            error = f"unexpected {error}"
        return Verdict(None, "", JUDGE_ERROR, None, cost=cost, latency_s=time.perf_counter() - started,
                       error=error, attempts=attempts)

    def _verdict(self, completion: Completion, started: float, attempts: int,
                 bound: tuple[int, int], price: Price | None = None) -> Verdict:
        """`price`: what the call is charged at (default: the client's; `label --batch` gives the batch rate)."""
        price = price or self.price
        parsed = parse_completion(completion, self.template.mode)
        # Backends read usage totally already; a third-party backend's counts are bounded here the same way.
        tokens_in, tokens_out = token_count(completion.tokens_in), token_count(completion.tokens_out)
        # A usage report that cannot be read, or a count past the call's upper bound (a request of this size
        # cannot hold more), is a broken report: the bound it reserved is counted and charged instead, and the
        # row says so. Charging nothing would let a broken server spend past --max-cost.
        note = None
        if tokens_in is None or tokens_out is None:
            note = (f"the reply's usage could not be read ({_usage_shape(completion)}); counted and charged this "
                    f"call's bound of {bound[0]} / {bound[1]}")
            tokens_in, tokens_out = bound
        elif tokens_in > bound[0] or tokens_out > bound[1]:
            note = (f"usage report of {tokens_in} in / {tokens_out} out passes this call's bound of "
                    f"{bound[0]} / {bound[1]}; counted and charged the bound")
            tokens_in, tokens_out = min(tokens_in, bound[0]), min(tokens_out, bound[1])
        # Cache reads and writes are parts of the input, never more than it.
        # A cache count that cannot be read is none: the tokens are then charged at the full input rate.
        cached = min(token_count(getattr(completion, "tokens_cached", 0)) or 0, tokens_in)
        written = min(token_count(getattr(completion, "tokens_cache_written", 0)) or 0, tokens_in - cached)
        most = price.most(*bound) if price else math.inf
        reported = completion.cost
        if isinstance(reported, (int, float)) and not isinstance(reported, bool) and math.isfinite(reported) \
                and reported >= 0:
            cost = min(float(reported), most)
        else:
            cost = price.cost(tokens_in, tokens_out, cached, written) if price else 0.0
        return Verdict(
            p_first=parsed.p_first,
            raw_text=_raw_text(completion),
            status=OK if parsed.error is None else PARSE_ERROR,
            confidence_source=parsed.source,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost=cost,
            latency_s=time.perf_counter() - started,
            error=parsed.error if parsed.error or note is None else note,
            attempts=attempts,
            letter=parsed.verdict,
            tokens_cached=cached,
            tokens_cache_written=written,
        )

    async def _complete_once(self, messages: list[dict[str, str]], tokens: int):
        limiter = self.limiter
        if limiter is None:
            return await self._complete(messages)
        await limiter.acquire(tokens)
        try:
            completion = await self._complete(messages)
        except TransientError as exc:
            limiter.release(tokens, exc.limits, exc.retry_after, exc.throttled)
            raise
        except BaseException:
            limiter.release(tokens)
            raise
        limiter.release(tokens, getattr(completion, "limits", None))
        return completion

    async def _complete(self, messages: list[dict[str, str]]):
        if getattr(self.backend, "times_out", False):  # its own timeout (aiohttp's): no second timer per call
            return await self.backend.complete(messages, self.params)
        try:
            # asyncio.timeout rather than wait_for: no extra task per call.
            async with asyncio.timeout(self.timeout_s):
                return await self.backend.complete(messages, self.params)
        except TimeoutError:
            raise TransientError(f"no answer within {self.timeout_s:g} s", billed=True) from None


def _usage_shape(completion: Completion) -> str:
    unread = [name for name in ("tokens_in", "tokens_out") if token_count(getattr(completion, name)) is None]
    return f"no count for {' and '.join(unread)}"


def _describe(exc: BaseException) -> str:
    """`Type: message`, one line, bounded: what a judgement row's `error` column holds."""
    message = redact(" ".join(str(exc).split()))[:1000]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _raw_text(completion: Completion) -> str:
    texts = getattr(completion, "texts", None)
    texts = texts if isinstance(texts, list) else []
    return "\n---\n".join(t if isinstance(t, str) else repr(t) for t in texts)
