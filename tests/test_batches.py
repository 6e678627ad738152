"""`label --batch` end to end: the real openai, anthropic and litellm clients against the loopback judge's batch
wire protocols (files + batches + output files; Message Batches + results)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from rich.console import Console

from prefgen.errors import PrefgenError
from prefgen.judge.batches import batch_client_for
from prefgen.pipelines.labelling import LabelConfig, run_label
from prefgen.pipelines.labelling.job import LabelJob
from prefgen.pipelines.labelling.progress import LabelProgress
from prefgen.storage import batches as batches_sql
from prefgen.storage.db import Store
from tests.loopback_batches import BatchBehaviour
from tests.loopback_server import Behaviour
from tests.test_label_pipeline import REPO, config, files, query, truth, write_pairs  # noqa: F401 - fixture

OPENAI = "openai:gpt-4o-mini"
ANTHROPIC = "anthropic:claude-haiku-4-5"


def batch_config(files, server, judge: str = OPENAI, **overrides) -> LabelConfig:
    base = server.url if judge.startswith("anthropic") else server.openai_base
    settings = {"api_base": base, "batch": True, "batch_poll_s": 0.02,
                "mode": "verbalised" if judge.startswith("anthropic") else "direct"}
    return config(files, server, judge=judge, **(settings | overrides))


def one_row_per_call(db) -> list[tuple]:
    """(rows, distinct (pair, principle, order)) over the judgements."""
    return query(db, "SELECT count(*), count(DISTINCT (pair_id, principle_id, ordering)) FROM judgements")


@pytest.mark.parametrize("judge", [OPENAI, ANTHROPIC])
def test_batch_run_stores_every_answer_once_at_half_the_price_of_asking_directly(files, loopback, judge, tmp_path):
    loopback.behaviour = Behaviour(truth=truth)
    summary = run_label(batch_config(files, loopback, judge, limit=6))
    assert summary.status == "finished" and summary.judge_errors == 0 and summary.kept_pairs == 6
    assert summary.batches == {"submitted": 1, "collected": 1, "open": 0}
    assert loopback.received == 0  # nothing was asked directly
    assert loopback.batches.counts()["requests"] == 24
    assert one_row_per_call(files[2]) == [(24, 24)]
    assert query(files[2], "SELECT count(DISTINCT batch_id), count(batch_id) FROM judgements") == [(1, 24)]
    direct = run_label(config(files, loopback, judge=judge, db=tmp_path / "direct.duckdb", limit=6,
                              api_base=batch_config(files, loopback, judge).api_base,
                              mode="verbalised" if judge == ANTHROPIC else "direct"))
    assert direct.calls_sent == 24
    assert summary.cost == pytest.approx(direct.cost / 2)  # the batch rate, on the same reported usage
    # The same verdicts whichever way they were asked.
    verdicts = "SELECT request_hash, verdict, p_first FROM judgements ORDER BY request_hash"
    assert query(files[2], verdicts) == query(tmp_path / "direct.duckdb", verdicts)


def test_both_orders_of_a_comparison_travel_in_the_same_batch(files, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    summary = run_label(batch_config(files, loopback, limit=10, batch_max_requests=6))
    assert summary.batches["submitted"] == 7  # 40 calls, 6 a batch, cut between (pair, principle) groups
    split = query(files[2], """SELECT pair_id, principle_id FROM judgements
                               GROUP BY ALL HAVING count(DISTINCT batch_id) > 1""")
    assert split == []


@pytest.mark.parametrize("judge", [OPENAI, ANTHROPIC])
def test_a_batch_that_expires_half_done_leaves_judge_errors_that_the_next_run_asks_again(files, loopback, judge):
    loopback.behaviour = Behaviour(truth=truth)
    loopback.batches.behaviour = BatchBehaviour(answered_share=0.5)
    first = run_label(batch_config(files, loopback, judge, limit=5))
    assert first.calls_sent == 20 and first.judge_errors == 10
    assert first.exit_code != 0
    errors = query(files[2], "SELECT DISTINCT error FROM judgements WHERE status = 'judge_error'")
    assert len(errors) == 1 and errors[0][0].startswith("expired")
    assert query(files[2], "SELECT sum(cost) FROM judgements WHERE status = 'judge_error'") == [(0.0,)]
    loopback.batches.behaviour = BatchBehaviour()
    second = run_label(batch_config(files, loopback, judge, limit=5))
    assert second.calls_sent == 10 and second.judge_errors == 0 and second.calls_cached == 10
    assert loopback.batches.counts()["requests"] == 20  # the answered half was not asked again
    assert one_row_per_call(files[2]) == [(20, 20)]
    assert query(files[2], "SELECT count(*) FROM preferences WHERE drop_reason IN ('judge_error', 'pending')") == [(0,)]


def test_failed_requests_of_a_batch_are_judge_errors_with_the_providers_words(files, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    loopback.batches.behaviour = BatchBehaviour(error_every=4)
    summary = run_label(batch_config(files, loopback, limit=4))
    assert summary.judge_errors == 4
    assert query(files[2], "SELECT DISTINCT error FROM judgements WHERE status = 'judge_error'") == [
        ("HTTP 400: invalid_request_error: loopback says this request is invalid",)]


def label_command(files, server, *extra: str) -> list[str]:
    constitution, pairs, db = files
    return [sys.executable, "-m", "prefgen.cli", "label", "-c", str(constitution), "-p", str(pairs), "--db",
            str(db), "--judge", OPENAI, "--api-base", server.openai_base, "--api-key", "test-key", "--batch",
            "--batch-poll", "0.05", "--batch-max-requests", "16", "--no-progress", *extra]


def test_a_run_killed_between_submit_and_collect_resumes_polling_and_submits_nothing_again(files, loopback):
    write_pairs(files[1], 12)
    loopback.behaviour = Behaviour(truth=truth)
    loopback.batches.behaviour = BatchBehaviour(hold=True)
    proc = subprocess.Popen(label_command(files, loopback), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while loopback.batches.counts()["polls"] < 3 and time.monotonic() < deadline:  # all 3 submitted, polling
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    submitted = loopback.batches.counts()
    assert submitted["created"] == 3 and submitted["uploads"] == 3
    assert query(files[2], "SELECT count(*) FROM judgements") == [(0,)]
    assert query(files[2], "SELECT count(provider_batch_id), sum(n_requests) FROM label_batches") == [(3, 48)]
    loopback.batches.behaviour = BatchBehaviour()  # the provider finishes them meanwhile
    done = subprocess.run(label_command(files, loopback), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    after = loopback.batches.counts()
    assert (after["created"], after["uploads"], after["requests"]) == (3, 3, 48)  # polled, not sent again
    assert loopback.received == 0
    assert one_row_per_call(files[2]) == [(48, 48)]
    assert query(files[2], "SELECT DISTINCT status FROM label_batches") == [("collected",)]


@pytest.mark.parametrize("judge", [OPENAI, ANTHROPIC])
def test_a_batch_whose_id_never_reached_the_store_is_found_and_not_sent_again(files, loopback, judge):
    """A kill right after the provider accepted a batch and before its id was stored: OpenAI's is found by the key
    in its metadata, Anthropic's by its time and size."""
    loopback.behaviour = Behaviour(truth=truth)
    cfg = batch_config(files, loopback, judge, limit=2)
    job = LabelJob.from_config(cfg)
    from prefgen.pipelines.labelling.inputs import PairsRead
    from prefgen.pipelines.labelling.job import plan_tasks
    from prefgen.storage.batches import BatchItem

    pairs = next(iter(job.chunks(PairsRead([]))))
    tasks = plan_tasks(job.client, job.constitution, pairs)
    with Store(cfg.db) as store:
        job.save_inputs(store)
        batches_sql.record_batch(store, batch_key="k-lost", job_id=job.job_id, run_id="run-killed", backend="x",
                                 model="x", reserved=0.0,
                                 items=[BatchItem(t.request_hash, t.pair_id, t.principle_id, t.ordering, 999, 1)
                                        for t in tasks])

    async def submit_without_storing_the_id() -> None:
        client = batch_client_for(job.client.backend)
        await client.submit("k-lost", [(t.request_hash, t.messages) for t in tasks], job.client.params)
        await client.aclose()

    asyncio.run(submit_without_storing_the_id())
    assert loopback.batches.counts()["created"] == 1
    summary = run_label(cfg)
    assert summary.status == "finished" and summary.calls_sent == 8
    assert loopback.batches.counts()["created"] == 1 and loopback.received == 0
    assert query(cfg.db, "SELECT batch_key, status FROM label_batches") == [("k-lost", "collected")]


def test_polling_a_batch_the_provider_does_not_know_stops_the_run_with_the_reason_and_keeps_the_batch(files,
                                                                                                  loopback):
    loopback.behaviour = Behaviour(truth=truth)
    cfg = batch_config(files, loopback, limit=1)
    job = LabelJob.from_config(cfg)
    with Store(cfg.db) as store:
        job.save_inputs(store)
        batches_sql.record_batch(store, batch_key="k-gone", job_id=job.job_id, run_id="run-old", backend="openai",
                                 model="gpt-4o-mini", reserved=0.0, items=[])
        batches_sql.mark_submitted(store, "k-gone", "batch_nobody_knows")
    summary = run_label(cfg)
    assert summary.status == "failed" and summary.exit_code != 0
    assert "polling batch batch_nobody_knows failed 10 times in a row" in summary.stopped_early
    assert "404" in summary.stopped_early
    assert query(cfg.db, "SELECT status FROM label_batches WHERE batch_key = 'k-gone'") == [("submitted",)]


def test_calls_waiting_in_a_batch_are_not_asked_directly_and_are_collected_once_it_ends(files, loopback):
    write_pairs(files[1], 12)
    loopback.behaviour = Behaviour(truth=truth)
    loopback.batches.behaviour = BatchBehaviour(hold=True)
    proc = subprocess.Popen(label_command(files, loopback, "--limit", "4"), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while loopback.batches.counts()["polls"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Asked directly while the batch (the first 4 pairs) still runs: only the other 8 pairs are sent.
    direct = run_label(config(files, loopback))
    assert direct.calls_sent == 32 and loopback.received == 32 and direct.calls_in_batches == 16
    assert any("wait in provider batches" in w for w in direct.warnings)
    loopback.batches.behaviour = BatchBehaviour()
    again = run_label(config(files, loopback))  # the batch has ended: collected first, nothing asked
    assert again.calls_sent == 16 and loopback.received == 32
    assert one_row_per_call(files[2]) == [(48, 48)]
    assert query(files[2], "SELECT count(*) FROM preferences WHERE drop_reason = 'pending'") == [(0,)]


def test_calls_answered_directly_are_not_put_in_a_batch(files, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    run_label(config(files, loopback, limit=5))
    assert loopback.received == 20
    summary = run_label(batch_config(files, loopback, limit=8))
    assert summary.calls_cached == 20 and summary.calls_sent == 12
    assert loopback.batches.counts()["requests"] == 12
    assert one_row_per_call(files[2]) == [(32, 32)]


def test_max_cost_is_reserved_per_batch_at_the_batch_rate_before_it_is_submitted(files, loopback, tmp_path):
    loopback.behaviour = Behaviour(truth=truth)
    full = run_label(config(files, loopback, db=tmp_path / "probe.duckdb", limit=1, dry_run=True))
    per_call_full = full.estimated["cost_max"] / full.estimated["calls"]
    # Room for 10 calls at the full rate's bound, so for 20 at the batch rate: 5 of the 20 pairs.
    limit = 10.5 * per_call_full
    summary = run_label(batch_config(files, loopback, max_cost=limit, batch_max_requests=8))
    assert summary.status == "budget_stopped"
    assert summary.calls_sent == 20 and summary.job_cost <= limit
    reserved = query(files[2], "SELECT sum(reserved), sum(n_requests) FROM label_batches")[0]
    assert reserved[1] == 20 and reserved[0] <= limit
    assert query(files[2], """SELECT count(*) FROM (SELECT pair_id, principle_id FROM judgements
                              GROUP BY ALL HAVING count(*) <> 2)""") == [(0,)]  # whole comparisons only


def test_dry_run_with_batch_prices_at_the_batch_rate(files, loopback):
    plain = run_label(config(files, loopback, dry_run=True))
    batched = run_label(batch_config(files, loopback, dry_run=True))
    assert batched.estimated["cost"] == pytest.approx(plain.estimated["cost"] / 2)
    assert batched.estimated["cost_max"] == pytest.approx(plain.estimated["cost_max"] / 2)
    assert loopback.batches.counts()["created"] == 0


def test_litellm_sends_openai_format_batches(files, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    summary = run_label(batch_config(files, loopback, "litellm:openai/gpt-4o-mini", limit=3))
    assert summary.status == "finished" and summary.calls_sent == 12 and summary.kept_pairs == 3
    assert loopback.received == 0 and loopback.batches.counts()["created"] == 1


def test_anthropic_batches_warn_that_threshold_cannot_filter_hard_verdicts(files, loopback, caplog):
    loopback.behaviour = Behaviour(truth=truth)
    summary = run_label(batch_config(files, loopback, ANTHROPIC, mode="direct", limit=2))
    assert "no logprobs, in batches neither" in caplog.text and "--mode verbalised or --samples N" in caplog.text
    assert any("--threshold 0.5 cannot filter them" in w for w in summary.warnings)
    assert query(files[2], "SELECT DISTINCT confidence_source FROM judgements") == [("verdict",)]


def test_anthropic_self_consistency_sends_n_requests_per_call_and_merges_them(files, loopback):
    loopback.behaviour = Behaviour(truth=truth, first_bias=0.3)
    summary = run_label(batch_config(files, loopback, ANTHROPIC, mode="direct", samples=3, limit=2, threshold=0.0))
    assert summary.judge_errors == 0 and summary.calls_sent == 8
    assert loopback.batches.counts()["requests"] == 24
    assert query(files[2], "SELECT DISTINCT confidence_source FROM judgements") == [("self_consistency",)]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"judge": "local", "api_base": None}, "has no batch API here"),
    ({"api_base": "http://127.0.0.1:1/v1,http://127.0.0.1:2/v1"}, "has no batch API here"),
])
def test_batch_is_refused_for_a_judge_without_a_batch_api(files, loopback, overrides, message):
    with pytest.raises(PrefgenError, match=message):
        run_label(batch_config(files, loopback, **overrides))


def test_batch_with_the_ray_engine_is_refused(files, loopback):
    with pytest.raises(ValueError, match="leave out --engine ray"):
        batch_config(files, loopback, engine="ray")


def test_progress_shows_each_batch_submitted_running_and_collected():
    out = io.StringIO()
    progress = LabelProgress(40, console=Console(file=out, width=140, force_terminal=False))
    with progress:
        progress.batch("batch_loopback_7", "submitted", 0, 20)
        progress.batch("batch_loopback_7", "in_progress", 5, 20)
        progress.batch("batch_loopback_9", "collected", 20, 20)
    text = out.getvalue()
    assert "batch batch_loopback_7 in_progress" in text and "5/20" in text
    assert "batch batch_loopback_9 collected" in text and "20/20" in text


def test_stats_lists_the_batches_and_the_share_answered_in_batches(files, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    run_label(batch_config(files, loopback, limit=2))
    done = subprocess.run([sys.executable, "-m", "prefgen.cli", "stats", "--db", str(files[2]), "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env={**os.environ})
    assert done.returncode == 0, done.stderr
    tables = json.loads(done.stdout)
    batches = tables["batches"]  # stats --json is keyed by fact
    assert [(b["status"], b["n_requests"]) for b in batches] == [("collected", 8)]
    assert tables["jobs"][0]["batched_share"] == 1.0


def test_results_that_can_never_be_read_stop_the_run_with_the_reason_instead_of_polling_forever(files, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    loopback.batches.behaviour = BatchBehaviour(results_unreadable=True)
    summary = run_label(batch_config(files, loopback, limit=1))
    assert summary.status == "failed" and summary.exit_code != 0
    assert "reading the results of batch" in summary.stopped_early and "failed 10 times" in summary.stopped_early
