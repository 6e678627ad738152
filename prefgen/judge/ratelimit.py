"""Sending at the rate the provider allows: calls in flight between 1 and --concurrency, set from what the server
says (the way Bespoke Curator reads rate limits from response headers rather than trusting a fixed setting).

Two signals:
- the rate-limit headers of every answer (OpenAI `x-ratelimit-limit/remaining/reset-requests/-tokens`,
  Anthropic `anthropic-ratelimit-requests/tokens-limit/remaining/reset`): the budget left and how fast it comes
  back (both providers refill a token bucket continuously). A call the budget cannot hold yet waits until it
  can, instead of being sent into a 429;
- a 429 and its Retry-After: fewer calls in flight (halved, once per burst) and nobody sends until the server
  said to come back. Each answer without a 429 then lets about one more call in flight per `limit` answers, up
  to the maximum (additive increase, multiplicative decrease).

A server that sends no such headers and no 429 sees --concurrency calls in flight, as before.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Header names of the two providers: remaining, limit and reset, of requests then of tokens.
_OPENAI = ("x-ratelimit-remaining-requests", "x-ratelimit-limit-requests", "x-ratelimit-reset-requests",
           "x-ratelimit-remaining-tokens", "x-ratelimit-limit-tokens", "x-ratelimit-reset-tokens")
_ANTHROPIC = ("anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-limit",
              "anthropic-ratelimit-requests-reset", "anthropic-ratelimit-tokens-remaining",
              "anthropic-ratelimit-tokens-limit", "anthropic-ratelimit-tokens-reset")


@dataclass(frozen=True, slots=True)
class RateLimits:
    """What one answer said of the provider's rate limits: budget left, the budget, and seconds until it is
    full again (both providers refill theirs continuously: token buckets)."""

    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None
    limit_requests: int | None = None
    limit_tokens: int | None = None


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


def _seconds(value: str | None) -> float | None:
    return duration_s(value) if value else None


def rate_limits(headers: Mapping[str, str] | None) -> RateLimits | None:
    """The rate-limit headers of an answer, or None when it carries none (the common case: checked cheaply)."""
    if not headers:
        return None
    for names in (_OPENAI, _ANTHROPIC):
        requests, tokens = headers.get(names[0]), headers.get(names[3])
        if requests is None and tokens is None:
            continue
        get = headers.get
        return RateLimits(_count(requests), _count(tokens), _seconds(get(names[2])), _seconds(get(names[5])),
                          _count(get(names[1])), _count(get(names[4])))
    return None


class _Bucket:
    """One of the provider's budgets as last reported, run forward in time: the level it said (less what was
    in flight and not yet counted by it), refilled at the rate its limit and reset imply, less what was sent
    since. Without a limit to derive a rate from, the whole budget comes back at the reset."""

    def __init__(self) -> None:
        self.known = False
        self.level = 0.0
        self.at = 0.0
        self.limit = math.inf
        self.rate: float | None = None
        self.full_at = 0.0

    def observe(self, remaining: int | None, limit: int | None, reset_s: float | None, in_flight: float,
                now: float) -> None:
        if remaining is None or reset_s is None:
            return
        self.known = True
        self.level, self.at, self.full_at = remaining - in_flight, now, now + reset_s
        self.limit = float(limit) if limit else math.inf
        self.rate = (limit - remaining) / reset_s if limit and reset_s > 0 and limit > remaining else None

    def wait_s(self, need: float, now: float) -> float:
        """Seconds until `need` fits (0: now)."""
        if not self.known:
            return 0.0
        if self.rate is None:
            if now >= self.full_at:
                self.known = False  # the window started again: full, as far as anyone knows
                return 0.0
            return 0.0 if self.level >= need else self.full_at - now
        level = min(self.level + self.rate * (now - self.at), self.limit)
        return 0.0 if level >= need else (need - level) / self.rate

    def spend(self, need: float) -> None:
        if self.known:
            self.level -= need


class AdaptiveLimit:
    """Calls in flight, between 1 and `maximum`. `acquire(tokens)` before a call, `release(tokens, ...)` after it."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = float(maximum)
        self.in_flight = 0
        self._tokens_in_flight = 0
        self.throttled = 0  # 429s seen
        self._paused_until = 0.0
        self._last_cut = 0.0
        self._requests = _Bucket()
        self._tokens = _Bucket()
        self._budget = asyncio.Lock()  # one call at a time waits for the budget: the others queue, asleep
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, tokens: int) -> None:
        if self._requests.known or self._tokens.known or time.monotonic() < self._paused_until:
            async with self._budget:
                await self._wait_for_budget(tokens)
        while self.in_flight >= int(self.limit):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        self.in_flight += 1
        self._tokens_in_flight += tokens

    async def _wait_for_budget(self, tokens: int) -> None:
        while True:
            now = time.monotonic()
            wait = max(self._paused_until - now, self._requests.wait_s(1, now), self._tokens.wait_s(tokens, now))
            if wait <= 0:
                self._requests.spend(1)
                self._tokens.spend(tokens)
                return
            await asyncio.sleep(wait)

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
            # Its numbers were counted before the calls still in flight reached the server: those count too.
            self._requests.observe(limits.remaining_requests, limits.limit_requests, limits.reset_requests_s,
                                   self.in_flight, now)
            self._tokens.observe(limits.remaining_tokens, limits.limit_tokens, limits.reset_tokens_s,
                                 self._tokens_in_flight, now)
        self._wake()

    def _wake(self) -> None:
        free = int(self.limit) - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1
