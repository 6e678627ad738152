"""Opening the DuckDB file, applying migrations, and the batched-write primitive every table uses."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from prefgen.errors import PrefgenError
from prefgen.storage.migrations import migrate


class Store:
    """One DuckDB file. Writers migrate on open; readers (`read_only=True`) never change the file."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = str(path)
        if read_only and not Path(self.path).exists():
            raise PrefgenError(f"{self.path}: no such database (run `prefgen label` first, or check --db)")
        try:
            self.con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as exc:
            raise PrefgenError(f"{self.path}: cannot open the database ({exc})") from exc
        if not read_only:
            migrate(self.con)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def insert_rows(self, table: str, rows: Sequence[Any], *, on_conflict: str = "replace") -> int:
        """Insert dataclass rows (or dicts) in one Arrow batch; never a row-at-a-time INSERT.

        on_conflict: "replace" (upsert by primary key), "ignore" (keep what is stored) or "error".
        """
        if not rows:
            return 0
        batch = rows_to_arrow(rows)
        verb = {"replace": "INSERT OR REPLACE", "ignore": "INSERT OR IGNORE", "error": "INSERT"}[on_conflict]
        columns = ", ".join(batch.column_names)
        self.con.register("_prefgen_batch", batch)
        try:
            self.con.execute(f"{verb} INTO {table} ({columns}) SELECT {columns} FROM _prefgen_batch")
        finally:
            self.con.unregister("_prefgen_batch")
        return batch.num_rows

    def query(self, sql: str, params: Sequence[Any] | None = None) -> tuple[list[str], list[tuple]]:
        """Run any SQL; returns (column names, rows)."""
        cur = self.con.execute(sql, params or [])
        columns = [d[0] for d in cur.description] if cur.description else []
        return columns, cur.fetchall() if cur.description else []

    def dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Run SQL; one dict per row, keyed by column name."""
        columns, rows = self.query(sql, params)
        return [dict(zip(columns, row)) for row in rows]

    def run_sql(self, sql: str):
        """A user's query (from `prefgen sql`); errors come back as one readable line."""
        try:
            return self.query_arrow(sql)
        except duckdb.Error as exc:
            raise PrefgenError(f"SQL error: {exc}") from None

    def query_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        relation = self.con.sql(sql, params=list(params) if params else None)
        return relation.to_arrow_table() if relation is not None else pa.table({})


def rows_to_arrow(rows: Sequence[Any]) -> pa.Table:
    """Column-wise Arrow table from dataclasses or dicts (column order = first row's field order)."""
    first = rows[0]
    if is_dataclass(first):
        names = [f.name for f in fields(first)]
        columns = {name: [getattr(r, name) for r in rows] for name in names}
    elif isinstance(first, dict):
        columns = {name: [r.get(name) for r in rows] for name in first}
    else:
        raise TypeError(f"cannot insert rows of type {type(first).__name__}")
    return pa.table(columns)


def as_dict(row: Any) -> dict[str, Any]:
    return asdict(row) if is_dataclass(row) else dict(row)
