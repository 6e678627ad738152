"""Reading rows from JSONL, CSV, Parquet, a Hugging Face dataset saved to disk, or a DuckDB table.

Every reader yields (location, row) so that an error can name the line (or row) it came from.
Files are read and validated whole before anything is written, so bad input never half-writes a store.
Readers stream (a line, a Parquet row group, a fetch of rows at a time), so a pass over millions of pairs
holds one batch in memory, not the file; only a JSON array is parsed whole (use JSON Lines for large inputs).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from prefgen.errors import InputError, PrefgenError
from prefgen.records import Pair, make_pair, parse_prompt

T = TypeVar("T")

PAIR_COLUMNS = ("prompt", "response_a", "response_b")


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # 1-based line (JSONL, CSV data line) or row number (Parquet, datasets, DuckDB)
    data: dict[str, Any]


def split_duckdb_spec(spec: str) -> tuple[Path, str] | None:
    """(file, table) when `spec` is `FILE.duckdb:TABLE` (or `FILE.db:TABLE`), which names a table in a
    DuckDB file; None for any other input."""
    head, sep, table = spec.rpartition(":")
    if sep and head.endswith((".duckdb", ".db")) and table:
        return Path(head), table
    return None


def read_rows(spec: str | Path) -> Iterator[Row]:
    """Rows of any supported input, with their line numbers."""
    spec = str(spec)
    duck = split_duckdb_spec(spec)
    if duck:
        yield from _duckdb_rows(*duck)
        return
    path = Path(spec)
    if not path.exists():
        raise InputError(path, "no such file or directory")
    if path.is_dir():
        yield from _dataset_rows(path)
        return
    suffix = path.suffix.lower()
    if suffix == ".json":
        yield from _json_rows(path)
    elif suffix in (".jsonl", ".ndjson"):
        yield from _jsonl_rows(path)
    elif suffix == ".csv":
        yield from _csv_rows(path)
    elif suffix == ".parquet":
        yield from _parquet_rows(path)
    else:
        raise InputError(path, f"unknown file type {suffix!r}", hint="use .jsonl, .csv, .parquet, a datasets "
                         "directory saved with save_to_disk, or FILE.duckdb:TABLE")


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(path, f"not UTF-8 (invalid byte at offset {exc.start})", line=line,
                         hint="re-encode the file as UTF-8") from None


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file, one line at a time (a byte-order mark is dropped)."""
    offset = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(path, f"not UTF-8 (invalid byte at offset {offset + exc.start})", line=number,
                                 hint="re-encode the file as UTF-8") from None
            offset += len(raw)
            yield number, text.rstrip("\r\n")


def _jsonl_rows(path: Path) -> Iterator[Row]:
    for number, line in _text_lines(path):
        if not line.strip():
            continue
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InputError(path, f"not valid JSON ({exc})", line=number,
                             hint="each line must be one JSON object") from None
        if not isinstance(data, dict):
            raise InputError(path, f"expected a JSON object, got {type(data).__name__}", line=number)
        yield Row(number, data)


def _json_rows(path: Path) -> Iterator[Row]:
    """A .json file is a JSON array of objects (rows numbered from 1), or JSON Lines under another name."""
    with path.open("rb") as f:
        is_array = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")
    if not is_array:
        yield from _jsonl_rows(path)
        return
    try:
        data = orjson.loads(_decode(path))
    except orjson.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc})", hint="a .json file holds one array of objects") from None
    for number, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise InputError(path, f"array item {number} is a {type(item).__name__}, not an object", line=number,
                             hint="each item must be an object with prompt, response_a, response_b")
        yield Row(number, item)


_EXTRA_FIELDS = "\x00extra"


def _csv_rows(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, restkey=_EXTRA_FIELDS)
        try:
            for row in reader:
                if _EXTRA_FIELDS in row:
                    extra = len(row[_EXTRA_FIELDS])
                    raise InputError(path, f"{extra} more field(s) than the header's {len(reader.fieldnames or ())}",
                                     line=reader.line_num, hint="quote fields that contain commas, or fix the header")
                yield Row(reader.line_num, dict(row))
        except UnicodeDecodeError:
            raise InputError(path, "not UTF-8", line=reader.line_num + 1, hint="re-encode the file as UTF-8") from None


_READ_BATCH = 4096  # rows per Parquet batch or DuckDB fetch


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_READ_BATCH):
        for data in batch.to_pylist():
            number += 1
            yield Row(number, data)


def _dataset_rows(path: Path) -> Iterator[Row]:
    try:
        from datasets import DatasetDict, load_from_disk
    except ImportError:
        raise PrefgenError("reading a Hugging Face dataset needs `pip install datasets`") from None
    try:
        ds = load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise InputError(path, f"not a dataset saved with save_to_disk ({exc})") from None
    if isinstance(ds, DatasetDict):
        if "train" not in ds:
            raise InputError(path, f"a DatasetDict without a 'train' split (has {sorted(ds)})",
                             hint="save the split you want on its own")
        ds = ds["train"]
    for number, data in enumerate(ds, start=1):
        yield Row(number, dict(data))


def _duckdb_rows(path: Path, table: str) -> Iterator[Row]:
    from prefgen.storage.input_tables import table_rows

    for number, data in enumerate(table_rows(path, table, _READ_BATCH), start=1):
        yield Row(number, data)


@dataclass
class PairsRead:
    pairs: list[Pair]
    duplicates: int = 0
    skipped: list[str] = field(default_factory=list)  # rendered errors of rows skipped with --skip-bad
    count: int = 0  # unique valid pairs seen (a streamed read keeps the count, not the pairs)
    last_line: int | None = None  # with a limit: the row where it was reached
    repeated: set[str] | None = None  # when a set: the ids of the pairs met more than once are collected in it


class SeenIds:
    """The content-hash ids met so far, at 16 bytes each: a sorted numpy array, merged a batch at a time.

    A Python set of id strings costs about 150 bytes an id, which at millions of pairs is the largest thing
    a streamed read would hold. Ids are digested to 128 bits (as the ids themselves are), so a false
    duplicate is as unlikely as a collision of the ids.
    """

    _MERGE_EVERY = 8192

    def __init__(self) -> None:
        import numpy as np

        self._np = np
        self._sorted = np.empty(0, dtype="S16")
        self._recent: set[bytes] = set()

    def add(self, pair_id: str) -> bool:
        """Record `pair_id`; False when it was met before."""
        key = hashlib.blake2b(pair_id.encode(), digest_size=16).digest()
        if key in self._recent or self._in_sorted(key):
            return False
        self._recent.add(key)
        if len(self._recent) >= self._MERGE_EVERY:
            self._merge()
        return True

    def _in_sorted(self, key: bytes) -> bool:
        i = int(self._np.searchsorted(self._sorted, key))
        return i < len(self._sorted) and self._sorted[i] == key

    def _merge(self) -> None:
        np = self._np
        new = np.sort(np.array(list(self._recent), dtype="S16"))
        self._sorted = np.insert(self._sorted, np.searchsorted(self._sorted, new), new)
        self._recent.clear()


def pair_from_row(row: Row, path: str, source: str) -> Pair:
    data = row.data
    missing = [c for c in PAIR_COLUMNS if c not in data]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}", line=row.line,
                         hint=f"each row needs {', '.join(PAIR_COLUMNS)}")
    prompt = parse_prompt(data["prompt"], path, row.line)
    texts = {}
    for column in ("response_a", "response_b"):
        value = data[column]
        if value is not None and not isinstance(value, str):
            raise InputError(path, f"must be text, got {type(value).__name__} {str(value)[:40]!r}", line=row.line,
                             field=column, hint="write the response as a string")
        if not isinstance(value, str) or not value.strip():
            raise InputError(path, "empty response: there is nothing to judge", line=row.line, field=column,
                             hint="remove the row or fill in the response")
        texts[column] = value
    if (prompt.strip() if isinstance(prompt, str) else prompt) == "":
        raise InputError(path, "empty prompt", line=row.line, field="prompt")
    if texts["response_a"].strip() == texts["response_b"].strip():
        raise InputError(path, "response_a and response_b are identical: there is no preference to learn",
                         line=row.line, field="response_b", hint="remove the row")
    metadata = {k: v for k, v in data.items() if k not in (*PAIR_COLUMNS, "id")}
    pair, _ = make_pair(prompt, texts["response_a"], texts["response_b"], source=source,
                        source_id=str(data["id"]) if data.get("id") is not None else None,
                        metadata=_jsonable(metadata))
    return pair


def _jsonable(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=str))


def iter_pairs(spec: str | Path, tally: PairsRead, *, limit: int | None = None,
               skip_bad: bool = False) -> Iterator[Pair]:
    """The valid pairs of an input, canonicalised and de-duplicated (first occurrence wins), one at a time;
    `tally` counts them, the duplicates and the skipped rows as they go by."""
    path = str(spec)
    source = Path(path).name
    seen = SeenIds()
    for row in read_rows(spec):
        try:
            pair = pair_from_row(row, path, source)
        except InputError as exc:
            if not skip_bad:
                raise exc.or_skip() from None
            tally.skipped.append(exc.render())
            continue
        if not seen.add(pair.id):
            tally.duplicates += 1
            if tally.repeated is not None:
                tally.repeated.add(pair.id)
            continue
        tally.count += 1
        yield pair
        if limit is not None and tally.count >= limit:
            tally.last_line = row.line
            break
    if not tally.count:
        raise InputError(path, "no pairs to label", hint="the input is empty or every row was skipped")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def pair_batches(spec: str | Path, tally: PairsRead, size: int, *, limit: int | None = None,
                 skip_bad: bool = False) -> Iterator[list[Pair]]:
    """`iter_pairs` in lists of `size`: what a pipeline plans, sends and writes at a time."""
    return batched(iter_pairs(spec, tally, limit=limit, skip_bad=skip_bad), size)


def read_pairs(spec: str | Path, *, limit: int | None = None, skip_bad: bool = False) -> PairsRead:
    """All pairs of an input in a list (for inputs that fit in memory; pipelines stream `pair_batches`)."""
    result = PairsRead([])
    result.pairs = list(iter_pairs(spec, result, limit=limit, skip_bad=skip_bad))
    return result
