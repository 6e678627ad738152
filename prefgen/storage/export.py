"""Exports in TRL's preference format: `prompt`, `chosen`, `rejected`, optional `margin`, plus `p_chosen` (the
probability that `chosen` is better: the soft label), `source`, `pair_id` and `source_id` (the input's own id of
the pair, when it had one: what to join the export back to your file on), and `category` when the pairs carry
one, `weight` when the mix was built with sample weights.

Rows are conversational (lists of {role, content}) when any prompt of the set is a chat, so one dataset has
one schema: a text prompt then becomes a single user message and each response one assistant message.
Otherwise prompt, chosen and rejected are plain text. The train stage reads the same dicts straight from
`mix_rows_for_training` and `heldout_rows`, without a file in between.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from prefgen.errors import PrefgenError
from prefgen.storage.db import Store, registered
from prefgen.storage.mixes import mix_manifest

EXPORT_FORMATS = ("hf", "parquet", "jsonl")
CATEGORY_KEYS = ("category", "dataset")  # LLMEval2 names its source datasets `dataset`

_PAIR_COLUMNS = "p.prompt, p.is_chat, p.response_a, p.response_b, p.metadata, p.source_id"


@dataclass
class ExportReport:
    path: str
    format: str
    rows: int
    conversational: bool


def _category(metadata: str | None) -> str | None:
    if not metadata:
        return None
    data = json.loads(metadata)
    return next((str(data[k]) for k in CATEGORY_KEYS if data.get(k) is not None), None)


def training_row(prompt: Any, response_a: Any, response_b: Any, chosen: str, *, conversational: bool = False,
                 **extras: Any) -> dict[str, Any]:
    """One TRL preference row: the winner of (a, b) as `chosen` (a tie keeps a first and is flagged, for
    evaluation only), conversational messages when asked, then the extra columns."""
    winner, loser = (response_b, response_a) if chosen == "b" else (response_a, response_b)
    if conversational:
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        winner = [{"role": "assistant", "content": winner}]
        loser = [{"role": "assistant", "content": loser}]
    row = {"prompt": prompt, "chosen": winner, "rejected": loser}
    if chosen == "tie":  # only evaluation asks for ties: they are scored, not trained on
        row["tie"] = True
    return {**row, **extras}


def _flags(records: Sequence[dict[str, Any]]) -> tuple[bool, bool]:
    """(any chat prompt, any category): what fixes the schema of the whole set."""
    return any(r["is_chat"] for r in records), any(_category(r["metadata"]) is not None for r in records)


def _training_rows(records: Sequence[dict[str, Any]], extras: Sequence[str],
                   flags: tuple[bool, bool] | None = None) -> list[dict[str, Any]]:
    """Records: prompt, is_chat, response_a, response_b, metadata, chosen (a/b), source, pair_id, extras.
    `flags` = `_flags` of the whole set, when `records` are one batch of it."""
    conversational, with_category = flags or _flags(records)
    rows = []
    for record in records:
        prompt: Any = json.loads(record["prompt"]) if record["is_chat"] else record["prompt"]
        row = training_row(prompt, record["response_a"], record["response_b"], record["chosen"],
                           conversational=conversational, **{key: record[key] for key in extras},
                           source=record["source"], pair_id=record["pair_id"], source_id=record["source_id"])
        if with_category:
            row["category"] = _category(record["metadata"])
        rows.append(row)
    return rows


_BATCH = 4096  # records fetched, converted and written at a time by an export


def _batches(store: Store, sql: str, params: Sequence[Any]) -> Iterator[list[dict[str, Any]]]:
    cursor = store.con.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    while rows := cursor.fetchmany(_BATCH):
        yield [dict(zip(names, row)) for row in rows]


def _mix_query(store: Store, mix_name: str) -> tuple[str, list[Any], list[str]]:
    filters = mix_manifest(store, mix_name)["filters"]
    weighted = filters.get("weight_by_confidence") or filters.get("ai_weight") is not None
    extras = ["p_chosen", *(["margin"] if filters.get("margin_by_confidence") else []),
              *(["weight"] if weighted else [])]
    sql = f"""SELECT m.pair_id, m.source, m.chosen, m.margin, m.weight,
                     coalesce(m.p_chosen, 1.0) AS p_chosen, {_PAIR_COLUMNS}
              FROM mix_rows m JOIN pairs p ON p.id = m.pair_id
              WHERE m.mix_name = ? ORDER BY m.position"""
    return sql, [mix_name], extras


def _heldout_query(include_ties: bool, import_source: bool = False) -> tuple[str, list[Any], list[str]]:
    winners = "('a', 'b', 'tie')" if include_ties else "('a', 'b')"
    source = "h.sources" if import_source else "'human'"
    sql = f"""SELECT h.pair_id, {source} AS source, h.winner AS chosen, {_PAIR_COLUMNS}
              FROM human_pair_labels h JOIN pairs p ON p.id = h.pair_id
              WHERE h.split = 'heldout' AND h.winner IN {winners} ORDER BY h.pair_id"""
    return sql, [], []


def mix_rows_for_training(store: Store, mix_name: str) -> list[dict[str, Any]]:
    """The rows of a stored mix, in mix order, as TRL preference dicts (`margin` when the mix has margins)."""
    sql, params, extras = _mix_query(store, mix_name)
    return _training_rows(store.dicts(sql, params), extras)


def training_rows_for(store: Store, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """TRL rows of pairs chosen in Python (a mix search's candidates): records hold pair_id, source, chosen,
    p_chosen and weight; rows come back in the records' order."""
    if not records:
        return []
    import pyarrow as pa

    batch = pa.Table.from_pylist([{**r, "position": i} for i, r in enumerate(records)],
                                 schema=pa.schema([("pair_id", pa.string()), ("source", pa.string()),
                                                   ("chosen", pa.string()), ("p_chosen", pa.float64()),
                                                   ("weight", pa.float64()), ("position", pa.int64())]))
    with registered(store.con, "_picked", batch):
        rows = store.dicts(f"""SELECT m.pair_id, m.source, m.chosen, m.p_chosen, m.weight, {_PAIR_COLUMNS}
                               FROM _picked m JOIN pairs p ON p.id = m.pair_id ORDER BY m.position""")
    return _training_rows(rows, ["p_chosen", "weight"])


def _no_heldout(store: Store) -> PrefgenError:
    return PrefgenError(f"{store.path}: no held-out human labels (run `prefgen import-human` and "
                        "`prefgen split --heldout SHARE` first)")


def heldout_rows(store: Store, *, include_ties: bool = False, import_source: bool = False) -> list[dict[str, Any]]:
    """Held-out human pairs as TRL preference dicts, by pair id. Ties have no chosen side: they are left out,
    or (for evaluation) included with `tie: True`. `source` is 'human', or with `import_source` the import(s)
    the label came from (an evaluation reports agreement per import)."""
    sql, params, extras = _heldout_query(include_ties, import_source)
    records = store.dicts(sql, params)
    if not records:
        raise _no_heldout(store)
    return _training_rows(records, extras)


def _schema(flags: tuple[bool, bool], extras: Sequence[str]):
    """The Arrow schema of an exported set: fixed up front, since a batch may hold only None in a column."""
    import pyarrow as pa

    conversational, with_category = flags
    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    text = message if conversational else pa.string()
    fields = [("prompt", text), ("chosen", text), ("rejected", text),
              *((name, pa.float64()) for name in extras), ("source", pa.string()), ("pair_id", pa.string()),
              ("source_id", pa.string()), *([("category", pa.string())] if with_category else [])]
    return pa.schema(fields)


def write_batches(batches: Iterable[list[dict[str, Any]]], fmt: str, out: Path, schema) -> int:
    """Write rows a batch at a time (memory holds one batch, whatever the size of the set); returns the count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    if fmt == "jsonl":
        with out.open("wb") as f:
            for rows in batches:
                f.write(b"".join(orjson.dumps(r) + b"\n" for r in rows))
                count += len(rows)
        return count
    if fmt == "hf":
        # Through a Parquet file that `datasets` memory-maps, rather than a list of every row.
        import datasets
        from datasets import Dataset

        datasets.disable_progress_bars()  # its bars would spill over the command's own output

        with tempfile.TemporaryDirectory() as tmp:
            count = write_batches(batches, "parquet", Path(tmp) / "rows.parquet", schema)
            Dataset.from_parquet(str(Path(tmp) / "rows.parquet"), cache_dir=tmp).save_to_disk(str(out))
        return count
    with pq.ParquetWriter(out, schema) as writer:
        for rows in batches:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            count += len(rows)
    return count


def export_preferences(store: Store, out: Path, *, fmt: str, mix: str | None = None,
                       split: str | None = None) -> ExportReport:
    """Write a mix (`mix`) or the held-out human set (`split="heldout"`) in TRL's preference format, streamed:
    one pass over the set fixes its schema (chat or text, with or without categories), a second writes it."""
    if fmt not in EXPORT_FORMATS:
        raise PrefgenError(f"unknown export format {fmt!r} (use one of {', '.join(EXPORT_FORMATS)})")
    if (mix is None) == (split is None):
        raise PrefgenError("export needs exactly one of --mix NAME or --split heldout")
    if split is not None and split != "heldout":
        raise PrefgenError(f"--split {split!r}: only the held-out set is exported this way (mixes hold train rows)")
    sql, params, extras = _mix_query(store, mix) if mix is not None else _heldout_query(False)
    chat = with_category = False
    records = 0
    for batch in _batches(store, sql, params):
        batch_chat, batch_category = _flags(batch)
        chat, with_category, records = chat or batch_chat, with_category or batch_category, records + len(batch)
    if split is not None and not records:
        raise _no_heldout(store)
    flags = (chat, with_category)
    rows = (_training_rows(batch, extras, flags) for batch in _batches(store, sql, params))
    count = write_batches(rows, fmt, out, _schema(flags, extras))
    return ExportReport(str(out), fmt, count, chat and count > 0)
