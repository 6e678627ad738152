"""What a store file may carry besides prefgen's rows, checked whenever one is opened.

A store is a file others may hand you, and DuckDB resolves names through what the file defines: a macro named
`avg` shadows the built-in in every query (prefgen's views included), a type named `JSON` changes what `::JSON`
casts to, and a view left where prefgen keeps a table runs whatever SQL its author wrote (an endless recursive
query, say) whenever prefgen reads "the table". So, on open:

- `refuse_foreign_objects`: user-defined types are refused; macros are refused by a reader (which never
  changes the file) and dropped by a writer (prefgen makes none). The error names them.
- `check_tables`: each of prefgen's tables that the file's migrations created must be a table with prefgen's
  columns (name, type, default, NULL-ability) and constraints, not a view and not reshaped.
- `guard_views`: prefgen's view names mean prefgen's definitions; a writer restores them in the file, a reader
  shadows them with temporary views (DuckDB resolves temporary objects first) and leaves the file alone.

Other objects (tables and views of other names, sequences, indexes) change nothing prefgen computes and are
left alone; `prefgen sql` can read them, under the reader's time limit (`storage.watchdog`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import duckdb

from prefgen.errors import PrefgenError
from prefgen.storage.migrations import MIGRATIONS, migrate
from prefgen.storage.names import quote_name

_IN_THIS_FILE = "database_name = current_database()"  # temporary objects live in the database "temp"


class HostileStore(PrefgenError):
    """The file carries objects that would change what prefgen's queries compute (see the module docstring)."""


@functools.cache
def canonical_views() -> dict[str, str]:
    """prefgen's views as its migrations define them: name -> CREATE VIEW statement (this DuckDB's wording)."""
    con = duckdb.connect(":memory:")
    try:
        migrate(con)
        return dict(con.execute(
            "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal AND NOT temporary"
        ).fetchall())
    finally:
        con.close()


@dataclass(frozen=True)
class TableShape:
    """What prefgen relies on in a table: its columns (name, type, default, NULL-able) and its constraints."""

    columns: frozenset[tuple[str, str, str | None, bool]]
    constraints: frozenset[tuple[str, str]]


def _shapes(con: duckdb.DuckDBPyConnection) -> dict[str, TableShape]:
    columns: dict[str, set] = {}
    for table, *column in con.execute(
        f"SELECT table_name, column_name, data_type, column_default, is_nullable FROM duckdb_columns() "
        f"WHERE {_IN_THIS_FILE} AND schema_name = 'main' AND table_name IN "
        f"(SELECT table_name FROM duckdb_tables() WHERE {_IN_THIS_FILE} AND schema_name = 'main')"
    ).fetchall():
        columns.setdefault(table, set()).add(tuple(column))
    constraints: dict[str, set] = {}
    for table, kind, text in con.execute(
        f"SELECT table_name, constraint_type, constraint_text FROM duckdb_constraints() "
        f"WHERE {_IN_THIS_FILE} AND schema_name = 'main'"
    ).fetchall():
        constraints.setdefault(table, set()).add((kind, text))
    return {table: TableShape(frozenset(cols), frozenset(constraints.get(table, ()))) for table, cols in columns.items()}


@functools.cache
def canonical_tables(applied: frozenset[str]) -> dict[str, TableShape]:
    """prefgen's tables after the migrations named in `applied` (those this prefgen knows), in list order."""
    con = duckdb.connect(":memory:")
    try:
        migrate(con, only=applied)
        return _shapes(con)
    finally:
        con.close()


def _kinds(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """name -> 'table' / 'view' for what the file's main schema holds."""
    kinds = {name: "view" for (name,) in con.execute(
        f"SELECT view_name FROM duckdb_views() WHERE NOT internal AND {_IN_THIS_FILE} AND schema_name = 'main'"
    ).fetchall()}
    kinds.update({name: "table" for (name,) in con.execute(
        f"SELECT table_name FROM duckdb_tables() WHERE {_IN_THIS_FILE} AND schema_name = 'main'"
    ).fetchall()})
    return kinds


def applied_migrations(con: duckdb.DuckDBPyConnection) -> set[str] | None:
    """The migrations the file records, or None when it has no `_migrations` table (not a prefgen store yet)."""
    kinds = _kinds(con)
    if "_migrations" not in kinds:
        return None
    if kinds["_migrations"] != "table":
        raise HostileStore("its _migrations is a view where prefgen keeps a table; this is not a store prefgen "
                           "wrote, or it was changed outside prefgen")
    try:
        return {name for (name,) in con.execute("SELECT name FROM main._migrations").fetchall()}
    except duckdb.Error as exc:
        raise HostileStore(f"its _migrations table is not prefgen's ({_first_line(exc)})") from None


def check_tables(con: duckdb.DuckDBPyConnection, applied: set[str]) -> None:
    """Refuse a file whose prefgen tables are views, missing, or reshaped (see the module docstring). Columns a
    newer prefgen added (the file records migrations this one does not know) are allowed."""
    known = {fn.__name__ for fn in MIGRATIONS}
    newer = applied - known
    expected = canonical_tables(frozenset(applied & known))
    kinds, found = _kinds(con), _shapes(con)
    problems = []
    for table, shape in sorted(expected.items()):
        if kinds.get(table) == "view":
            problems.append(f"{table} is a view where prefgen keeps a table")
        elif table not in found:
            problems.append(f"table {table} is missing")
        elif not _same_shape(shape, found[table], newer=bool(newer)):
            problems.append(f"table {table} does not have prefgen's columns and constraints")
    if problems:
        raise HostileStore(f"{'; '.join(problems)}: the file was changed outside prefgen, and prefgen's queries "
                           "over it cannot be trusted")


def _same_shape(expected: TableShape, found: TableShape, *, newer: bool) -> bool:
    if newer:  # a newer prefgen may have added columns and constraints
        return expected.columns <= found.columns and expected.constraints <= found.constraints
    return expected == found


def refuse_foreign_objects(con: duckdb.DuckDBPyConnection, *, read_only: bool) -> list[str]:
    """Refuse user-defined types; a reader refuses macros, a writer drops them. Returns the macros dropped."""
    types = sorted({name for (name,) in con.execute(
        f"SELECT type_name FROM duckdb_types() WHERE NOT internal AND {_IN_THIS_FILE}").fetchall()})
    if types:
        raise HostileStore(f"the store defines SQL types ({_names(types)}) that would change what prefgen's "
                           "casts mean; prefgen makes none. Drop them with DuckDB (DROP TYPE), or ask whoever "
                           "gave you the file for one without them")
    macros = con.execute(
        f"SELECT DISTINCT schema_name, function_name, function_type FROM duckdb_functions() "
        f"WHERE NOT internal AND {_IN_THIS_FILE} AND function_type IN ('macro', 'table_macro')"
    ).fetchall()
    if macros and read_only:
        raise HostileStore(f"the store defines SQL macros ({_names(name for _, name, _ in macros)}) that would "
                           "change what prefgen's queries compute; prefgen makes none, and a reader leaves the "
                           "file as it is. Drop them with DuckDB (DROP MACRO), or ask whoever gave you the file "
                           "for one without them")
    for schema, name, kind in macros:
        con.execute(f"DROP {'MACRO TABLE' if kind == 'table_macro' else 'MACRO'} IF EXISTS {quote_name(schema, name)}")
    return [name for _, name, _ in macros]


def guard_views(con: duckdb.DuckDBPyConnection, *, read_only: bool) -> list[str]:
    """Make prefgen's view names mean prefgen's definitions, whatever the file carries under those names.

    A writer restores a changed view in the file; a reader leaves the file alone and shadows it with a
    temporary view (DuckDB resolves temporary objects first). Returns the names that were changed.
    """
    found = dict(con.execute(
        f"SELECT view_name, sql FROM duckdb_views() WHERE NOT internal AND {_IN_THIS_FILE} AND schema_name = 'main'"
    ).fetchall())
    tables = {name for name, kind in _kinds(con).items() if kind == "table"}
    changed = []
    for name, sql in canonical_views().items():
        if found.get(name) == sql:
            continue
        if name not in found and name not in tables and read_only:
            continue  # an older store without this view: queries on it fail as before
        body = sql.split(" AS ", 1)[1]
        try:
            if read_only:
                con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_name(name)} AS {body}")
            else:
                if name in tables:
                    con.execute(f"DROP TABLE {quote_name(name)}")
                con.execute(f"CREATE OR REPLACE VIEW {quote_name(name)} AS {body}")
        except duckdb.Error as exc:
            if read_only:
                continue  # the file lacks what the view reads: an older store; the view stays unusable
            raise PrefgenError(f"cannot restore prefgen's view {name!r} in the store ({_first_line(exc)})") from None
        changed.append(name)
    return changed


def _names(names) -> str:
    # Shown with repr: a name is data, and may hold quotes, semicolons or control characters.
    return ", ".join(repr(name) for name in sorted(names))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
