"""A time limit on each query over a store someone handed you, and clean errors from a damaged file.

A reader runs its queries through `GuardedConnection.execute`: a timer (the watchdog) calls DuckDB's
`interrupt()` on the connection when a query runs past the limit, and the query then fails with a one-line
error that names the limit instead of hanging the command. The limit is `PREFGEN_QUERY_TIMEOUT_S` seconds
(default 300; 0 turns it off). Writers run prefgen's own queries over tables that were checked on open, some of
them long on purpose (a mix over millions of rows), so they run without one.

A block DuckDB cannot read back (a checksum that does not match, a file cut short) fails every query that
touches it; that too becomes one line that says the file is damaged, for readers and writers alike.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import duckdb

from prefgen.errors import PrefgenError

DEFAULT_QUERY_TIMEOUT_S = 300.0
_DAMAGED = ("Corrupt database file", "Could not read enough bytes", "Corrupted database")


class QueryTimeLimit(PrefgenError):
    """A query over the store ran past the reader's time limit and was stopped."""


class DamagedStore(PrefgenError):
    """DuckDB cannot read part of the file back."""


def query_time_limit() -> float | None:
    """The reader's limit in seconds from PREFGEN_QUERY_TIMEOUT_S (None: no limit)."""
    raw = os.environ.get("PREFGEN_QUERY_TIMEOUT_S", "").strip()
    if not raw:
        return DEFAULT_QUERY_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise PrefgenError(f"PREFGEN_QUERY_TIMEOUT_S={raw!r} is not a number of seconds; use e.g. 300, or 0 for "
                           "no limit") from None
    if value != value or value < 0:
        raise PrefgenError(f"PREFGEN_QUERY_TIMEOUT_S={raw!r} must be 0 (no limit) or a positive number of seconds")
    return value or None


def is_damage(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.Error) and any(sign in str(exc) for sign in _DAMAGED)


def damaged(path: str, exc: BaseException) -> DamagedStore:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DamagedStore(f"{path}: the store file is damaged: DuckDB cannot read part of it back ({first}). Restore "
                        "it from a copy; `prefgen sql` and `prefgen export` may still read the tables the damage "
                        "does not touch")


class GuardedConnection:
    """A DuckDB connection whose `execute` runs under the time limit (None: none) and turns a damaged file
    into `DamagedStore`. Every other attribute is the connection's own."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: str, limit_s: float | None) -> None:
        self._con = con
        self._path = path
        self._limit_s = limit_s

    def execute(self, query: str, parameters: Any = None) -> Any:
        with self.running(query):
            return self._con.execute(query, parameters)

    @contextlib.contextmanager
    def running(self, query: str) -> Iterator[None]:
        """The block (which runs `query`, as `execute` or as a relation fetched inside it) under the limit."""
        fired = threading.Event()

        def interrupt() -> None:
            fired.set()
            self._con.interrupt()

        timer = threading.Timer(self._limit_s, interrupt) if self._limit_s else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            yield
        except duckdb.Error as exc:
            if fired.is_set():
                raise QueryTimeLimit(
                    f"{self._path}: a query ran past the time limit of {self._limit_s:g} s and was stopped "
                    f"({' '.join(query.split())[:100]}); a store handed to you may hold views that never finish. "
                    "If the store is just large, raise PREFGEN_QUERY_TIMEOUT_S (0: no limit)") from None
            if is_damage(exc):
                raise damaged(self._path, exc) from None
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def close(self) -> None:
        self._con.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)
