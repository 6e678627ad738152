"""Text from data is inert in a terminal: escape sequences in pairs, constitutions, judge replies, store files
and errors are shown as text (`\\x1b[2J`), never acted on; `--json`, `--format csv` and files stay exact."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from tests.loopback_server import Behaviour

CLEAR = "\x1b[2J\x1b[H"  # clear the screen, cursor home
TITLE = "\x1b]0;owned\x07"  # set the window title (OSC)
LINK = "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\"  # a hyperlink (OSC 8)
HOSTILE = f"ok {CLEAR}{TITLE}{LINK} \x9b31m\r\x08\u202eevil"
# YAML writes the escape character in a double-quoted string as \x1b (a raw one is refused).
CONSTITUTION = 'name: t\nprinciples:\n  - id: q\n    text: "Choose the better answer.\\x1b[2J\\x1b[H"\n'


def no_controls(text: str) -> bool:
    return not any(ord(c) < 0x20 and c not in "\n\t" or 0x7F <= ord(c) <= 0x9F or c == "\u202e" for c in text)


@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b[2J", "\\x1b[2J"), ("\x1b]0;t\x07", "\\x1b]0;t\\x07"), ("a\rb", "a\\x0db"), ("\x9b1m", "\\x9b1m"),
    ("\u202eabc", "\\u202eabc"), ("tab\tand\nline", "tab\tand\nline"), ("plain: é ✓ 中文", "plain: é ✓ 中文"),
])
def test_inert_shows_control_characters_as_escapes(raw, shown):
    from prefgen.terminal import inert

    assert inert(raw) == shown


def test_inert_on_one_line_escapes_layout_too():
    from prefgen.terminal import inert

    assert inert("a\nb\tc", one_line=True) == "a\\x0ab\\x09c"


@pytest.fixture
def hostile_store(tmp_path, loopback):
    (tmp_path / "c.yaml").write_text(CONSTITUTION, encoding="utf-8")
    pair = {"prompt": f"question {HOSTILE}", "response_a": f"short {HOSTILE}", "response_b": "a longer answer"}
    (tmp_path / "p.jsonl").write_text(json.dumps(pair) + "\n", encoding="utf-8")
    reply = {"choices": [{"message": {"content": f"A {TITLE}{CLEAR}"}}], "usage": {"prompt_tokens": 9,
                                                                                 "completion_tokens": 1}}
    loopback.behaviour = Behaviour(raw_reply=json.dumps(reply).encode())
    db = tmp_path / "s.duckdb"
    result = CliRunner().invoke(cli, ["label", "-c", str(tmp_path / "c.yaml"), "-p", str(tmp_path / "p.jsonl"),
                                      "--db", str(db), "--judge", "openai:m", "--api-base", loopback.openai_base,
                                      "--api-key", "k", "--no-progress"])
    assert result.exit_code in (0, 3, 4), result.output
    return db


def first_hash(db) -> str:
    result = CliRunner().invoke(cli, ["sql", "SELECT request_hash FROM judgements LIMIT 1", "--db", str(db),
                                      "--format", "json"])
    return json.loads(result.output)[0]["request_hash"]


def test_show_prints_the_pairs_principles_and_replies_escapes_as_text(hostile_store):
    result = CliRunner().invoke(cli, ["show", first_hash(hostile_store), "--db", str(hostile_store)])
    assert result.exit_code == 0, result.output
    assert no_controls(result.output)
    assert "\\x1b[2J" in result.output and "\\x1b]0;owned\\x07" in result.output and "\\u202eevil" in result.output


def test_show_json_keeps_the_data_exact(hostile_store):
    result = CliRunner().invoke(cli, ["show", first_hash(hostile_store), "--db", str(hostile_store), "--json"])
    record = json.loads(result.output)
    assert record["raw_text"] == f"A {TITLE}{CLEAR}"
    assert any(HOSTILE in m["content"] for m in record["request"]["messages"])


def test_sql_tables_show_escapes_as_text_and_csv_keeps_them(hostile_store):
    table = CliRunner().invoke(cli, ["sql", "SELECT prompt, raw_text AS \"col\x1b[31m\" FROM pairs, judgements",
                                     "--db", str(hostile_store), "--max-width", "400"])
    assert table.exit_code == 0, table.output
    assert no_controls(table.output) and "\\x1b[2J" in table.output and "col\\x1b[31m" in table.output
    assert "http://evil.example" in table.output  # shown as text, not made a link
    csv = CliRunner().invoke(cli, ["sql", "SELECT prompt FROM pairs", "--db", str(hostile_store), "--format", "csv"])
    assert HOSTILE.replace("\r", "") in csv.output.replace("\r", "")  # machine output is exact


def test_an_error_quoting_data_shows_its_escapes_as_text(hostile_store):
    result = CliRunner().invoke(cli, ["sql", f"SELECT CAST('{CLEAR}x' AS INTEGER)", "--db", str(hostile_store)])
    assert result.exit_code == 2
    assert no_controls(result.output) and "\\x1b[2J" in result.output


def test_the_label_failure_summary_shows_a_providers_escapes_as_text(tmp_path, loopback):
    (tmp_path / "c.yaml").write_text(CONSTITUTION, encoding="utf-8")
    rows = [{"prompt": f"q{i}", "response_a": "one", "response_b": "two"} for i in range(6)]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    loopback.behaviour = Behaviour(mode="status_400", fail_first_n=3, error_message=f"bad {CLEAR}{TITLE} request")
    result = CliRunner().invoke(cli, ["label", "-c", str(tmp_path / "c.yaml"), "-p", str(tmp_path / "p.jsonl"),
                                      "--db", str(tmp_path / "s.duckdb"), "--judge", "openai:m", "--api-base",
                                      loopback.openai_base, "--api-key", "k", "--no-progress", "--concurrency", "1",
                                      "--max-attempts", "1", "--max-width", "300"])
    assert "calls failed; top reasons" in result.output
    assert no_controls(result.output) and "bad \\x1b[2J" in result.output
    loopback.behaviour = Behaviour(mode="status_400", fail_first_n=3, error_message=f"bad {CLEAR}{TITLE} request")
    as_json = CliRunner().invoke(cli, ["label", "-c", str(tmp_path / "c.yaml"), "-p", str(tmp_path / "p.jsonl"),
                                       "--db", str(tmp_path / "s2.duckdb"), "--judge", "openai:m", "--api-base",
                                       loopback.openai_base, "--api-key", "k", "--json", "--concurrency", "1",
                                       "--max-attempts", "1"])
    failures = json.loads(as_json.stdout)["failures"]
    assert any(f"bad {CLEAR}{TITLE} request" in f["error"] for f in failures)  # --json is exact
