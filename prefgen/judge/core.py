"""One judge call from comparison to verdict: render, hash, retry, parse, price. Every backend goes through it."""

from __future__ import annotations

import asyncio
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
    PermanentError,
    SamplingParams,
    TransientError,
    Verdict,
)
from prefgen.judge.parse import parse_completion
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
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return Verdict(None, "", JUDGE_ERROR, None, latency_s=time.perf_counter() - started,
                           error=error, attempts=attempts)
        parsed = parse_completion(completion, self.template.mode)
        cost = completion.cost if completion.cost is not None else (
            self.price.cost(completion.tokens_in, completion.tokens_out) if self.price else 0.0
        )
        return Verdict(
            p_first=parsed.p_first,
            raw_text="\n---\n".join(completion.texts),
            status=OK if parsed.error is None else PARSE_ERROR,
            confidence_source=parsed.source,
            tokens_in=completion.tokens_in,
            tokens_out=completion.tokens_out,
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
