"""The command line: every command has help, errors are one line with a non-zero exit, sql is read-only."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import duckdb
import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from tests.loopback_server import Behaviour

CONSTITUTION = "name: cli\nprinciples:\n  - id: q\n    text: Choose the better answer.\n"


def test_every_command_has_help_text():
    runner = CliRunner()
    for name, command in cli.commands.items():
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, name
        assert command.help and len(command.help) > 20, f"{name} needs a real help text"


def test_help_is_fast_because_heavy_libraries_load_lazily():
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", "import sys, prefgen.cli; "
                          "print(any(m in sys.modules for m in ('torch', 'transformers', 'litellm', 'openai')))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert time.perf_counter() - started < 10


@pytest.fixture
def labelled_db(tmp_path, loopback):
    loopback.behaviour = Behaviour(truth=lambda first, second: "A" if len(first) > len(second) else "B")
    (tmp_path / "c.yaml").write_text(CONSTITUTION)
    rows = [{"prompt": f"q{i}", "response_a": "short", "response_b": "a much longer answer " * (i + 1)}
            for i in range(5)]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    db = tmp_path / "db.duckdb"
    result = CliRunner().invoke(cli, ["label", "-c", str(tmp_path / "c.yaml"), "-p", str(tmp_path / "p.jsonl"),
                                      "--judge", "openai:gpt-4o-mini", "--api-base", loopback.openai_base,
                                      "--api-key", "k", "--db", str(db), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "kept pairs" in result.output
    return db


def test_label_command_writes_what_the_library_reads_back(labelled_db):
    con = duckdb.connect(str(labelled_db), read_only=True)
    assert con.execute("SELECT count(*) FROM judgements").fetchone() == (10,)
    assert con.execute("SELECT count(*) FROM kept_pairs").fetchone() == (5,)
    con.close()


def test_sql_exports_csv_json_and_parquet(labelled_db, tmp_path):
    runner = CliRunner()
    query = "SELECT pair_id, chosen FROM kept_pairs ORDER BY pair_id"
    csv_out = runner.invoke(cli, ["sql", query, "--db", str(labelled_db), "--format", "csv"])
    assert csv_out.exit_code == 0 and csv_out.output.count("\n") == 6
    json_out = runner.invoke(cli, ["sql", query, "--db", str(labelled_db), "--format", "json"])
    assert len(json.loads(json_out.output)) == 5  # one array, what json.load reads
    jsonl_out = runner.invoke(cli, ["sql", query, "--db", str(labelled_db), "--format", "jsonl"])
    assert len([json.loads(line) for line in jsonl_out.output.splitlines()]) == 5
    parquet = tmp_path / "kept.parquet"
    runner.invoke(cli, ["sql", query, "--db", str(labelled_db), "--format", "parquet", "--out", str(parquet)])
    assert duckdb.sql(f"SELECT count(*) FROM '{parquet}'").fetchall() == [(5,)]


def test_sql_cannot_write_to_the_store(labelled_db):
    result = CliRunner().invoke(cli, ["sql", "DELETE FROM judgements", "--db", str(labelled_db)])
    assert result.exit_code != 0 and "read-only" in result.output.lower()
    con = duckdb.connect(str(labelled_db), read_only=True)
    assert con.execute("SELECT count(*) FROM judgements").fetchone() == (10,)
    con.close()


def test_stats_shows_position_bias_and_drops(labelled_db):
    result = CliRunner().invoke(cli, ["stats", "--db", str(labelled_db)])
    assert result.exit_code == 0, result.output
    assert "position bias" in result.output and "drops by reason" in result.output


def test_bad_constitution_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("name: x\nprinciples:\n  - id: a\n    text: ok\n    weight: -2\n")
    (tmp_path / "p.jsonl").write_text('{"prompt": "q", "response_a": "x", "response_b": "y"}\n')
    result = CliRunner().invoke(cli, ["label", "-c", str(bad), "-p", str(tmp_path / "p.jsonl"),
                                      "--db", str(tmp_path / "db.duckdb")])
    assert result.exit_code == 2
    assert f"{bad}:5 principles[0].weight" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "db.duckdb").exists()


@pytest.mark.parametrize(("args", "option", "rule"), [
    (["--limit", "0"], "--limit", "must be >= 1 (got 0)"),
    (["--concurrency", "0"], "--concurrency", "must be >= 1 (got 0)"),
    (["--threshold", "1.5"], "--threshold", "must be in [0, 1] (got 1.5)"),
    (["--samples", "0"], "--samples", "must be >= 1 (got 0)"),
    (["--max-cost", "-1"], "--max-cost", "must be >= 0 (got -1.0)"),
    (["--timeout", "0"], "--timeout", "must be > 0 (got 0.0)"),
])
def test_out_of_range_label_option_is_a_usage_error_naming_option_and_range(tmp_path, args, option, rule):
    (tmp_path / "c.yaml").write_text(CONSTITUTION)
    result = CliRunner().invoke(cli, ["label", "-c", str(tmp_path / "c.yaml"), "-p", "p.jsonl",
                                      "--db", str(tmp_path / "db.duckdb"), *args])
    assert result.exit_code == 2
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert error_lines == [f"Error: Invalid value for '{option}': {rule}"]
    assert "Traceback" not in result.output and not (tmp_path / "db.duckdb").exists()


def test_parquet_output_without_a_file_is_a_usage_error(labelled_db):
    result = CliRunner().invoke(cli, ["sql", "SELECT 1", "--db", str(labelled_db), "--format", "parquet"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: --format parquet needs --out FILE"
    assert "Traceback" not in result.output


def test_label_defaults_and_help_come_from_label_config():
    from prefgen.pipelines.labelling import LabelConfig

    params = {p.name: p for p in cli.commands["label"].params}
    for name, field in LabelConfig.model_fields.items():
        if name in params:
            assert params[name].help == field.description, name
            if not params[name].required:
                assert params[name].default == field.default, name


def test_train_summary_counts_pairs_dropped_as_identical():
    from prefgen.pipelines.reporting.console import train_summary_lines
    from prefgen.pipelines.training.stages import TrainOutcome

    outcome = TrainOutcome(run_id="rm-1", out_dir="out", n_train=9, members=1, device="cpu", pairs_per_s=3.0,
                           duration_s=3.0, initial_loss=0.69, final_loss=0.5,
                           data_report={"n_in": 10, "n_truncated": 2, "n_dropped_identical": 1})
    assert "truncated 2, dropped 1 (both sides identical) of 10 pairs" in train_summary_lines(outcome)[1]


# The log of a real 3-step run with --logging-steps 10 (`train_reward_model` on 24 pairs, batch 8): only step 1.
SHORT_RUN_LOG = [
    {"loss": 0.6908990144729614, "epoch": 0.333, "step": 1, "stage": 0},
    {"train_runtime": 17.498, "train_loss": 0.6361846526463827, "epoch": 1.0, "step": 3, "stage": 0},
]


def test_train_summary_of_a_one_entry_loss_log_says_so_rather_than_printing_it_twice():
    from prefgen.pipelines.reporting.console import train_summary_lines
    from prefgen.pipelines.training.stages import TrainOutcome, logged_losses, mean_loss

    logged = logged_losses(SHORT_RUN_LOG)
    outcome = TrainOutcome(run_id="rm-1", out_dir="out", n_train=24, members=1, device="cpu", pairs_per_s=1.0,
                           duration_s=17.0, initial_loss=0.69, final_loss=0.69, data_report={},
                           first_logged=logged[0], last_logged=logged[-1], steps=3, mean_loss=mean_loss(SHORT_RUN_LOG))
    line = train_summary_lines(outcome)[0]
    assert "training loss 0.691 at step 1, the only step logged of 3 (mean over the run 0.636" in line
    assert "0.691 -> 0.691" not in line


def test_train_summary_shows_first_and_last_logged_loss_with_their_steps():
    from prefgen.pipelines.reporting.console import train_summary_lines
    from prefgen.pipelines.training.stages import TrainOutcome

    outcome = TrainOutcome(run_id="rm-1", out_dir="out", n_train=24, members=1, device="cpu", pairs_per_s=1.0,
                           duration_s=17.0, initial_loss=0.69, final_loss=0.41, data_report={},
                           first_logged=(1, 0.6937), last_logged=(120, 0.4123), steps=120)
    assert "training loss 0.694 (step 1) -> 0.412 (step 120 of 120)" in train_summary_lines(outcome)[0]
