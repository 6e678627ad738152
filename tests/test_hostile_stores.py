"""A store file someone hands you fails with one line and exit 2, or reads correctly; it never drives prefgen.

Names from the file are quoted by one helper (a macro name cannot inject SQL), readers never write (nor advise
running a writer), a read refuses a file whose macros or types would change what prefgen computes, a view
where prefgen keeps a table is refused, queries over the file run under a time limit, and damaged or empty
files are a clean error. A property test builds stores with random foreign objects.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import string
import time
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefgen.cli import cli
from prefgen.errors import PrefgenError
from prefgen.storage.db import Store
from tests.loopback_server import Behaviour

CONSTITUTION = "name: hostile\nprinciples:\n  - id: q\n    text: Choose the better answer.\n"
N_PAIRS = 6
READERS = (["stats"], ["stats", "--json"], ["sql", "SELECT count(*) AS n FROM judgements"], ["agreement"])


def q(*parts: str) -> str:
    """A name quoted the way SQL quotes it, for the statements a file's author runs (what prefgen must match)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def longer_wins(first: str, second: str) -> str:
    return "A" if len(first) > len(second) else "B"


@pytest.fixture(scope="module")
def base_store(tmp_path_factory, loopback_server) -> Path:
    """A labelled store with human labels for its pairs, written once; each test works on a copy."""
    root = tmp_path_factory.mktemp("hostile-base")
    rows = [{"prompt": f"q{i}", "response_a": "short", "response_b": "a much longer answer " * (i + 1)}
            for i in range(N_PAIRS)]
    (root / "c.yaml").write_text(CONSTITUTION)
    (root / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "h.jsonl").write_text("".join(json.dumps({**r, "winner": "b"}) + "\n" for r in rows))
    db = root / "base.duckdb"
    loopback_server.reset(Behaviour(truth=longer_wins))
    result = CliRunner().invoke(cli, ["label", "-c", str(root / "c.yaml"), "-p", str(root / "p.jsonl"), "--db", str(db),
                                      "--judge", "openai:gpt-4o-mini", "--api-base", loopback_server.openai_base,
                                      "--api-key", "k", "--no-progress"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["import-human", str(root / "h.jsonl"), "--db", str(db), "--format", "pairwise"])
    assert result.exit_code == 0, result.output
    return db


@pytest.fixture
def store(base_store, tmp_path) -> Path:
    db = tmp_path / "handed.duckdb"
    shutil.copy(base_store, db)
    return db


def tamper(db: Path, *statements: str) -> None:
    """What the file's author did, with full rights on their own machine."""
    con = duckdb.connect(str(db))
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


def assert_one_line_exit_2(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def judgement_count(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM judgements").fetchone()[0]
    finally:
        con.close()


# -- names ------------------------------------------------------------------------------------------------

HOSTILE_NAMES = ['x"; DROP TABLE judgements; --', "semi;colon", "nul\x00inside", "it's", '"', "a.b", " "]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_quote_name_makes_one_identifier_of_quotes_semicolons_and_nuls(name):
    from prefgen.storage.names import quote_name

    con = duckdb.connect()
    con.execute("CREATE TABLE keep (x INTEGER)")
    con.execute(f"CREATE TABLE {quote_name(name)} (x INTEGER)")
    assert {n for (n,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()} == {"keep", name}
    con.execute(f"DROP TABLE {quote_name(name)}")
    assert con.execute("SELECT table_name FROM duckdb_tables()").fetchall() == [("keep",)]
    assert quote_name("main", name).startswith('"main".')


def test_a_macro_name_cannot_inject_sql_into_a_writer(store):
    # The probe of issue 20: this name, pasted unquoted into `DROP MACRO IF EXISTS "{name}"`, dropped judgements.
    tamper(store, 'CREATE MACRO "x""; DROP TABLE judgements; DROP MACRO IF EXISTS ""y"(a) AS a')
    before = judgement_count(store)
    with Store(store) as opened:  # a writer drops the macro, and only the macro
        assert opened.query("SELECT count(*) FROM judgements")[1] == [(before,)]
    assert invoke("stats", "--db", str(store)).exit_code == 0  # no macro left for a reader to refuse


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_writer_drops_exactly_the_macro_whatever_its_name(store, name):
    tamper(store, f"CREATE MACRO {q(name)}(a) AS a", f"CREATE MACRO {q('main', name + '2')}() AS 1")
    tables = None
    with Store(store) as opened:
        tables = opened.query("SELECT count(*) FROM duckdb_tables()")[1]
        assert opened.query("SELECT count(*) FROM duckdb_functions() WHERE function_type = 'macro' "
                            "AND NOT internal")[1] == [(0,)]
    with Store(store, read_only=True) as reread:
        assert reread.query("SELECT count(*) FROM duckdb_tables()")[1] == tables


# -- readers never write ----------------------------------------------------------------------------------

def test_reader_commands_leave_the_file_and_its_folder_as_they_were(store, tmp_path):
    assert invoke("split", "--heldout", "0.5", "--db", str(store)).exit_code == 0  # a writer, before the readers
    listing = sorted(p.name for p in tmp_path.iterdir())
    before = digest(store)
    for args in (*READERS, ["report", "--out", str(tmp_path.parent / "page.html")],
                 ["export", "--split", "heldout", "--out", str(tmp_path.parent / "heldout.jsonl")]):
        result = invoke(*args, "--db", str(store))
        assert result.exit_code == 0, (args, result.output)
        assert digest(store) == before, f"{args[0]} changed the file it was handed"
    assert sorted(p.name for p in tmp_path.iterdir()) == listing


@pytest.mark.parametrize("args", READERS)
def test_a_read_refuses_macros_names_them_and_changes_nothing(store, args):
    tamper(store, "CREATE MACRO lower(x) AS 'forged'", "CREATE MACRO \"semi;colon\"(x) AS x")
    before = digest(store)
    output = assert_one_line_exit_2(invoke(*args, "--db", str(store)))
    assert "defines SQL macros ('lower', 'semi;colon')" in output
    assert "writing command" not in output and "prefgen label" not in output
    assert digest(store) == before


def test_a_read_refuses_a_type_that_changes_what_a_cast_means(store):
    tamper(store, 'CREATE TYPE "JSON" AS INTEGER')
    output = assert_one_line_exit_2(invoke("stats", "--db", str(store)))
    assert "defines SQL types ('JSON')" in output


# -- tables that are not prefgen's ------------------------------------------------------------------------

ENDLESS = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r"


@pytest.mark.parametrize("args", READERS)
def test_a_view_where_prefgen_keeps_a_table_is_refused_before_any_query(store, args):
    tamper(store, "DROP TABLE judgements", f"CREATE VIEW judgements AS {ENDLESS}")
    started = time.perf_counter()
    output = assert_one_line_exit_2(invoke(*args, "--db", str(store)))
    assert "judgements is a view where prefgen keeps a table" in output
    assert time.perf_counter() - started < 10


def test_a_writer_refuses_a_view_where_prefgen_keeps_a_table(store):
    tamper(store, "DROP TABLE judgements", f"CREATE VIEW judgements AS {ENDLESS}")
    with pytest.raises(PrefgenError, match="judgements is a view where prefgen keeps a table"):
        Store(store)


def test_a_reshaped_prefgen_table_is_refused(store):
    tamper(store, "ALTER TABLE judgements ALTER COLUMN cost TYPE VARCHAR")
    output = assert_one_line_exit_2(invoke("stats", "--db", str(store)))
    assert "table judgements does not have prefgen's columns" in output


@pytest.mark.parametrize("args", [*READERS, ["report", "--out", "page.html"]])
def test_a_prefgen_table_dropped_from_the_file_is_refused(store, args):
    tamper(store, "DROP TABLE mix_trials")
    output = assert_one_line_exit_2(invoke(*args, "--db", str(store)))
    assert "table mix_trials is missing" in output


def test_a_query_past_the_time_limit_is_stopped_with_one_line(store):
    tamper(store, f"CREATE VIEW endless AS {ENDLESS}")
    started = time.perf_counter()
    output = assert_one_line_exit_2(invoke("sql", "SELECT count(*) FROM endless", "--db", str(store),
                                           env={"PREFGEN_QUERY_TIMEOUT_S": "1"}))
    assert "ran past the time limit of 1 s" in output and "PREFGEN_QUERY_TIMEOUT_S" in output
    assert time.perf_counter() - started < 15


def test_an_input_table_that_is_a_view_is_refused(tmp_path):
    from prefgen.errors import InputError
    from prefgen.pipelines.labelling.inputs import read_rows

    data = tmp_path / "in.duckdb"
    tamper(data, f"CREATE VIEW pairs AS {ENDLESS}", 'CREATE TABLE "x""; DROP TABLE y; --" AS SELECT 1 AS prompt')
    with pytest.raises(InputError, match="'pairs' is a view; prefgen reads tables only"):
        list(read_rows(f"{data}:pairs"))
    assert [r.data for r in read_rows(f'{data}:x"; DROP TABLE y; --')] == [{"prompt": 1}]


# -- damaged and empty files ------------------------------------------------------------------------------

def damaged_copies(store: Path, tmp_path: Path) -> dict[str, Path]:
    """The same store, broken in each of the ways a disk, a copy or a person breaks files."""
    data = store.read_bytes()
    out = {}

    def write(name: str, content: bytes) -> None:
        out[name] = tmp_path / f"{name}.duckdb"
        out[name].write_bytes(content)

    write("empty", b"")
    write("truncated", data[: len(data) // 3])
    header = bytearray(data)
    header[4096:4200] = bytes(b ^ 0xFF for b in header[4096:4200])
    write("header-block", bytes(header))
    out["no-tables"] = tmp_path / "no-tables.duckdb"
    duckdb.connect(str(out["no-tables"])).close()
    return out


WRITER = ["split", "--heldout", "0.2"]  # a writer makes a DuckDB file with no tables a store: not in its list
# Queries that read the rows themselves (a count alone comes from the file's metadata, which may survive).
DAMAGE_READERS = (["stats"], ["stats", "--json"], ["sql", "SELECT sum(length(raw_text)) FROM judgements"],
                  ["agreement"])


@pytest.mark.parametrize(("kind", "args"), [(kind, args) for kind in ("empty", "truncated", "header-block", "no-tables")
                                            for args in (*DAMAGE_READERS, WRITER)
                                            if (kind, args) != ("no-tables", WRITER)])
def test_a_damaged_or_empty_file_is_one_clean_line(store, tmp_path, kind, args):
    broken = damaged_copies(store, tmp_path)[kind]
    result = invoke(*args, "--db", str(broken))
    if kind == "truncated" and result.exit_code == 0:
        return  # what the query read lies in the part that is left: a right answer is no failure
    assert_one_line_exit_2(result)


def test_a_damaged_data_block_is_one_clean_line(tmp_path):
    db = tmp_path / "big.duckdb"
    with Store(db) as store:  # a file that is mostly pair text, so that damage in its middle hits a data block
        store.con.execute("INSERT INTO pairs (id, prompt_id, prompt, is_chat, response_a, response_b) "
                          "SELECT 'p' || i, 'q' || i, repeat(md5(i::VARCHAR), 40), false, 'a', 'b' "
                          "FROM range(20000) t(i)")
    data = bytearray(db.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 65536] = bytes(b ^ 0x5A for b in data[middle:middle + 65536])
    db.write_bytes(bytes(data))
    output = assert_one_line_exit_2(invoke("sql", "SELECT max(length(prompt)) FROM pairs", "--db", str(db)))
    assert "damaged" in output


# -- random foreign objects -------------------------------------------------------------------------------

PREFGEN_NAMES = ["judgements", "pairs", "preferences", "human_labels", "kept_pairs", "drop_reasons", "position_bias",
                 "_migrations", "label_jobs", "consistency"]
BUILTINS = ["avg", "lower", "count", "coalesce", "now", "sum", "least", "floor", "any_value", "string_agg"]
NAME = st.one_of(st.sampled_from(PREFGEN_NAMES + BUILTINS),
                 st.text(string.ascii_letters + string.digits + "_\"';. \x00-", min_size=1, max_size=12))
BODY = st.sampled_from(["SELECT 1 AS x", ENDLESS, "SELECT * FROM judgements", "SELECT 'forged' AS pair_id",
                        "SELECT * FROM range(3)"])
OBJECT = st.one_of(
    st.builds(lambda n: f"CREATE OR REPLACE MACRO {q(n)}(x) AS 42", NAME),
    st.builds(lambda n: f"CREATE OR REPLACE MACRO {q(n)}() AS TABLE SELECT 1 AS x", NAME),
    st.builds(lambda n: f"CREATE TYPE {q(n)} AS VARCHAR", NAME),
    st.builds(lambda n, b: f"CREATE OR REPLACE VIEW {q(n)} AS {b}", NAME, BODY),
    st.builds(lambda n: f"DROP TABLE IF EXISTS {q(n)}; CREATE VIEW {q(n)} AS {ENDLESS}",
              st.sampled_from(PREFGEN_NAMES)),
    st.builds(lambda n: f"CREATE TABLE IF NOT EXISTS {q(n)} AS SELECT 1 AS x", NAME),
    st.builds(lambda n: f"CREATE SCHEMA IF NOT EXISTS s; CREATE OR REPLACE MACRO s.{q(n)}(x) AS 1", NAME),
    st.builds(lambda n: f"CREATE SEQUENCE IF NOT EXISTS {q(n)}", NAME),
)


FUZZ_READERS = (["stats", "--json"], ["sql", "SELECT count(*) AS n FROM judgements", "--format", "json"],
                 ["agreement"], ["stats"])


def test_stores_with_random_foreign_objects_read_correctly_or_fail_cleanly(base_store, tmp_path_factory):
    expected = judgement_count(base_store)

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(OBJECT, min_size=1, max_size=4))
    def check(statements: list[str]) -> None:
        db = tmp_path_factory.mktemp("fuzz") / "s.duckdb"
        shutil.copy(base_store, db)
        con = duckdb.connect(str(db))
        try:
            for statement in statements:
                try:
                    con.execute(statement)
                except duckdb.Error:
                    pass  # DuckDB refused this object itself: the file simply does not carry it
        finally:
            con.close()
        before = digest(db)
        for args in FUZZ_READERS:
            started = time.perf_counter()
            result = invoke(*args, "--db", str(db), env={"PREFGEN_QUERY_TIMEOUT_S": "3"})
            assert time.perf_counter() - started < 30, (statements, args)
            if result.exit_code == 0:
                if args[0] == "sql":
                    assert json.loads(result.output) == [{"n": expected}], statements
                if args == ["stats", "--json"]:
                    overview = json.loads(result.output)["overview"]
                    assert overview["judgements"] == expected, statements
            else:
                assert_one_line_exit_2(result)
            assert digest(db) == before, (statements, args)
        try:  # a writer either refuses the file or makes it a store prefgen reads correctly
            Store(db).close()
        except PrefgenError:
            return
        result = invoke("stats", "--json", "--db", str(db))
        assert result.exit_code == 0, (statements, result.output)
        overview = json.loads(result.output)["overview"]
        assert overview["judgements"] == expected, statements

    check()
