"""Sending at the rate the provider allows: calls in flight between 1 and --concurrency, set from what the server
says (the way Bespoke Curator reads rate limits from response headers rather than trusting a fixed setting).

Two signals:
- the rate-limit headers of every answer (OpenAI `x-ratelimit-remaining-requests/-tokens` with
  `x-ratelimit-reset-*`; Anthropic `anthropic-ratelimit-*-remaining` with `-reset`): the window's budget left.
  A call whose tokens the budget cannot hold waits for the window to reset instead of being sent into a 429;
- a 429 and its Retry-After: fewer calls in flight (halved, at most once per wait) and nobody sends until
  the server said to come back. Each answer without a 429 then lets one more call in flight, up to the maximum
  (additive increase, multiplicative decrease).

A server that sends no such headers and no 429 sees --concurrency calls in flight, as before.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Header names of the two providers: (remaining requests, remaining tokens, reset requests, reset tokens).
_OPENAI = ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-requests",
           "x-ratelimit-reset-tokens")
_ANTHROPIC = ("anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-tokens-remaining",
              "anthropic-ratelimit-requests-reset", "anthropic-ratelimit-tokens-reset")


@dataclass(frozen=True, slots=True)
class RateLimits:
    """What one answer said of the rate-limit window: budget left, and seconds until it is full again."""

    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None


def duration_s(text: str) -> float | None:
    """OpenAI's `6m0s` / `1.5s` / `350ms`, a plain number of seconds, or an RFC 3339 / HTTP date (Anthropic)."""
    text = text.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if parts and "".join(f"{n}{u}" for n, u in parts) == text:
        return sum(float(n) * _UNIT_S[u] for n, u in parts)
    try:
        from datetime import datetime

        moment = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text).timestamp()
        except (TypeError, ValueError, IndexError):
            return None
    return max(moment - time.time(), 0.0)


def _count(value: str | None) -> int | None:
    try:
        return max(int(float(value)), 0) if value is not None else None
    except ValueError:
        return None


def rate_limits(headers: Mapping[str, str] | None) -> RateLimits | None:
    """The rate-limit headers of an answer, or None when it carries none (the common case: checked cheaply)."""
    if not headers:
        return None
    for names in (_OPENAI, _ANTHROPIC):
        requests, tokens = headers.get(names[0]), headers.get(names[1])
        if requests is None and tokens is None:
            continue
        reset_requests, reset_tokens = headers.get(names[2]), headers.get(names[3])
        return RateLimits(_count(requests), _count(tokens),
                          duration_s(reset_requests) if reset_requests else None,
                          duration_s(reset_tokens) if reset_tokens else None)
    return None


class AdaptiveLimit:
    """Calls in flight, between 1 and `maximum`. `acquire(tokens)` before a call, `release(...)` after it."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = float(maximum)
        self.in_flight = 0
        self._tokens_in_flight = 0
        self.throttled = 0  # 429s seen
        self._paused_until = 0.0
        self._last_cut = 0.0
        # The window's budget as last reported, less what was sent since (None: the server reports none).
        self._requests_left: int | None = None
        self._tokens_left: int | None = None
        self._window_ends = 0.0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, tokens: int) -> None:
        while True:
            now = time.monotonic()
            if now < self._paused_until:
                await asyncio.sleep(self._paused_until - now)
                continue
            if self._window_ends and now >= self._window_ends:
                self._requests_left = self._tokens_left = None  # a new window: its budget is full again
                self._window_ends = 0.0
            if not self._fits(tokens):
                self._paused_until = max(self._paused_until, self._window_ends)
                continue
            if self.in_flight < int(self.limit):
                self.in_flight += 1
                self._tokens_in_flight += tokens
                if self._requests_left is not None:
                    self._requests_left -= 1
                if self._tokens_left is not None:
                    self._tokens_left -= tokens
                return
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def _fits(self, tokens: int) -> bool:
        """Whether the window's budget, as far as known, holds one more call of `tokens` (always, when the
        window's end is unknown: there is nothing to wait for)."""
        if not self._window_ends:
            return True
        if self._requests_left is not None and self._requests_left < 1:
            return False
        return self._tokens_left is None or self._tokens_left >= tokens

    def release(self, tokens: int, limits: RateLimits | None = None, retry_after: float | None = None,
                throttled: bool = False) -> None:
        """After a call of `tokens`: what its answer's headers said, and whether it was a 429 (with its
        Retry-After)."""
        self.in_flight -= 1
        self._tokens_in_flight -= tokens
        now = time.monotonic()
        if throttled:
            self.throttled += 1
            if now - self._last_cut > 0.05:  # one cut per burst of 429s, not one per call in the burst
                self.limit = max(1.0, self.limit / 2)
                self._last_cut = now
            if retry_after is not None:
                self._paused_until = max(self._paused_until, now + retry_after)
        else:
            self.limit = min(float(self.maximum), self.limit + 1.0 / max(self.limit, 1.0))
        if limits is not None:
            self._observe(limits, now)
        self._wake()

    def _observe(self, limits: RateLimits, now: float) -> None:
        resets = [s for s in (limits.reset_requests_s, limits.reset_tokens_s) if s is not None]
        if not resets:
            return
        # The answer's numbers were counted before the calls still in flight reached the server: those count
        # against what is left.
        self._requests_left = None if limits.remaining_requests is None else limits.remaining_requests - self.in_flight
        self._tokens_left = (None if limits.remaining_tokens is None
                             else limits.remaining_tokens - self._tokens_in_flight)
        self._window_ends = now + max(resets)

    def _wake(self) -> None:
        free = int(self.limit) - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1
