"""--max-cost holds: reservations are upper bounds, spend comes from reported usage, retries are charged,
the budget counts every run of a job, and a killed run's spend is on record."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import pytest

from prefgen.judge.base import JUDGE_ERROR, Comparison
from prefgen.judge.core import JudgeClient
from prefgen.judge.openai_backend import OpenAIBackend
from prefgen.judge.pricing import Price
from prefgen.judge.prompts import make_template
from prefgen.pipelines.labelling import run_label
from tests.loopback_server import Behaviour
from tests.test_label_pipeline import REPO, config, files, label_command, query, truth, write_pairs  # noqa: F401

PRICED = dict(price_in=1e6, price_out=1e6)  # one dollar a token: costs are token counts


def test_budget_holds_when_the_provider_counts_three_times_the_estimate(files, loopback):
    # 3x the loopback's 4-characters-a-token count: 0.75 tokens a character, what the old estimate missed.
    loopback.behaviour = Behaviour(truth=truth, usage_factor=3.0)
    limit = 20_000.0
    summary = run_label(config(files, loopback, max_cost=limit, concurrency=64, **PRICED))
    assert summary.status == "budget_stopped"
    spent = query(files[2], "SELECT sum(cost) FROM judgements")[0][0]
    assert 0 < spent <= limit
    assert query(files[2], "SELECT cost FROM runs")[0][0] == pytest.approx(spent)


def test_cost_is_charged_from_the_usage_the_provider_reports(files, loopback):
    loopback.behaviour = Behaviour(truth=truth, usage_factor=3.0)
    run_label(config(files, loopback, **PRICED))
    charged, tokens = query(files[2], "SELECT sum(cost), sum(tokens_in + tokens_out) FROM judgements")[0]
    assert charged == pytest.approx(tokens)


def judge_once(loopback, **client_options):
    """One comparison judged through the real client and the loopback server: (verdict, the call's bound)."""

    async def go():
        backend = OpenAIBackend("judge", api_base=loopback.openai_base, api_key="k", timeout=5)
        template = make_template()
        client = JudgeClient(backend, template, template.sampling(), price=Price(1e6, 1e6), **client_options)
        messages = client.render(Comparison("q", "a", "b", "Be kind."))
        try:
            return await client.judge(messages), client.upper_bound_cost(messages)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_attempts_cut_off_by_the_provider_are_charged(loopback):
    loopback.behaviour = Behaviour(mode="faults", faults=("truncated",), fault_every=1)

    verdict, bound = judge_once(loopback, max_attempts=3, backoff_initial_s=0.001, backoff_max_s=0.01)
    assert verdict.status == JUDGE_ERROR and verdict.attempts == 3
    assert verdict.cost == pytest.approx(3 * bound)


def test_max_cost_counts_what_the_job_already_spent(files, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    first = run_label(config(files, loopback, limit=5, **PRICED))
    assert first.status == "finished" and first.cost > 0
    sent_before = loopback.request_count

    again = run_label(config(files, loopback, max_cost=first.cost * 1.01, **PRICED))

    assert again.status == "budget_stopped"
    assert loopback.request_count == sent_before  # the job had spent its budget already
    total = query(files[2], "SELECT sum(cost) FROM runs")[0][0]
    assert total <= first.cost * 1.01


def test_killed_run_has_its_spend_recorded_and_is_marked_interrupted(files, loopback):
    constitution, pairs, db = files
    write_pairs(pairs, 60)
    loopback.behaviour = Behaviour(truth=truth, latency_s=0.05)
    command = label_command(files, loopback) + ["--price-in", "1000000", "--price-out", "1000000"]
    proc = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while loopback.request_count < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (status, cost, sent), = query(db, "SELECT status, cost, n_calls_sent FROM runs")
    stored_cost, stored = query(db, "SELECT sum(cost), count(*) FROM judgements")[0]
    assert status == "running" and sent == stored and cost == pytest.approx(stored_cost)

    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert query(db, "SELECT status FROM runs ORDER BY started_at") == [("interrupted",), ("finished",)]


def test_answers_are_durable_within_a_second_even_when_they_arrive_in_a_burst(files, loopback):
    """Eight calls answer together at ~3 s, the next eight are still out: a kill 1.5 s later loses none of
    the eight answers (a write waits neither for a full batch nor for the next answer)."""
    constitution, pairs, db = files
    write_pairs(pairs, 4)  # 4 pairs x 2 principles x 2 orders = 16 calls, 8 at a time
    loopback.behaviour = Behaviour(truth=truth, latency_s=3.0)
    command = label_command(files, loopback)
    command[command.index("--concurrency") + 1] = "8"
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while loopback.request_count < 16 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert loopback.request_count == 16
    assert query(db, "SELECT count(*) FROM judgements") == [(8,)]


def test_an_absurd_usage_report_is_charged_no_more_than_the_calls_bound(loopback):
    loopback.behaviour = Behaviour(mode="faults", faults=("usage_absurd",), fault_every=1)

    verdict, bound = judge_once(loopback)
    assert verdict.status == "ok" and verdict.letter == "A"
    assert verdict.tokens_out == 1  # 1e30 reported, max_tokens 1 asked
    assert 0 < verdict.cost <= bound
    assert "passes this call's bound" in verdict.error


@pytest.mark.parametrize("fault", ["usage_strings", "usage_missing"])
def test_usage_that_cannot_be_read_is_charged_the_calls_bound(loopback, fault):
    # 17 of 1,200 calls of the issue-20 probe had text for usage and were charged $0.
    loopback.behaviour = Behaviour(mode="faults", faults=(fault,), fault_every=1)

    verdict, bound = judge_once(loopback)
    assert verdict.status == "ok" and verdict.letter == "A"
    assert verdict.cost == pytest.approx(bound) and verdict.cost > 0
    assert "usage could not be read" in verdict.error and "charged this call's bound" in verdict.error


def test_a_run_whose_usage_is_text_spends_its_reservations_not_nothing(files, loopback):
    loopback.behaviour = Behaviour(truth=truth, mode="faults", faults=("usage_strings",), fault_every=1)
    summary = run_label(config(files, loopback, limit=2, **PRICED))
    assert summary.cost > 0 and summary.calls_sent == 8
    charged = query(files[2], "SELECT min(cost), min(tokens_in) FROM judgements")[0]
    assert charged[0] > 0 and charged[1] > 0
