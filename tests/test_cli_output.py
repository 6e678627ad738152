"""Readable output: bad values are one usage line (exit 2) for every command, tables never break a number, an
empty result says "0 rows", every command that prints results has --json, -q quiets, and the top-level help
keeps each command's whole summary."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from tests.loopback_server import Behaviour

CONSTITUTION = "name: out\nprinciples:\n  - id: q\n    text: Choose the better answer.\n"


@pytest.fixture
def store(tmp_path, loopback):
    loopback.behaviour = Behaviour(truth=lambda first, second: "A" if len(first) > len(second) else "B",
                                   confidence=0.97)
    (tmp_path / "c.yaml").write_text(CONSTITUTION)
    rows = [{"prompt": f"question {i} " + "with a long prompt text " * 20, "response_a": "short",
             "response_b": "a much longer answer " * (i + 1)} for i in range(6)]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    db = tmp_path / "db.duckdb"
    result = invoke("label", "-c", tmp_path / "c.yaml", "-p", tmp_path / "p.jsonl", "--judge", "openai:gpt-4o-mini",
                    "--api-base", loopback.openai_base, "--api-key", "k", "--db", db, "--no-progress")
    assert result.exit_code == 0, result.output
    return db


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


BAD_VALUES = [
    ("label", ["-c", "c.yaml", "-p", "p.jsonl", "--limit", "0"], "--limit", ">= 1"),
    ("label", ["-c", "c.yaml", "-p", "p.jsonl", "--concurrency", "0"], "--concurrency", ">= 1"),
    ("label", ["-c", "c.yaml", "-p", "p.jsonl", "--threshold", "1.5"], "--threshold", "in [0, 1]"),
    ("label", ["-c", "c.yaml", "-p", "p.jsonl", "--samples", "0"], "--samples", ">= 1"),
    ("label", ["-c", "c.yaml", "-p", "p.jsonl", "--max-cost", "-1"], "--max-cost", ">= 0"),
    ("label", ["-c", "c.yaml", "-p", "p.jsonl", "--mode", "loud"], "--mode", "'direct', 'cot'"),
    ("mix", ["--name", "m", "--human-ratio", "1.5"], "--human-ratio", "in [0, 1]"),
    ("mix", ["--name", "m", "--size", "0"], "--size", ">= 1"),
    ("mix", ["--name", "m", "--folds", "1"], "--folds", ">= 2"),
    ("sql", ["SELECT 1", "--format", "parquet"], "", "--format parquet needs --out FILE"),
    ("sql", ["SELECT 1", "--format", "xml"], "--format", "'table', 'csv'"),
    ("split", ["--heldout", "1.5"], "--heldout", "in [0, 1)"),
    ("train", ["--mix", "m", "--out", "o", "--epochs", "0"], "--epochs", "> 0"),
    ("train", ["--mix", "m", "--out", "o", "--warmup-ratio", "1"], "--warmup-ratio", "in [0, 1)"),
    ("eval", ["--model", ".", "--batch-size", "0"], "--batch-size", ">= 1"),
    ("score", ["--model", ".", "--responses", "r.jsonl", "--batch-size", "0"], "--batch-size", ">= 1"),
    ("import-human", ["h.jsonl", "--format", "csv"], "--format", "'auto', 'annotators'"),
    ("export", ["--mix", "m", "--format", "csv", "--out", "x"], "--format", "'hf', 'parquet'"),
    ("agreement", ["--split", "test"], "--split", "'train', 'heldout'"),
    ("stats", ["--max-width", "5"], "--max-width", ">=20"),
]


@pytest.mark.parametrize(("command", "args", "option", "rule"), BAD_VALUES)
def test_a_bad_value_is_one_line_naming_the_option_and_the_range(tmp_path, monkeypatch, command, args, option, rule):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(CONSTITUTION)
    result = invoke(command, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1 and option in errors[0] and rule in errors[0], result.output


@pytest.mark.parametrize("width", [80, 120])
def test_tables_never_break_a_number(store, width):
    query = ("SELECT pair_id, prompt, 0.857 AS ci_low, 1.0 AS ci_high, '0.857-1.000' AS ci, "
             "1234567.891 AS big FROM kept_pairs")
    result = invoke("sql", query, "--db", store, "--max-width", width)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(len(line) <= width for line in lines)
    body = [line for line in lines if line.startswith("│")]
    assert len(body) == 6  # one line a row, however long the prompt
    for line in body:
        cells = [c.strip() for c in line.strip("│").split("│")]
        shown = [c for c in cells if re.fullmatch(r"[\d.\-]+", c)]
        assert all(c in ("0.857", "1", "0.857-1.000", "1.235e+06", "1234567.891") for c in shown), cells
    assert "…" in result.output  # the long prompt is cut, not folded
    assert lines[-1] == "6 rows"


def test_columns_that_do_not_fit_are_named_not_squeezed(store):
    result = invoke("sql", "SELECT * FROM judgements", "--db", store)
    assert "more column(s) not shown" in result.output and "created_at" in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines())


def test_an_empty_result_is_not_a_row_of_nulls(store):
    empty = invoke("sql", "SELECT pair_id FROM kept_pairs WHERE false", "--db", store)
    nulls = invoke("sql", "SELECT NULL AS pair_id", "--db", store)
    assert empty.output.splitlines()[-1] == "0 rows" and "columns: pair_id" in empty.output
    assert nulls.output.splitlines()[-1] == "1 row"


def test_every_command_that_prints_results_has_json():
    for name, command in cli.commands.items():
        assert "as_json" in {p.name for p in command.params}, name


def test_sql_json_is_the_json_format(store):
    rows = json.loads(invoke("sql", "SELECT 1 AS x, 'a' AS y", "--db", store, "--json").output)
    assert rows == [{"x": 1, "y": "a"}]


def test_stats_json_is_keyed_by_short_names_a_script_can_use(store):
    """Keys are the facts' names, not the tables' titles ("position bias: share of first-slot verdicts ...")."""
    data = json.loads(invoke("stats", "--db", store, "--json").output)
    assert {"overview", "jobs", "drop_reasons", "position_bias", "consistency", "confidence_histogram"} <= set(data)
    assert all(re.fullmatch(r"[a-z_]+", key) for key in data)
    assert data["overview"]["judgements"] == 12 and data["jobs"][0]["pairs"] == 6
    text = invoke("stats", "--db", store).output  # the terminal keeps the titles
    assert "position bias: share of first-slot verdicts per judge and principle" in text


def test_sql_json_keeps_decimals_as_numbers(store):
    rows = json.loads(invoke("sql", "SELECT 0.0003 AS x", "--db", store, "--format", "json").output)
    assert rows == [{"x": 0.0003}]


def test_quiet_keeps_results_and_drops_warnings(store, tmp_path, loopback):
    args = ["label", "-c", tmp_path / "c.yaml", "-p", tmp_path / "p.jsonl", "--judge", "anthropic:m",
            "--api-base", loopback.anthropic_base, "--api-key", "k", "--db", tmp_path / "other.duckdb"]
    loud, quiet = invoke(*args), invoke("-q", *args[:1], *args[1:])
    assert "warning: anthropic:m gives hard A/B verdicts" in loud.output
    assert "warning" not in quiet.output and "kept pairs" in quiet.output


def test_top_level_help_keeps_whole_summaries():
    result = invoke("--help")
    assert result.exit_code == 0
    commands = result.output.split("Commands:")[1]
    assert "..." not in commands
    assert "reliability and ECE before and after" in " ".join(commands.split())


def test_verbose_says_what_the_run_plans(store, tmp_path, loopback):
    args = ["label", "-c", tmp_path / "c.yaml", "-p", tmp_path / "p.jsonl", "--judge", "openai:gpt-4o-mini",
            "--api-base", loopback.openai_base, "--api-key", "k", "--db", store, "--no-progress"]
    assert "info:" not in invoke(*args).output
    verbose = invoke(*args, "-v")
    assert "info: job " in verbose.output
    assert "6 pairs, 12 calls planned, 12 already stored, 0 to send" in verbose.output


def test_import_and_split_print_their_reports_as_json(tmp_path):
    from tests.test_label_pipeline import REPO

    db = tmp_path / "h.duckdb"
    imported = json.loads(invoke("import-human", REPO / "examples" / "human.jsonl", "--format", "pairwise",
                                 "--db", db, "--json").output)
    assert imported["format"] == "pairwise" and imported["labels"] > 0
    split = json.loads(invoke("split", "--db", db, "--heldout", "0.3", "--json").output)
    assert split["heldout"] == 0.3 and split["pairs"]


@pytest.mark.parametrize("width", [80, 100])
def test_stats_shows_every_column_and_value_whole_at_terminal_widths(store, tmp_path, width):
    """A summary has no other way to show a column: too wide a table continues in a second one, and no header,
    number or short value is cut (before: `20` for 200 pairs, `unkno` for unknown, five hidden columns)."""
    import duckdb

    con = duckdb.connect(str(store))
    con.execute("UPDATE label_jobs SET model = 'my-own-model'")  # unpriced: its cost is "unknown"
    con.close()
    result = invoke("stats", "--db", store, "--max-width", width)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(len(line) <= width for line in lines)
    assert "not shown" not in result.output and "…" not in result.output
    for header in ("kept_pairs", "cost_per_kept_pair", "tokens_per_kept_pair", "first_slot_share", "mean_p_first"):
        assert header in result.output
    assert re.search(r"│\s+6 │", result.output)  # the job's 6 pairs, whole
    assert "unknown" in result.output
