"""Rate-limit-aware sending: the calls in flight follow the server's rate-limit headers and 429s."""

from __future__ import annotations

import asyncio
import time

import pytest

from prefgen.judge.ratelimit import AdaptiveLimit, RateLimits, duration_s, rate_limits
from prefgen.pipelines.labelling import run_label
from tests.loopback_server import Behaviour
from tests.test_label_pipeline import config, files, query, truth, write_pairs  # noqa: F401 - fixture


@pytest.mark.parametrize(("text", "seconds"), [("6m0s", 360.0), ("1.5s", 1.5), ("350ms", 0.35), ("2", 2.0),
                                               ("1h2m3s", 3723.0), ("0s", 0.0)])
def test_reset_durations_are_read_in_openais_forms(text, seconds):
    assert duration_s(text) == pytest.approx(seconds)


def test_a_reset_given_as_a_date_is_read_as_seconds_from_now():
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 30))
    assert 28 <= duration_s(later) <= 31
    assert duration_s("soon") is None


def test_rate_limit_headers_of_both_providers_are_read_and_absent_ones_are_none():
    openai = rate_limits({"x-ratelimit-remaining-requests": "59", "x-ratelimit-remaining-tokens": "149000",
                          "x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"})
    assert openai == RateLimits(59, 149000, 1.0, 360.0)
    anthropic = rate_limits({"anthropic-ratelimit-tokens-remaining": "900", "anthropic-ratelimit-requests-remaining":
                             "oops"})
    assert anthropic == RateLimits(None, 900, None, None)
    assert rate_limits({"content-type": "application/json"}) is None


def test_a_429_halves_the_calls_in_flight_and_answers_let_them_grow_back():
    async def scenario() -> list[float]:
        limit = AdaptiveLimit(16)
        seen = []
        for _ in range(4):
            await limit.acquire(10)
        limit.release(10, throttled=True, retry_after=0.0)
        seen.append(limit.limit)
        limit.release(10, throttled=True, retry_after=0.0)  # the same burst: no second cut
        seen.append(limit.limit)
        for _ in range(150):  # about one more in flight per `limit` answers: 8 -> 16 in ~100
            await limit.acquire(10)
            limit.release(10)
        seen.append(limit.limit)
        return seen

    cut, same_burst, grown = asyncio.run(scenario())
    assert cut == same_burst == 8
    assert grown == 16


def test_a_call_the_windows_budget_cannot_hold_waits_for_the_reset():
    async def scenario() -> float:
        limit = AdaptiveLimit(8)
        await limit.acquire(100)
        limit.release(100, RateLimits(remaining_tokens=150, reset_tokens_s=0.3))
        await limit.acquire(100)  # fits in the 150 left
        started = time.monotonic()
        await limit.acquire(100)  # 50 left: waits for the window to reset
        return time.monotonic() - started

    assert 0.25 <= asyncio.run(scenario()) < 2.0


def label_under_a_token_budget(files, loopback, *, adaptive: bool):
    """60 pairs (240 calls) against a server that takes about 24 calls' worth of tokens a quarter second."""
    loopback.reset(Behaviour(truth=truth, latency_s=0.03, token_budget=24 * 170, budget_window_s=0.25))
    db = files[2].with_name(f"adaptive-{adaptive}.duckdb")
    summary = run_label(config(files, loopback, db=db, concurrency=48, max_attempts=50,
                               adaptive_concurrency=adaptive))
    assert summary.calls_sent == 240
    answered = summary.calls_sent - summary.judge_errors
    return loopback.throttled, answered / summary.elapsed_s, summary.judge_errors


def test_adaptive_sending_meets_fewer_429s_than_a_fixed_concurrency_and_loses_no_call(files, loopback):
    """The count of 429s and of failed calls, not the speed: the throughput of both settings is measured by
    `benchmarks/rate_limits.py` (interleaved rounds, medians), since a timed assertion on 2 shared cores is noise."""
    write_pairs(files[1], 60)
    fixed, adaptive = [], []
    for _ in range(3):
        fixed.append(label_under_a_token_budget(files, loopback, adaptive=False))
        adaptive.append(label_under_a_token_budget(files, loopback, adaptive=True))
        for path in files[2].parent.glob("adaptive-*.duckdb"):
            path.unlink()
    median = lambda values: sorted(values)[1]  # noqa: E731
    assert median(t for t, _, _ in fixed) > 0
    assert median(t for t, _, _ in adaptive) < median(t for t, _, _ in fixed) / 10
    assert [e for _, _, e in adaptive] == [0] * 3


def test_a_server_without_rate_limits_sees_concurrency_calls_in_flight(files, loopback):
    loopback.behaviour = Behaviour(truth=truth, latency_s=0.2)
    write_pairs(files[1], 20)
    summary = run_label(config(files, loopback, concurrency=16))
    assert summary.calls_sent == 80 and loopback.throttled == 0
    assert loopback.peak_in_flight == 16
    assert query(files[2], "SELECT count(*) FROM judgements WHERE attempts > 1") == [(0,)]
