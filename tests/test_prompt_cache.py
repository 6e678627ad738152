"""A cache-friendly request: the shared part first, the pair last; cached tokens stored, priced and reported."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest

from prefgen.judge.anthropic_backend import system_field
from prefgen.judge.base import Comparison
from prefgen.judge.pricing import lookup_price
from prefgen.judge.prompts import Template, make_template
from prefgen.pipelines.labelling import run_label
from prefgen.storage import migrations
from prefgen.storage.db import LOCKED_DOWN
from tests.loopback_server import Behaviour
from tests.test_label_pipeline import REPO, config, files, query, truth  # noqa: F401 - fixture

LONG = "Consider every aspect of the question carefully, including tone, accuracy and usefulness. " * 60


def test_the_shared_part_comes_first_in_identical_bytes_for_every_call_of_a_principle():
    template = make_template()
    asks = [Comparison(f"question {i}?", f"answer {i}", f"reply {i}", "Be kind.") for i in range(3)]
    rendered = [template.render(ask) for ask in asks]
    systems = {messages[0]["content"] for messages in rendered}
    assert len(systems) == 1
    (system,) = systems
    assert system.endswith("Principle: Be kind.") and "single letter A or B" in system
    for messages, ask in zip(rendered, asks):
        user = messages[1]["content"]
        assert user.startswith("<prompt>\n" + ask.prompt)  # the prompt (shared by both orders), then the responses
        assert user.index(ask.first) < user.index(ask.second)
        assert "Be kind." not in user and "single letter" not in user
    assert template.version == "default-v2-direct"


def test_a_custom_templates_head_joins_the_shared_prefix_and_its_data_stays_in_the_user_message():
    body = "You grade assistants for a bank.\n\nRule: {principle}\n\nQuestion: {prompt}\n\nA: {first}\n\nB: {second}"
    system, user = make_template(body).render(Comparison("q?", "one", "two", "Be exact."))
    assert system["content"].endswith("You grade assistants for a bank.\n\nRule: Be exact.")
    assert user["content"] == "Question: q?\n\nA: one\n\nB: two"
    flat = make_template("{principle} {prompt} {first} {second}")
    assert flat.render(Comparison("q", "x", "y", "p"))[1]["content"] == "p q x y"  # no head: nothing moves


def test_a_job_labelled_with_the_old_layout_is_rebuilt_as_it_was_sent():
    record = {k: v for k, v in make_template().record().items() if k != "layout"}  # a v1 job's record
    old = Template.from_record(record)
    assert old.version == "default-v1-direct"
    system, user = old.render(Comparison("q?", "one", "two", "Be kind."))
    assert "Principle" not in system["content"]
    assert user["content"].startswith("Principle: Be kind.") and user["content"].endswith("nothing else.")


def long_prompt_pairs(path, n: int):
    """Pairs whose prompt is long enough (> 1,024 tokens with the system message) for OpenAI's prompt cache."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            hi, lo = f"answer {i} with quality {i % 7 + 3}", f"answer {i} with quality {i % 3}"
            f.write(json.dumps({"prompt": f"question {i}? {LONG}", "response_a": hi, "response_b": lo}) + "\n")
    return path


def test_cached_tokens_from_openai_usage_are_stored_and_charged_at_the_cached_rate(files, loopback):
    long_prompt_pairs(files[1], 4)
    loopback.behaviour = Behaviour(truth=truth, prompt_cache=True)
    summary = run_label(config(files, loopback, concurrency=1))
    rows = query(files[2], "SELECT tokens_in, tokens_out, tokens_cached, cost, ordering FROM judgements")
    assert len(rows) == 16
    price = lookup_price("gpt-4o-mini")
    assert all(cost == pytest.approx(price.cost(t_in, t_out, cached)) for t_in, t_out, cached, cost, _ in rows)
    cached = [row for row in rows if row[2]]
    # One at a time, the second order of each comparison finds the prompt its first order sent.
    assert len(cached) >= 8 and all(c[2] % 128 == 0 and c[2] >= 1024 for c in cached)
    assert summary.cost < price.cost(summary.tokens_in, summary.tokens_out)


def test_anthropic_marks_the_shared_prefix_for_the_cache_only_where_the_model_can_cache_it():
    assert system_field("claude-sonnet-4-5", "short system prompt") == "short system prompt"
    marked = system_field("claude-sonnet-4-5", LONG)
    assert marked == [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}]
    assert system_field("claude-haiku-4-5", LONG) == LONG  # Haiku 4.5 caches 4,096 tokens and more


def test_anthropic_cache_reads_and_writes_are_stored_and_charged_at_their_rates(files, loopback):
    constitution = files[0]
    constitution.write_text(constitution.read_text().replace("Choose the response of higher quality.", LONG[:-1]))
    loopback.behaviour = Behaviour(truth=truth, prompt_cache=True)
    run_label(config(files, loopback, judge="anthropic:claude-sonnet-4-5", api_base=loopback.url,
                     mode="verbalised", limit=3, concurrency=1))
    systems = [r.body["system"] for r in loopback.requests]
    marked = [s for s in systems if isinstance(s, list)]  # the long principle's calls; the short one's stay plain
    assert len(marked) == 6 and all(s[0]["cache_control"] == {"type": "ephemeral"} for s in marked)
    assert sum(isinstance(s, str) for s in systems) == 6
    rows = query(files[2], """SELECT tokens_in, tokens_out, tokens_cached, tokens_cache_written, cost
                              FROM judgements WHERE principle_id = 'quality'""")
    assert sum(1 for r in rows if r[3]) == 1 and sum(1 for r in rows if r[2]) == len(rows) - 1
    price = lookup_price("claude-sonnet-4-5")
    assert all(cost == pytest.approx(price.cost(t_in, t_out, cached, written))
               for t_in, t_out, cached, written, cost in rows)


def test_stats_and_the_report_page_show_the_share_of_input_tokens_served_from_cache(files, loopback, tmp_path):
    long_prompt_pairs(files[1], 3)
    loopback.behaviour = Behaviour(truth=truth, prompt_cache=True)
    run_label(config(files, loopback, concurrency=1))
    stats = subprocess.run([sys.executable, "-m", "prefgen.cli", "stats", "--db", str(files[2]), "--json"],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert stats.returncode == 0, stats.stderr
    (job,) = json.loads(stats.stdout)["jobs"]
    tokens_in, cached = query(files[2], "SELECT sum(tokens_in), sum(tokens_cached) FROM judgements")[0]
    assert job["cached_input_share"] == pytest.approx(cached / tokens_in) and 0 < cached < tokens_in
    page = tmp_path / "report.html"
    report = subprocess.run([sys.executable, "-m", "prefgen.cli", "report", "--db", str(files[2]), "--out",
                             str(page)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert "cached_input_share" in page.read_text()


def test_stats_reads_a_store_from_before_cached_tokens_were_kept(tmp_path):
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db), config=dict(LOCKED_DOWN))
    con.execute("CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP DEFAULT now())")
    for migration in migrations.MIGRATIONS:
        if migration.__name__ < "m014":
            migration(con)
            con.execute("INSERT INTO _migrations (name) VALUES (?)", [migration.__name__])
    con.execute("""INSERT INTO label_jobs (job_id, constitution_id, judge_spec, backend, model, template_version,
                   confidence_mode, sampling) VALUES ('j', 'c', 'openai:gpt-4o-mini', 'openai', 'gpt-4o-mini',
                   'default-v1-direct', 'logprobs', '{}')""")
    con.close()
    stats = subprocess.run([sys.executable, "-m", "prefgen.cli", "stats", "--db", str(db), "--json"], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert stats.returncode == 0, stats.stderr
    (job,) = json.loads(stats.stdout)["jobs"]
    assert job["cached_input_share"] is None
