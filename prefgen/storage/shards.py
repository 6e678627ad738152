"""Parquet shards of judgement rows (written by Ray workers) and their merge into the store.

DuckDB lets one process write a file at a time, so workers on many machines cannot share the store: each
writes its answers as small Parquet files instead, one per flush (so a killed worker loses at most what it had
not flushed), named after the chunk of pairs they answer. `ingest_shards` merges them into `judgements` by
request hash, the store's primary key, so merging a shard twice, or a shard whose answers are stored already,
changes nothing. The store's connection is locked down (no file access from SQL), so the files are read with
pyarrow and handed to DuckDB as Arrow batches.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefgen.errors import PrefgenError
from prefgen.records import Answer, Judgement
from prefgen.storage.db import Store, registered, rows_to_arrow
from prefgen.storage.names import quote_name

SHARD_SUFFIX = ".parquet"
_COLUMNS = [f.name for f in fields(Judgement)]
# Columns a shard written before m014 lacks: read as NULL.
_OPTIONAL = frozenset({"tokens_cached", "tokens_cache_written", "batch_id"})
_INGEST_BATCH = 65_536


def write_shard(directory: Path, key: str, rows: Sequence[Judgement]) -> Path:
    """One shard of `rows`, in full or not at all: written under a temporary name, then renamed."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{key}-{uuid.uuid4().hex[:12]}{SHARD_SUFFIX}"
    partial = path.with_suffix(".partial")
    pq.write_table(rows_to_arrow(rows), partial)
    os.replace(partial, path)
    return path


def shard_paths(where: Path | Iterable[Path], key: str = "") -> list[Path]:
    """The shards in a directory (those of one chunk when `key` is given), or the files given, in name order."""
    if isinstance(where, Path):
        if not where.exists():
            return []
        if where.is_file():
            return [where]
        return sorted(where.glob(f"{key}*{SHARD_SUFFIX}"))
    paths = []
    for item in where:
        paths.extend(shard_paths(Path(item), key))
    return paths


def sharded_answers(directory: Path, key: str) -> dict[str, Answer]:
    """The answers a chunk's shards hold already: a retried chunk (its worker was killed) skips them."""
    answers = {}
    for path in shard_paths(directory, key):
        table = pq.read_table(path, columns=["request_hash", "status", "p_first", "confidence_source"])
        for h, status, p, source in zip(*(table.column(i).to_pylist() for i in range(4))):
            answers[h] = Answer(status, p, source)
    return answers


@dataclass
class IngestCount:
    files: int = 0
    rows: int = 0  # judgement rows read from the shards
    written: int = 0  # rows that were new to the store (or replaced a stored judge error)


def ingest_shards(store: Store, paths: Sequence[Path]) -> IngestCount:
    """Merge shards into `judgements`, one transaction per file. Per request hash, a stored answer is kept;
    a stored judge error is replaced by a shard's row (the call was asked again), as `save_judgements` does.
    Within a batch, an answer wins over a judge error, then the later row."""
    count = IngestCount()
    for path in paths:
        try:
            parquet = pq.ParquetFile(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise PrefgenError(f"{path}: not a readable Parquet shard ({exc})") from None
        present = parquet.schema_arrow.names
        missing = [c for c in _COLUMNS if c not in present and c not in _OPTIONAL]
        if missing:
            raise PrefgenError(f"{path}: not a judgement shard (no column {', '.join(missing)})")
        columns = [c for c in _COLUMNS if c in present]
        with store.transaction():
            for batch in parquet.iter_batches(batch_size=_INGEST_BATCH, columns=columns):
                count.rows += batch.num_rows
                count.written += _merge_batch(store, pa.Table.from_batches([batch]))
        count.files += 1
    return count


def _merge_batch(store: Store, batch: pa.Table) -> int:
    columns = ", ".join(quote_name(c) for c in batch.column_names)
    with registered(store.con, "_prefgen_shard", batch):
        store.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _prefgen_merge AS
                SELECT {columns} FROM (SELECT *, row_number() OVER () AS _position FROM _prefgen_shard) s
                WHERE NOT EXISTS (SELECT 1 FROM judgements j
                                  WHERE j.request_hash = s.request_hash AND j.status <> 'judge_error')
                QUALIFY row_number() OVER (PARTITION BY request_hash
                                           ORDER BY status = 'judge_error', _position DESC) = 1"""
        )
        store.con.execute(f"INSERT OR REPLACE INTO judgements ({columns}) SELECT {columns} FROM _prefgen_merge")
        written = store.con.execute("SELECT count(*) FROM _prefgen_merge").fetchone()[0]
        store.con.execute("DROP TABLE _prefgen_merge")
    return int(written)


def shard_job_pairs(paths: Sequence[Path]) -> dict[str, set[str]]:
    """job id -> the pairs the shards answered for it."""
    found: dict[str, set[str]] = {}
    for path in paths:
        table = pq.read_table(path, columns=["job_id", "pair_id"])
        for job_id, pair_id in zip(table.column(0).to_pylist(), table.column(1).to_pylist()):
            found.setdefault(job_id, set()).add(pair_id)
    return found


def remove_shards(paths: Iterable[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
