"""Opening the DuckDB file, applying migrations, and the batched-write primitive every table uses.

Every connection prefgen opens is locked down (`connect`): SQL can read and write the store and nothing
else: no file or network access (read_csv, read_text, COPY ... TO, EXPORT DATABASE), no ATTACH, no
INSTALL/LOAD of extensions, no SET (the configuration is locked). Inputs and exports go through pyarrow in
Python instead. A store is a file others may hand you, so the views it carries are not trusted either:
prefgen's own views are checked against their definitions on open and restored (writers) or shadowed by a
temporary view of the right definition (readers).

Reading while a label run writes. DuckDB lets one process hold a file for writing, and while it does no other
process may open it at all, not even read-only (measured with DuckDB 2.0: "Could not set lock on file ...
Conflicting lock is held"); a read-only connection in turn keeps writers out. So every open, reader or writer,
retries a lock conflict for a bounded time (`LOCK_WAIT_S`) with a short random back-off, and while it waits it
leaves a note beside the store (`DB.wanted`, its modification time renewed at every retry). A label run shares
the file (`Store.shared`): it holds it while nobody waits, and once the note is fresh it lets go of the file
after each batch commit and whenever its once-a-second write finds nothing to write, reopening it only for the
commit itself (open, insert, commit, close: a median 0.36 s per 512 answers on 2 cores at load 8, measured).
`stats`, `sql`, `agreement`, `report` and `show` therefore get in within about a second. A reader that holds the
file delays the run's next write, not its calls: the batch waits in memory and is written as soon as the file is
free. Letting go of the file always (not only when asked) was measured first: reopening it for every batch cost
about a fifth of the send rate on 2 busy cores. A reader snapshot (a copy of the file) was the other option; it
is not taken, because a copy made while a batch commits can be torn, and the copy costs as much as the store is
large.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random

from prefgen.errors import PrefgenError
from prefgen.storage.guard import (HostileStore, applied_migrations, check_tables, guard_views,
                                   refuse_foreign_objects)
from prefgen.storage.migrations import migrate
from prefgen.storage.names import quote_name
from prefgen.storage.wal import is_unreplayable_wal, move_wal_aside, unreplayable_wal
from prefgen.storage.watchdog import GuardedConnection, damaged, is_damage, query_time_limit

log = logging.getLogger("prefgen.storage")


# No file or network access from SQL, no extensions, and no way for SQL to turn that back on.
LOCKED_DOWN = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "lock_configuration": True,
}
_SQLITE_MAGIC = b"SQLite format 3\x00"
_DUCKDB_MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB database file
# How long an open waits for another process to let go of the file. A label run lets go within about a second
# of being asked; what holds it throughout (train, mix --auto) is asked to finish first.
LOCK_WAIT_S = 15.0
# After minutes of training, wait longer for the file than a command's first open does: giving up there would
# leave a finished model unrecorded.
RELEASE_WAIT_S = 300.0
_LOCK_BACKOFF_S = (0.02, 0.12)  # random, so that several waiting readers do not retry in step
# A waiting process renews its note at every retry; a label run treats a note this old as gone.
WANTED_FRESH_S = 2.0
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")


class StoreBusy(PrefgenError):
    """Another process held the store for longer than the open was willing to wait."""


def _is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "Conflicting lock" in str(exc)


def connection_config() -> dict[str, Any]:
    """LOCKED_DOWN plus the memory limit the user asked for in `PREFGEN_DUCKDB_MEMORY_LIMIT`.

    The limit has to come from outside: the locked configuration refuses `SET memory_limit` in SQL. DuckDB's
    default is 80% of RAM; past its limit it spills joins and sorts to disk beside the store instead."""
    config = dict(LOCKED_DOWN)
    limit = os.environ.get("PREFGEN_DUCKDB_MEMORY_LIMIT", "").strip()
    if limit:
        config["memory_limit"] = limit
    return config


def connect(path: str | Path, *, read_only: bool = False, wait_s: float = LOCK_WAIT_S) -> duckdb.DuckDBPyConnection:
    """A locked-down DuckDB connection to `path` (":memory:" for none), or a one-line PrefgenError.

    While another process holds the file, the open is retried for up to `wait_s` seconds (0: one try), then
    fails with `StoreBusy` naming the holder's PID.
    """
    path = str(path)
    if path != ":memory:":
        _check_is_duckdb(Path(path))
    retrying = Retrying(retry=retry_if_exception(_is_lock_conflict), stop=stop_after_delay(wait_s),
                        wait=wait_random(*_LOCK_BACKOFF_S), reraise=True,
                        before_sleep=lambda _: note_wanted(path))
    config = connection_config()
    try:
        return retrying(duckdb.connect, path, read_only=read_only, config=config)
    except duckdb.ParserException as exc:
        if "memory_limit" not in config:
            raise
        raise PrefgenError(f"PREFGEN_DUCKDB_MEMORY_LIMIT={config['memory_limit']!r} is not a memory size "
                           f"({exc}); use a size such as 2GB or 512MB, or unset it") from None
    except (duckdb.IOException, duckdb.PermissionException, duckdb.InvalidInputException) as exc:
        if _is_lock_conflict(exc):
            raise _busy(path, str(exc), wait_s) from None
        raise PrefgenError(f"{path}: cannot open the database ({_first_line(exc)})") from None
    except duckdb.Error as exc:
        if is_unreplayable_wal(exc):
            if read_only:
                raise unreplayable_wal(path, exc) from None
            move_wal_aside(path, exc)
            return connect(path, read_only=read_only, wait_s=wait_s)
        if is_damage(exc):
            raise damaged(path, exc) from None
        raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def wanted_note(path: str) -> Path:
    return Path(f"{path}.wanted")


def note_wanted(path: str) -> None:
    """Tell a label run holding the store that this process waits for it (the note's time is what counts)."""
    try:
        wanted_note(path).touch()
    except OSError:
        pass  # a store in a folder we cannot write to: the run lets go of the file only between its batches


def is_wanted(path: str) -> bool:
    """Whether a process asked for the file within the last WANTED_FRESH_S seconds."""
    try:
        return time.time() - wanted_note(path).stat().st_mtime < WANTED_FRESH_S
    except OSError:
        return False


def _busy(path: str, message: str, wait_s: float) -> StoreBusy:
    holder = _LOCK_HOLDER.search(message)
    who = f"process {holder[2]} ({Path(holder[1]).name})" if holder else "another process"
    return StoreBusy(f"{path}: {who} has held the store for the last {wait_s:g} s (a `prefgen train`, `mix "
                     "--auto` or a long query holds it throughout; a label run only while it writes a batch); "
                     "run this again when it is done")


def _check_is_duckdb(path: Path) -> None:
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return  # a new file, or one DuckDB will refuse with its own words
    if not head:
        if path.exists():
            raise PrefgenError(f"{path}: an empty file (0 bytes), not a DuckDB database; give --db a prefgen store, "
                               "or a name that does not exist yet to create one")
        return
    if head.startswith(_SQLITE_MAGIC):
        raise PrefgenError(f"{path}: this is a SQLite database, not a DuckDB one; give --db a DuckDB file "
                           "(a new name creates one)")
    if head[8:12] != _DUCKDB_MAGIC:
        raise PrefgenError(f"{path}: not a DuckDB database; give --db a DuckDB file (a new name creates one)")


@contextlib.contextmanager
def cleanup(undo: Callable[[], object]) -> Iterator[None]:
    """Run `undo` when the block ends. When the block failed, a DuckDB error from `undo` is dropped so that the
    block's own error is the one the user sees: after a failed statement in a transaction DuckDB refuses every
    later statement, `unregister` and `DROP` included, and that second error would hide the cause."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            undo()
        raise
    undo()


@contextlib.contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, table: Any) -> Iterator[None]:
    """`table` (Arrow) readable from SQL as `name` for the duration of the block."""
    con.register(name, table)
    with cleanup(lambda: con.unregister(name)):
        yield


def create_store(path: Path) -> None:
    """A new store appears whole or not at all: it is built beside its name (every migration applied and
    checkpointed, so that nothing lives in a WAL), then linked into place. A process killed meanwhile leaves no
    store, or a whole one, never a file that holds half a schema; at worst a `NAME.new-PID` file to delete."""
    staging = path.with_name(f"{path.name}.new-{os.getpid()}")
    for leftover in (staging, Path(f"{staging}.wal")):
        leftover.unlink(missing_ok=True)  # this process's own, from an attempt that failed
    con = connect(staging)
    try:
        migrate(con)
        con.execute("CHECKPOINT")
    except BaseException:  # Ctrl-C, SIGTERM: nothing was created
        con.close()
        for leftover in (staging, Path(f"{staging}.wal")):
            leftover.unlink(missing_ok=True)
        raise
    con.close()
    try:
        os.link(staging, path)  # unlike a rename, never replaces a store another process created meanwhile
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links
        if not path.exists():
            os.replace(staging, path)
    staging.unlink(missing_ok=True)


class Store:
    """One DuckDB file. Writers migrate on open; readers (`read_only=True`) never change the file."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = str(path)
        self.read_only = read_only
        if read_only and not Path(self.path).exists():
            raise PrefgenError(f"{self.path}: no such database (run `prefgen label` first, or check --db)")
        self._sharing = False
        # Readers run each query under a time limit (a store may be a file someone handed you).
        self._limit_s = query_time_limit() if read_only else None
        self.con: Any = None
        if not read_only and self.path != ":memory:" and not Path(self.path).exists():
            create_store(Path(self.path))
        self._reopen(LOCK_WAIT_S)
        try:
            self._check_and_migrate()
        except HostileStore as exc:
            self.close()
            raise HostileStore(f"{self.path}: {exc}") from None
        except BaseException:
            self.close()
            raise

    def _check_and_migrate(self) -> None:
        """Refuse what would change prefgen's queries (`storage.guard`), bring a writer's schema up to date, and
        checkpoint every schema change: DDL must never live only in the WAL, which a DuckDB that cannot replay
        it (1.4 and 1.5 could not replay ALTER TABLE on these tables) would make unopenable."""
        con = self.con
        dropped = refuse_foreign_objects(con, read_only=self.read_only)
        applied = applied_migrations(con)
        if applied is None and self.read_only:
            raise PrefgenError(f"{self.path}: not a prefgen store (it has no _migrations table); give --db a store "
                               "that prefgen wrote")
        if applied is not None:
            check_tables(con, applied)
        changed = [] if self.read_only else self._migrate()
        changed += guard_views(con, read_only=self.read_only)
        if dropped or changed:
            self.checkpoint()

    def _migrate(self) -> list[str]:
        try:
            return migrate(self.con)
        except duckdb.Error as exc:
            raise PrefgenError(f"{self.path}: cannot bring the store's schema up to date ({_first_line(exc)}); is "
                               "--db a store that prefgen wrote, or a new file name?") from None

    def checkpoint(self) -> None:
        """Write everything the WAL holds into the file itself (a writer's; readers change nothing)."""
        if self.con is None or self.read_only or self.path == ":memory:":
            return
        try:
            self.con.execute("CHECKPOINT")
        except duckdb.TransactionException as exc:  # another connection of this process is mid-transaction
            log.debug("checkpoint of %s postponed to the close: %s", self.path, exc)

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    def _reopen(self, wait_s: float) -> None:
        # No migration or guard: they ran when the store was first opened, and the writes made in between
        # (INSERTs of prefgen's own rows) read no view or function that a file could have redefined.
        self.con = GuardedConnection(connect(self.path, read_only=self.read_only, wait_s=wait_s), self.path,
                                     self._limit_s)

    @contextlib.contextmanager
    def shared(self, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
        """For the duration, hold the file only while no other process waits to open it: once one does (it
        leaves a note, `wanted_note`), the file is let go of after each write (`briefly`) and when idle
        (`let_go_if_wanted`), and held again by the first write after the note has gone stale. Held again at
        the end (waiting up to `wait_s` for a reader to finish)."""
        self._sharing = self.path != ":memory:"  # nobody else can open that, and closing would lose it
        try:
            yield
        finally:
            self._sharing = False
            if self.con is None:
                self._reopen(wait_s)

    def let_go_if_wanted(self) -> None:
        """Inside `shared`: close the file if another process is waiting to open it."""
        if self._sharing and self.con is not None and is_wanted(self.path):
            self.close()

    @contextlib.contextmanager
    def briefly(self, wait_s: float = 0.0) -> Iterator[None]:
        """Inside `shared`: hold the file for one write (reopening it if it was let go of; StoreBusy when another
        process keeps it for `wait_s` seconds, 0: one try), then let go of it if someone waits. Outside `shared`
        the open connection is used as it is."""
        if self.con is None:
            self._reopen(wait_s)
        try:
            yield
        finally:
            self.let_go_if_wanted()

    @contextlib.contextmanager
    def released(self, wait_s: float = RELEASE_WAIT_S) -> Iterator[None]:
        """Let go of the file for work that does not touch it (training a reward model: minutes), so that
        `stats`, `sql`, `report` or a label run can open the store meanwhile. Held again at the end, waiting up
        to `wait_s` for whoever holds it then; the views and macros are checked again, since another process may
        have written the file in between. Not inside a transaction: closing would roll it back."""
        if self.con is None or self.path == ":memory:":
            yield
            return
        self.close()
        try:
            yield
        finally:
            self._reopen(wait_s)
            self._check_and_migrate()

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
            with contextlib.suppress(duckdb.Error):  # the block's error is the one to report
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
        columns = ", ".join(quote_name(name) for name in batch.column_names)
        with registered(self.con, "_prefgen_batch", batch):
            self.con.execute(f"{verb} INTO {quote_name(table)} ({columns}) SELECT {columns} FROM _prefgen_batch")
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
            raise PrefgenError(f"SQL error: {' '.join(str(exc).split())}") from None

    def query_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        with self.con.running(sql):  # a relation runs when fetched: both under the reader's time limit
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
