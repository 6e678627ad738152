"""A shared store cannot reach your files: SQL gets no file, network, ATTACH or extension access, and
prefgen's reports use prefgen's view definitions, never whatever views a file carries."""

from __future__ import annotations

import duckdb
import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.errors import PrefgenError
from prefgen.storage import stats
from prefgen.storage.db import Store
from tests.test_cli import labelled_db  # noqa: F401

SECRET = "canary-secret-7f3a"


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


def run_sql(db, query):
    return CliRunner().invoke(cli, ["sql", query, "--db", str(db)])


@pytest.mark.parametrize("query", [
    "COPY judgements TO '{out}'",
    "EXPORT DATABASE '{out}'",
    "SELECT * FROM read_text('{secret}')",
    "SELECT * FROM read_csv('{secret}')",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
])
def test_sql_reaches_no_file_network_or_extension(labelled_db, secret_file, tmp_path, query):
    out = tmp_path / "written"
    before = labelled_db.read_bytes()
    result = run_sql(labelled_db, query.format(out=out, secret=secret_file))
    assert result.exit_code != 0
    assert result.output.startswith("error: SQL error:") and result.output.count("\n") == 1
    assert SECRET not in result.output
    assert not out.exists()
    assert labelled_db.read_bytes() == before


def test_sql_cannot_attach_and_empty_another_store(labelled_db, tmp_path):
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE judgements AS SELECT 1 AS x")
    con.close()
    result = run_sql(labelled_db, f"ATTACH '{other}' AS o (READ_ONLY false); DELETE FROM o.judgements")
    assert result.exit_code != 0
    con = duckdb.connect(str(other), read_only=True)
    assert con.execute("SELECT count(*) FROM judgements").fetchone() == (1,)
    con.close()


def test_stats_ignores_a_view_redefined_to_read_a_local_file(labelled_db, secret_file):
    con = duckdb.connect(str(labelled_db))  # the file's author, with full rights on their own machine
    con.execute(f"CREATE OR REPLACE VIEW drop_reasons AS SELECT 'x' AS job_id, content AS reason, 1 AS preferences "
                f"FROM read_text('{secret_file}')")
    con.close()

    result = CliRunner().invoke(cli, ["stats", "--db", str(labelled_db)])

    assert result.exit_code == 0, result.output
    assert SECRET not in result.output and "drops by reason" in result.output
    with Store(labelled_db, read_only=True) as store:  # the reader left the file as it was
        assert store.query("SELECT sql FROM duckdb_views() WHERE view_name = 'drop_reasons' AND NOT temporary"
                           )[1][0][0].count("read_text") == 1
        assert all(r["reason"] != SECRET for r in stats.drop_reasons(store))


def test_a_writer_restores_prefgens_views(labelled_db):
    con = duckdb.connect(str(labelled_db))
    con.execute("CREATE OR REPLACE VIEW kept_pairs AS SELECT 'forged' AS pair_id")
    con.close()
    with Store(labelled_db) as store:
        assert store.query("SELECT count(*) FROM kept_pairs WHERE pair_id = 'forged'")[1] == [(0,)]
    con = duckdb.connect(str(labelled_db), read_only=True)
    assert "forged" not in con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'kept_pairs'").fetchone()[0]
    con.close()


def test_sqlite_file_as_db_is_a_clean_error(tmp_path):
    import sqlite3

    path = tmp_path / "store.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    for args in (["stats", "--db", str(path)], ["sql", "SELECT 1", "--db", str(path)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2
        assert result.output == f"error: {path}: this is a SQLite database, not a DuckDB one; give --db a DuckDB " \
                                "file (a new name creates one)\n"
    with pytest.raises(PrefgenError, match="SQLite"):
        Store(path)
    assert path.read_bytes().startswith(b"SQLite format 3")


def test_macros_a_file_carries_cannot_change_prefgens_queries(labelled_db):
    con = duckdb.connect(str(labelled_db))
    con.execute("CREATE MACRO avg(x) AS 0.42")
    con.close()

    before = labelled_db.read_bytes()
    result = CliRunner().invoke(cli, ["stats", "--db", str(labelled_db)])
    assert result.exit_code == 2 and f"{labelled_db}: the store defines SQL macros ('avg')" in result.output
    assert result.output.count("\n") == 1
    assert "prefgen label" not in result.output and "writing command" not in result.output  # readers never write
    assert labelled_db.read_bytes() == before

    with Store(labelled_db) as store:  # a writer drops them
        assert store.query("SELECT avg(x) FROM (VALUES (1), (3)) t(x)")[1] == [(2.0,)]
    assert CliRunner().invoke(cli, ["stats", "--db", str(labelled_db)]).exit_code == 0


def test_memory_limit_comes_from_the_environment_and_sql_cannot_raise_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFGEN_DUCKDB_MEMORY_LIMIT", "300MB")
    with Store(tmp_path / "m.duckdb") as store:
        limit = store.query("SELECT current_setting('memory_limit')")[1][0][0]
        with pytest.raises(duckdb.Error, match="locked"):
            store.con.execute("SET memory_limit = '8GB'")
    assert limit.startswith("286.1")  # 300 MB in MiB, as DuckDB prints it


def test_a_memory_limit_that_is_not_a_size_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFGEN_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(PrefgenError, match="PREFGEN_DUCKDB_MEMORY_LIMIT='lots'.*2GB"):
        Store(tmp_path / "m.duckdb")
