"""Reading the rows of a table in someone else's DuckDB file (`FILE.duckdb:TABLE` inputs).

The file is opened locked down and read-only (its SQL reaches nothing else, and it is not changed), the table's
name goes into the query through `quote_name` (a name is data), only a table is read (a view runs whatever SQL
its author wrote), and the query runs under the readers' time limit (`storage.watchdog`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any


from prefgen.errors import InputError
from prefgen.storage.db import connect
from prefgen.storage.names import quote_name
from prefgen.storage.watchdog import GuardedConnection, query_time_limit


def table_rows(path: Path, table: str, batch: int) -> Iterator[dict[str, Any]]:
    """Each row of `table` in the DuckDB file `path` as a dict, fetched `batch` rows at a time."""
    if not path.exists():
        raise InputError(path, "no such DuckDB file")
    con = GuardedConnection(connect(path, read_only=True), str(path), query_time_limit())
    try:
        kind = _kind(con, table)
        if kind is None:
            tables = ", ".join(repr(name) for name in _tables(con)) or "none"
            raise InputError(path, f"no table {table!r} (tables: {tables})", hint="name one after the colon")
        if kind != "table":
            raise InputError(path, f"{table!r} is a view; prefgen reads tables only",
                             hint=f"make one with CREATE TABLE t AS SELECT * FROM {quote_name(table)} in DuckDB")
        cur = con.execute(f"SELECT * FROM {quote_name(table)}")
        names = [d[0] for d in cur.description]
        while rows := cur.fetchmany(batch):
            for values in rows:
                yield dict(zip(names, values))
    finally:
        con.close()


def _kind(con: Any, table: str) -> str | None:
    where = "schema_name = 'main' AND database_name = current_database()"
    found = con.execute(
        f"SELECT 'table' FROM duckdb_tables() WHERE table_name = $name AND {where} "
        f"UNION ALL SELECT 'view' FROM duckdb_views() WHERE view_name = $name AND NOT internal AND {where}",
        {"name": table}).fetchall()
    return found[0][0] if found else None


def _tables(con: Any) -> list[str]:
    return [name for (name,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main' "
        "ORDER BY 1").fetchall()]

