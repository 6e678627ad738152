"""A write-ahead log DuckDB cannot replay: moved aside by a writer (never deleted), refused by a reader.

DuckDB keeps recent writes in `DB.wal` until a checkpoint folds them into the file. A WAL that this DuckDB
cannot apply (written by a version that logged something it cannot replay, or damaged) makes the store
unopenable. prefgen no longer leaves schema changes in a WAL (it checkpoints after them), but a WAL from an
older prefgen or another tool may still be there: a writer moves it to `DB.wal.unreplayable-<UTC time>` and
opens the store as of its last checkpoint, saying what was lost and how to get it back; a reader changes
nothing and says the same.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from prefgen.errors import PrefgenError

log = logging.getLogger("prefgen.storage")

# DuckDB's words when the write-ahead log beside a file cannot be applied to it.
_WAL_REPLAY = "Failure while replaying WAL file"


def _replay_hint(path: str) -> str:
    return (f"open the store with a DuckDB that can replay it (the one that wrote it, or a newer one) and "
            f"CHECKPOINT: python -c \"import duckdb; duckdb.connect('{path}').execute('CHECKPOINT')\". A WAL "
            "DuckDB calls corrupt is damaged: its writes cannot be recovered")


def unreplayable_wal(path: str, exc: BaseException) -> PrefgenError:
    """A reader changes nothing, the WAL included: it says what is wrong and how to go on."""
    return PrefgenError(
        f"{path}: its write-ahead log {path}.wal cannot be replayed by DuckDB {duckdb.__version__} "
        f"({_first_line(exc)}); nothing was changed. Move {path}.wal aside (never delete it) to open the store "
        f"without the writes it holds; or, to keep them, {_replay_hint(path)}")


def move_wal_aside(path: str, exc: BaseException) -> Path:
    """Move the WAL DuckDB cannot replay to a name of its own beside the store (never deleting it), and say so:
    the store then opens as of its last checkpoint."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    wal = Path(f"{path}.wal")
    aside = wal.with_name(f"{wal.name}.unreplayable-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = wal.with_name(f"{wal.name}.unreplayable-{stamp}-{n}")
    wal.rename(aside)
    log.warning("%s could not be replayed by DuckDB %s (%s). It was moved to %s and the store opened without it: "
                "the writes it held (since the store's last checkpoint) are not in the store, and a label run asks "
                "those calls again. To get those writes back instead, put %s back as %s and %s.", wal,
                duckdb.__version__, _first_line(exc), aside, aside, wal, _replay_hint(path))
    return aside


def is_unreplayable_wal(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.Error) and _WAL_REPLAY in str(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
