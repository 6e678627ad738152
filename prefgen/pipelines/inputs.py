"""Reading rows from JSONL, CSV, Parquet, a Hugging Face dataset saved to disk, or a DuckDB table.

Every reader yields (location, row) so that an error can name the line (or row) it came from.
Files are read and validated whole before anything is written, so bad input never half-writes a store.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from prefgen.errors import InputError, PrefgenError
from prefgen.records import Pair, make_pair

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


def _jsonl_rows(path: Path) -> Iterator[Row]:
    for number, line in enumerate(_decode(path).splitlines(), start=1):
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
    text = _decode(path)
    if not text.lstrip().startswith("["):
        yield from _jsonl_rows(path)
        return
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc})", hint="a .json file holds one array of objects") from None
    for number, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise InputError(path, f"array item {number} is a {type(item).__name__}, not an object", line=number,
                             hint="each item must be an object with prompt, response_a, response_b")
        yield Row(number, item)


_EXTRA_FIELDS = "\x00extra"


def _csv_rows(path: Path) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(_decode(path), newline=""), restkey=_EXTRA_FIELDS)
    for row in reader:
        if _EXTRA_FIELDS in row:
            extra = len(row[_EXTRA_FIELDS])
            raise InputError(path, f"{extra} more field(s) than the header's {len(reader.fieldnames or ())}",
                             line=reader.line_num, hint="quote fields that contain commas, or fix the header")
        yield Row(reader.line_num, dict(row))


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    for number, data in enumerate(table.to_pylist(), start=1):
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
    import duckdb

    from prefgen.storage.db import connect

    if not path.exists():
        raise InputError(path, "no such DuckDB file")
    con = connect(path, read_only=True)  # locked down: the file's SQL cannot reach anything else
    try:
        cur = con.execute(f'SELECT * FROM "{table.replace(chr(34), "")}"')
    except duckdb.CatalogException as exc:
        raise InputError(path, f"no table {table!r} ({exc})") from None
    names = [d[0] for d in cur.description]
    for number, values in enumerate(cur.fetchall(), start=1):
        yield Row(number, dict(zip(names, values)))
    con.close()


CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")


def parse_prompt(value: Any, path: str, line: int) -> str | list[dict[str, str]]:
    """A prompt is text or a list of {role, content} messages (a JSON string of one is accepted too)."""
    if isinstance(value, str) and value.lstrip().startswith("[{"):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    ):
        for i, m in enumerate(value):
            if m["role"] not in CHAT_ROLES:
                # The role is printed into the judge's prompt as "Role: content": a role with a newline, or one
                # of no known kind, could forge turns of the transcript.
                raise InputError(path, f"unknown chat role {m['role'][:40]!r}", line=line,
                                 field=f"prompt[{i}].role", hint=f"use one of {', '.join(CHAT_ROLES)}")
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise InputError(path, "must be text or a list of {role, content} messages", line=line, field="prompt")


@dataclass
class PairsRead:
    pairs: list[Pair]
    duplicates: int = 0
    skipped: list[str] = field(default_factory=list)  # rendered errors of rows skipped with --skip-bad


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


def read_pairs(spec: str | Path, *, limit: int | None = None, skip_bad: bool = False) -> PairsRead:
    """All pairs of an input, validated, canonicalised and de-duplicated (first occurrence wins)."""
    path = str(spec)
    source = Path(path).name
    result = PairsRead([])
    seen: set[str] = set()
    for row in read_rows(spec):
        try:
            pair = pair_from_row(row, path, source)
        except InputError as exc:
            if not skip_bad:
                raise
            result.skipped.append(exc.render())
            continue
        if pair.id in seen:
            result.duplicates += 1
            continue
        seen.add(pair.id)
        result.pairs.append(pair)
        if limit is not None and len(result.pairs) >= limit:
            break
    if not result.pairs:
        raise InputError(path, "no pairs to label", hint="the input is empty or every row was skipped")
    return result
