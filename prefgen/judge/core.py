"""One judge call from comparison to verdict: render, hash, retry, parse, price. Every backend goes through it."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from prefgen.hashing import content_hash
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
from prefgen.judge.pricing import Price
from prefgen.judge.prompts import Template

MAX_RETRY_AFTER_S = 120.0


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
        return content_hash(["judge-request", self.identity, messages])

    def render(self, comparison: Comparison) -> list[dict[str, str]]:
        return self.template.render(comparison)

    async def judge(self, messages: list[dict[str, str]]) -> Verdict:
        """Ask once (with retries); a final failure is a verdict with status judge_error, never an exception."""
        started = time.perf_counter()
        attempts = 1
        try:
            try:
                completion = await self._complete_once(messages)
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
                        attempts += 1
                        completion = await self._complete_once(messages)
        except (TransientError, PermanentError) as exc:
            return self._failure(exc, started, attempts)
        except Exception as exc:  # noqa: BLE001 - the last resort: a backend bug fails one call, not the run
            return self._failure(exc, started, attempts, unexpected=True)
        try:
            return self._verdict(completion, started, attempts)
        except Exception as exc:  # noqa: BLE001 - a reply no parser foresaw is a parse error with its reason
            return Verdict(None, _raw_text(completion), PARSE_ERROR, None,
                           latency_s=time.perf_counter() - started,
                           error=f"unreadable reply: {_describe(exc)}", attempts=attempts)

    def _failure(self, exc: Exception, started: float, attempts: int, *, unexpected: bool = False) -> Verdict:
        error = _describe(exc)
        if unexpected:
            error = f"unexpected {error}"
        return Verdict(None, "", JUDGE_ERROR, None, latency_s=time.perf_counter() - started,
                       error=error, attempts=attempts)

    def _verdict(self, completion: Completion, started: float, attempts: int) -> Verdict:
        parsed = parse_completion(completion, self.template.mode)
        # Backends read usage totally already; a third-party backend's counts are bounded here the same way.
        tokens_in, tokens_out = token_count(completion.tokens_in), token_count(completion.tokens_out)
        reported = completion.cost
        if isinstance(reported, (int, float)) and not isinstance(reported, bool) and math.isfinite(reported) \
                and reported >= 0:
            cost = float(reported)
        else:
            cost = self.price.cost(tokens_in, tokens_out) if self.price else 0.0
        return Verdict(
            p_first=parsed.p_first,
            raw_text=_raw_text(completion),
            status=OK if parsed.error is None else PARSE_ERROR,
            confidence_source=parsed.source,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost=cost,
            latency_s=time.perf_counter() - started,
            error=parsed.error,
            attempts=attempts,
            letter=parsed.verdict,
        )

    async def _complete_once(self, messages: list[dict[str, str]]):
        try:
            # asyncio.timeout rather than wait_for: no extra task per call.
            async with asyncio.timeout(self.timeout_s):
                return await self.backend.complete(messages, self.params)
        except TimeoutError:
            raise TransientError(f"no answer within {self.timeout_s:g} s") from None


def _describe(exc: BaseException) -> str:
    """`Type: message`, one line, bounded: what a judgement row's `error` column holds."""
    message = " ".join(str(exc).split())[:1000]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _raw_text(completion: Completion) -> str:
    texts = getattr(completion, "texts", None)
    texts = texts if isinstance(texts, list) else []
    return "\n---\n".join(t if isinstance(t, str) else repr(t) for t in texts)
