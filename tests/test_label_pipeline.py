"""The label pipeline end to end against the loopback judge: swapping, filtering, resume, budget, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from prefgen.errors import InputError, PrefgenError
from prefgen.pipelines.labelling import LabelConfig, run_label
from tests.loopback_server import Behaviour

REPO = Path(__file__).resolve().parents[1]

CONSTITUTION = """\
name: pipeline-test
principles:
  - id: quality
    text: Choose the response of higher quality.
  - id: safety
    text: Choose the safer response.
sampling:
  per_pair: 2
  seed: 1
"""


def quality(text: str) -> int:
    return int(re.search(r"quality (\d+)", text)[1])


def truth(first: str, second: str) -> str:
    return "A" if quality(first) > quality(second) else "B"


def write_pairs(path: Path, n: int) -> Path:
    """Pairs whose better response is the one with the higher hidden quality number."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            hi, lo = f"answer {i} with quality {i % 7 + 3}", f"answer {i} with quality {i % 3}"
            a, b = (hi, lo) if i % 2 else (lo, hi)
            f.write(json.dumps({"id": f"p{i}", "prompt": f"question {i}?", "response_a": a, "response_b": b}) + "\n")
    return path


@pytest.fixture
def files(tmp_path):
    constitution = tmp_path / "c.yaml"
    constitution.write_text(CONSTITUTION, encoding="utf-8")
    return constitution, write_pairs(tmp_path / "pairs.jsonl", 20), tmp_path / "out.duckdb"


def config(files, server, **overrides) -> LabelConfig:
    constitution, pairs, db = files
    base = dict(constitution=constitution, pairs=str(pairs), db=db, judge="openai:gpt-4o-mini",
                api_base=server.openai_base, api_key="test-key", concurrency=8, progress=False,
                max_attempts=3)
    return LabelConfig(**(base | overrides))


def query(db: Path, sql: str):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_always_first_judge_keeps_nothing_and_shows_full_position_bias(files, loopback):
    loopback.behaviour = Behaviour(truth=None)  # always answers "A"
    summary = run_label(config(files, loopback))
    assert summary.calls_sent == 20 * 2 * 2
    assert summary.kept_pairs == 0
    assert summary.drop_reasons == {"inconsistent": 40}
    assert summary.first_slot_share == 1.0
    rows = query(files[2], "SELECT min(first_slot_share), max(first_slot_share) FROM position_bias")
    assert rows == [(1.0, 1.0)]


def test_truthful_judge_with_first_slot_bias_recovers_the_truth_on_kept_pairs(files, loopback):
    loopback.behaviour = Behaviour(truth=truth, first_bias=0.3, confidence=0.9)
    summary = run_label(config(files, loopback))
    kept = query(files[2], "SELECT prompt, chosen, rejected FROM kept_pairs")
    assert 0 < len(kept) < 20  # the bias made some pairs inconsistent, and those were dropped
    assert all(quality(chosen) > quality(rejected) for _, chosen, rejected in kept)
    assert summary.drop_reasons.get("inconsistent", 0) > 0
    assert 0.5 < summary.first_slot_share < 0.9


def test_soft_labels_come_from_logprobs_and_the_source_is_recorded(files, loopback):
    loopback.behaviour = Behaviour(truth=truth, confidence=0.8)
    run_label(config(files, loopback, limit=3))
    rows = query(files[2], "SELECT DISTINCT confidence_source, round(confidence, 6) FROM preferences")
    assert rows == [("logprobs", 0.6)]  # p_ab = 0.8, p_ba = 0.2 -> P(a) = 0.8 -> |2P - 1| = 0.6


def test_rerun_of_a_finished_job_sends_no_request(files, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    first = run_label(config(files, loopback))
    seen = loopback.request_count
    again = run_label(config(files, loopback))
    assert loopback.request_count == seen
    assert again.calls_sent == 0 and again.calls_cached == first.calls_planned
    assert again.kept_pairs == first.kept_pairs
    assert not Path(f"{files[2]}.label.lock").exists()  # no lock file left beside the store


def test_garbage_answers_are_stored_as_parse_errors(files, loopback):
    loopback.behaviour = Behaviour(mode="garbage")
    summary = run_label(config(files, loopback, limit=2))
    statuses = query(files[2], "SELECT status, count(*), min(raw_text) FROM judgements GROUP BY status")
    assert statuses == [("parse_error", 8, "I cannot decide.")]
    assert summary.drop_reasons == {"parse_error": 4}


def test_rate_limits_are_retried_after_the_servers_delay(files, loopback):
    loopback.behaviour = Behaviour(truth=truth, mode="status_429", fail_first_n=3, retry_after=0.05)
    summary = run_label(config(files, loopback, limit=2, concurrency=1, max_attempts=5))
    assert summary.judge_errors == 0
    assert query(files[2], "SELECT max(attempts), count(*) FROM judgements") == [(4, 8)]


def test_a_call_that_keeps_failing_is_recorded_and_the_run_goes_on(files, loopback):
    loopback.behaviour = Behaviour(mode="status_500")
    cfg = config(files, loopback, limit=2, max_attempts=2)
    summary = run_label(cfg.model_copy(update={"timeout_s": 5.0}))
    assert summary.status == "finished" and summary.judge_errors == 8
    rows = query(files[2], "SELECT DISTINCT status, attempts FROM judgements")
    assert rows == [("judge_error", 2)]
    assert summary.drop_reasons == {"judge_error": 4}
    loopback.behaviour = Behaviour(truth=truth)  # the provider recovers: errors are asked again
    again = run_label(cfg)
    assert again.calls_sent == 8 and again.judge_errors == 0
    assert query(files[2], "SELECT count(*), count(DISTINCT request_hash) FROM judgements") == [(8, 8)]


def test_max_cost_stops_before_the_budget_is_passed(files, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    # 1 USD per token in and out: each call costs a few hundred dollars, so 1000 USD allows only a few.
    summary = run_label(config(files, loopback, max_cost=1000.0, price_in=1e6, price_out=1e6, concurrency=2))
    assert summary.status == "budget_stopped"
    assert 0 < summary.calls_sent < 80
    spent = query(files[2], "SELECT sum(cost) FROM judgements")[0][0]
    assert spent <= 1000.0


def test_max_cost_without_a_known_price_is_refused(files, loopback):
    with pytest.raises(PrefgenError, match="--price-in"):
        run_label(config(files, loopback, judge="openai:my-private-model", max_cost=1.0))


@pytest.mark.parametrize(("flags", "message"), [
    (["--workers", "4"], "--workers only acts with --engine ray: add --engine ray, or leave it out"),
    (["--address", "ray://head:10001", "--shards", "s"], "--address, --shards only act with --engine ray"),
    (["--batch-poll", "5"], "--batch-poll only acts with --batch"),
])
def test_an_option_of_another_way_of_running_is_refused_rather_than_ignored(files, flags, message):
    constitution, pairs, db = files
    done = subprocess.run([sys.executable, "-m", "prefgen.cli", "label", "-c", str(constitution), "-p", str(pairs),
                           "--db", str(db), *flags], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert message in " ".join(done.stderr.split())
    assert not db.exists()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"batch_size": 32}, "--batch-size: not read by the openai judge (of these options it takes --transport, "
                         "--api-base)"),
    ({"judge": "anthropic:claude-haiku-4-5", "transport": "sdk"}, "--transport: not read by the anthropic judge"),
    ({"judge": "local"}, "--api-base: not read by the local judge (of these options it takes --batch-size)"),
])
def test_a_setting_the_judge_does_not_read_is_refused(files, loopback, overrides, message):
    with pytest.raises(PrefgenError, match=re.escape(message)):
        run_label(config(files, loopback, **overrides))


def test_an_explicit_default_is_accepted_by_every_judge(files, loopback):
    summary = run_label(config(files, loopback, judge="anthropic:claude-haiku-4-5", api_base=loopback.anthropic_base,
                               transport="http", batch_size=8, workers=2, limit=2))
    assert summary.status == "finished"


def test_dry_run_estimates_and_sends_nothing(files, loopback):
    summary = run_label(config(files, loopback, dry_run=True))
    assert loopback.request_count == 0
    assert summary.estimated["calls"] == 80 and summary.estimated["cost"] > 0
    assert not files[2].exists()


def test_principles_drawn_do_not_depend_on_concurrency(files, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    constitution, pairs, db = files
    cfg = config(files, loopback, concurrency=1)
    run_label(cfg.model_copy(update={"db": db.with_name("one.duckdb")}))
    run_label(cfg.model_copy(update={"db": db.with_name("many.duckdb"), "concurrency": 16}))
    sql = "SELECT pair_id, principle_id, ordering, verdict FROM judgements ORDER BY ALL"
    assert query(db.with_name("one.duckdb"), sql) == query(db.with_name("many.duckdb"), sql)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "q", "response_a": "x", "response_b": "y"', "line 3"),
        ('{"prompt": "q", "response_a": "x"}', "missing column(s) response_b"),
        ('{"prompt": "q", "response_a": "", "response_b": "y"}', "response_a: empty response"),
        ('{"prompt": "q", "response_a": "same", "response_b": " same "}', "identical"),
    ],
)
def test_bad_pairs_file_fails_cleanly_naming_the_line(files, loopback, line, message):
    constitution, pairs, db = files
    lines = pairs.read_text().splitlines()
    lines.insert(2, line)
    pairs.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        run_label(config(files, loopback))
    assert f"{pairs}:3" in str(info.value)
    assert message.replace("line 3", "") in str(info.value)
    assert loopback.request_count == 0 and not db.exists()


def test_non_utf8_pairs_file_fails_cleanly(files, loopback):
    constitution, pairs, db = files
    pairs.write_bytes(pairs.read_bytes() + b'{"prompt": "caf\xe9", "response_a": "x", "response_b": "y"}\n')
    with pytest.raises(InputError, match=r":21: not UTF-8"):
        run_label(config(files, loopback))
    assert not db.exists()


def test_skip_bad_labels_the_good_rows(files, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    constitution, pairs, db = files
    pairs.write_text(pairs.read_text() + '{"prompt": "q", "response_a": "x"}\n')
    summary = run_label(config(files, loopback, skip_bad=True))
    assert summary.pairs == 20


def test_chat_prompts_are_rendered_as_transcripts(tmp_path, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    pairs = tmp_path / "chat.jsonl"
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "rate me"}]
    pairs.write_text(json.dumps({"prompt": chat, "response_a": "quality 1", "response_b": "quality 5"}) + "\n")
    constitution = tmp_path / "c.yaml"
    constitution.write_text(CONSTITUTION)
    summary = run_label(config((constitution, pairs, tmp_path / "db.duckdb"), loopback))
    assert summary.kept_pairs == 1
    user = loopback.requests[0].body["messages"][1]["content"]
    assert "User: hi\n\nAssistant: hello\n\nUser: rate me" in user
    assert query(tmp_path / "db.duckdb", "SELECT is_chat FROM pairs") == [(True,)]


def label_command(files, server) -> list[str]:
    constitution, pairs, db = files
    return [sys.executable, "-m", "prefgen.cli", "label", "-c", str(constitution), "-p", str(pairs),
            "--db", str(db), "--judge", "openai:gpt-4o-mini", "--api-base", server.openai_base,
            "--api-key", "test-key", "--concurrency", "4", "--no-progress"]


def test_killed_run_resumes_with_one_judgement_per_call_and_no_repeat(files, loopback):
    """SIGKILL mid-run, then the same command: exactly one judgement per (pair, principle, order), and no
    request is sent again whose answer was already stored."""
    constitution, pairs, db = files
    write_pairs(pairs, 60)
    loopback.behaviour = Behaviour(truth=truth, latency_s=0.05)
    command = label_command(files, loopback)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while loopback.request_count < 120 and time.monotonic() < deadline:  # well past the first batch write
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert loopback.request_count < 240, "the run finished before it could be killed"
    stored = {row[0] for row in query(db, "SELECT request_hash FROM judgements")}
    assert stored, "nothing was written before the kill"
    before = loopback.request_count
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # The resume asks exactly the calls with no stored answer: any repeat of a stored one would push the
    # count up, and any skipped call would leave a hole in the 240 rows checked below.
    assert loopback.request_count - before == 240 - len(stored)
    counts = query(db, "SELECT count(*), count(DISTINCT (pair_id, principle_id, ordering)) FROM judgements")
    assert counts == [(240, 240)]
    assert query(db, "SELECT count(*) FROM preferences WHERE drop_reason = 'pending'") == [(0,)]


def test_anthropic_judge_with_verbalised_confidence(files, loopback):
    loopback.behaviour = Behaviour(truth=truth, confidence=0.85)
    summary = run_label(config(files, loopback, judge="anthropic:claude-haiku-4-5", api_base=loopback.url,
                               mode="verbalised", limit=4))
    assert summary.judge_errors == 0 and summary.kept_pairs == 4
    rows = query(files[2], "SELECT DISTINCT confidence_source, backend FROM judgements")
    assert rows == [("verbalised", "anthropic")]
    assert query(files[2], "SELECT DISTINCT round(confidence, 6) FROM preferences") == [(0.7,)]


def test_self_consistency_over_samples_when_there_are_no_logprobs(files, loopback):
    loopback.behaviour = Behaviour(truth=truth, first_bias=0.2)
    summary = run_label(config(files, loopback, judge="anthropic:claude-haiku-4-5", api_base=loopback.url,
                               samples=5, limit=3, threshold=0.0))
    assert summary.judge_errors == 0
    sources = query(files[2], "SELECT DISTINCT confidence_source FROM judgements")
    assert sources == [("self_consistency",)]
    assert loopback.request_count == 3 * 2 * 2 * 5  # n separate samples: the messages API has no n


def test_litellm_judge_labels_through_the_pipeline(files, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    summary = run_label(config(files, loopback, judge="litellm:openai/gpt-4o-mini", limit=3))
    assert summary.judge_errors == 0 and summary.kept_pairs == 3
    assert query(files[2], "SELECT DISTINCT backend, confidence_source FROM judgements") == [("litellm", "logprobs")]


def label_in_flight(files, loopback, *, pairs: int = 60, requests: int = 40, latency_s: float = 0.05):
    """`prefgen label` started as a subprocess, returned once the server has seen `requests` calls."""
    write_pairs(files[1], pairs)
    loopback.behaviour = Behaviour(truth=truth, latency_s=latency_s)
    command = label_command(files, loopback)
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while loopback.request_count < requests and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc, command


def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(files, loopback):
    constitution, pairs, db = files
    proc, command = label_in_flight(files, loopback)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Run the same command to resume" in out
    sent_before = loopback.request_count
    assert query(db, "SELECT status FROM runs") == [("interrupted",)]
    stored = query(db, "SELECT count(*) FROM judgements")[0][0]
    assert stored == sent_before  # the calls in flight were finished and written, not lost
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert loopback.request_count - sent_before == 240 - stored


def test_a_rerun_with_nothing_to_send_says_so_instead_of_zero_calls_per_second(files, loopback):
    from click.testing import CliRunner

    from prefgen.cli import cli

    write_pairs(files[1], 10)
    loopback.behaviour = Behaviour(truth=truth)
    args = [str(a) for a in label_command(files, loopback)[3:]]  # the label command without `python -m ...`
    first = CliRunner().invoke(cli, args, terminal_width=100)
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(cli, args, terminal_width=100)
    assert again.exit_code == 0, again.output
    assert "0.0 calls/s" not in again.output and "- (none sent)" in again.output
    assert "Nothing to send: all 40 planned calls were answered by earlier runs" in again.output


def test_the_summary_and_the_report_page_give_one_run_the_same_calls_per_second(files, loopback):
    from prefgen.storage import report as report_sql
    from prefgen.storage.db import Store

    write_pairs(files[1], 30)
    loopback.behaviour = Behaviour(truth=truth, latency_s=0.02)
    summary = run_label(config(files, loopback))
    with Store(files[2], read_only=True) as store:
        (row,) = report_sql.runs(store)
    assert row["calls_per_s"] == pytest.approx(summary.calls_per_s, rel=0.05)
