"""Failures said out loud: failed calls show their reasons and counts and give a documented exit code; a first
batch that fails on the key, the URL or the connection stops the run with what to check; a confidence that
--threshold cannot use is a warning; an unpriced cost is unknown, never $0; a budget stop says how to go on."""

from __future__ import annotations

import json

import duckdb
import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.errors import ExitCode
from prefgen.judge.diagnose import AUTH, CONNECTION, CREDENTIALS, NOT_FOUND, failure_kind, what_to_check
from tests.loopback_server import Behaviour

CONSTITUTION = "name: f\nprinciples:\n  - id: q\n    text: Choose the better answer.\n"
N_PAIRS = 12  # 24 calls: more than the first batch when --concurrency is 4


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "c.yaml").write_text(CONSTITUTION)
    rows = [{"prompt": f"q{i}", "response_a": f"short {i}", "response_b": f"a longer answer {i}"}
            for i in range(N_PAIRS)]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return tmp_path


def label(inputs, *args: str, env: dict[str, str] | None = None):
    """`prefgen label` through the real CLI; stdout and stderr apart."""
    base = ["label", "-c", str(inputs / "c.yaml"), "-p", str(inputs / "p.jsonl"), "--db", str(inputs / "db.duckdb"),
            "--no-progress", "--max-attempts", "2", "--concurrency", "4", "--max-width", "1000"]
    return CliRunner().invoke(cli, [*base, *args], env={"OPENAI_API_KEY": None, "ANTHROPIC_API_KEY": None,
                                                         "ANTHROPIC_AUTH_TOKEN": None, **(env or {})})


def sent(inputs) -> int:
    con = duckdb.connect(str(inputs / "db.duckdb"), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM judgements").fetchone()[0]
    finally:
        con.close()


def test_missing_key_stops_after_the_first_batch_with_the_provider_message_and_the_key_variables(inputs, loopback):
    loopback.behaviour = Behaviour(api_key="the-right-key")
    result = label(inputs, "--judge", "openai:m", "--api-base", loopback.openai_base)
    assert result.exit_code == ExitCode.ALL_CALLS_FAILED
    assert "stopped after the first 4 calls" in result.output
    assert "Incorrect API key provided" in result.output  # the provider's own words
    assert "OPENAI_API_KEY" in result.output and "PREFGEN_API_KEY" in result.output
    assert sent(inputs) == 4 and loopback.request_count == 4  # not 24 calls into the same wall


def test_anthropic_base_url_ending_in_v1_is_a_404_that_says_to_drop_the_v1(inputs, loopback):
    loopback.behaviour = Behaviour(strict_paths=True)
    result = label(inputs, "--judge", "anthropic:m", "--api-base", f"{loopback.url}/v1", "--api-key", "k")
    assert result.exit_code == ExitCode.ALL_CALLS_FAILED
    assert "HTTP 404" in result.output and "/v1/v1/messages" in result.output
    assert "no /v1" in result.output
    assert sent(inputs) == 4


def test_openai_base_url_without_v1_is_a_404_that_says_to_add_it(inputs, loopback):
    loopback.behaviour = Behaviour(strict_paths=True)
    result = label(inputs, "--judge", "openai:m", "--api-base", loopback.url, "--api-key", "k")
    assert result.exit_code == ExitCode.ALL_CALLS_FAILED
    assert "ends in /v1" in result.output


def test_server_down_stops_early_and_names_the_url(inputs):
    result = label(inputs, "--judge", "openai:m", "--api-base", "http://127.0.0.1:9/v1", "--api-key", "k")
    assert result.exit_code == ExitCode.ALL_CALLS_FAILED
    assert "no connection to the server (http://127.0.0.1:9/v1)" in result.output
    assert sent(inputs) == 4


def test_litellm_missing_credentials_are_refused_before_any_call_naming_the_provider_variable(inputs):
    result = label(inputs, "--judge", "litellm:openai/m", "--max-attempts", "5")
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "needs an API key" in result.output and "OPENAI_API_KEY" in result.output
    assert not (inputs / "db.duckdb").exists()  # nothing sent, nothing written


def test_some_failed_calls_show_top_reasons_and_exit_3(inputs, loopback):
    loopback.behaviour = Behaviour(mode="status_400", fail_first_n=6)  # the first batch has 4: not all fatal
    result = label(inputs, "--judge", "openai:m", "--api-base", loopback.openai_base, "--api-key", "k")
    assert result.exit_code == ExitCode.CALLS_FAILED
    assert "6 of 24 calls failed; top reasons:" in result.output
    assert "     6  judge_error: PermanentError: HTTP 400: loopback says 400" in result.output
    assert "asked again when the same command runs again" in result.output


def test_every_call_failing_without_an_early_stop_exits_4(inputs, loopback):
    loopback.behaviour = Behaviour(mode="garbage")  # answers that name no verdict: all parse errors
    result = label(inputs, "--judge", "openai:m", "--api-base", loopback.openai_base, "--api-key", "k")
    assert result.exit_code == ExitCode.ALL_CALLS_FAILED
    assert "24 of 24 calls failed" in result.output and "names no verdict" in result.output


def test_a_clean_run_exits_0(inputs, loopback):
    result = label(inputs, "--judge", "openai:gpt-4o-mini", "--api-base", loopback.openai_base, "--api-key", "k")
    assert result.exit_code == ExitCode.OK, result.output
    assert "failed" not in result.output


def test_hard_verdicts_under_a_threshold_warn_at_the_start_and_in_the_summary(inputs, loopback):
    result = label(inputs, "--judge", "anthropic:m", "--api-base", loopback.anthropic_base, "--api-key", "k")
    assert result.exit_code == ExitCode.OK
    assert "warning: anthropic:m gives hard A/B verdicts" in result.stderr  # before any call
    assert "24 of 24 answers have no graded confidence" in result.stdout
    assert "--mode verbalised or --samples N" in result.stdout


def test_verbalised_mode_without_a_confidence_line_is_all_failed_with_a_warning(inputs, loopback):
    loopback.behaviour = Behaviour(states_confidence=False)
    result = label(inputs, "--judge", "anthropic:m", "--api-base", loopback.anthropic_base, "--api-key", "k",
                   "--mode", "verbalised")
    assert result.exit_code == ExitCode.ALL_CALLS_FAILED
    assert "gives no `Confidence: N` line" in result.output
    assert "does not follow --mode verbalised" in result.output


def test_an_unpriced_model_costs_unknown_not_zero(inputs, loopback):
    result = label(inputs, "--judge", "openai:some-local-model", "--api-base", loopback.openai_base,
                   "--api-key", "k")
    assert result.exit_code == ExitCode.OK
    assert "$0.0000" not in result.output
    assert "cost (this run)" in result.output and "unknown" in result.output


def test_budget_stop_exits_5_and_says_how_to_go_on(inputs, loopback):
    args = ("--judge", "openai:m", "--api-base", loopback.openai_base, "--api-key", "k",
            "--price-in", "1000", "--price-out", "1000")
    first = label(inputs, *args, "--max-cost", "0.2")
    assert first.exit_code == ExitCode.BUDGET_REACHED, first.output
    assert "larger --max-cost" in first.output and "of --max-cost $0.2000" in first.output
    again = label(inputs, *args, "--max-cost", "0.2")  # the same budget again: the job spent it already
    assert again.exit_code == ExitCode.BUDGET_REACHED
    assert "calls planned / stored / sent" in again.output
    con = duckdb.connect(str(inputs / "db.duckdb"), read_only=True)
    assert con.execute("SELECT sum(cost) FROM runs").fetchone()[0] <= 0.2
    con.close()


def test_label_json_carries_the_exit_code_and_the_failures(inputs, loopback):
    loopback.behaviour = Behaviour(api_key="right")
    result = label(inputs, "--judge", "openai:m", "--api-base", loopback.openai_base, "--json")
    data = json.loads(result.stdout)
    assert data["exit_code"] == ExitCode.ALL_CALLS_FAILED == result.exit_code
    assert data["failures"][0]["calls"] == 4 and data["stopped_early"]


@pytest.mark.parametrize(("error", "kind"), [
    ("PermanentError: HTTP 401: Incorrect API key provided", AUTH),
    ("PermanentError: HTTP 403: forbidden", AUTH),
    ("PermanentError: HTTP 404: no route", NOT_FOUND),
    ("TransientError: APIConnectionError: Connection error.", CONNECTION),
    ("TransientError: HTTP 500: litellm.InternalServerError: OpenAIException - Missing credentials.", CREDENTIALS),
    ("TransientError: HTTP 500: loopback says 500", None),
    ("PermanentError: HTTP 400: bad request", None),
    (None, None),
])
def test_failures_no_retry_mends_are_told_apart_from_the_rest(error, kind):
    assert failure_kind(error) == kind


def test_what_to_check_follows_the_litellm_provider_protocol():
    assert "no /v1" in what_to_check(NOT_FOUND, "litellm", provider="anthropic")
    assert "ends in /v1" in what_to_check(NOT_FOUND, "litellm", provider="hosted_vllm")
    assert "ANTHROPIC_API_KEY" in what_to_check(CREDENTIALS, "litellm", provider="anthropic")


def test_stats_show_an_unpriced_jobs_cost_as_unknown(inputs, loopback):
    base = ("--api-base", loopback.openai_base, "--api-key", "k")
    label(inputs, "--judge", "openai:some-local-model", *base)
    stats = CliRunner().invoke(cli, ["stats", "--db", str(inputs / "db.duckdb"), "--json"])
    data = json.loads(stats.output)
    assert data["overview"]["cost"] == "unknown"
    assert data["jobs"][0]["cost"] == "unknown"
    label(inputs, "--judge", "openai:some-local-model", "--price-in", "1", "--price-out", "1", *base, "--limit", "1")
    priced = json.loads(CliRunner().invoke(cli, ["stats", "--db", str(inputs / "db.duckdb"), "--json"]).output)
    assert priced["jobs"][0]["cost"] != "unknown"  # the latest run gave prices
