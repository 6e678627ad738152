"""Exports in TRL's preference format: `prompt`, `chosen`, `rejected`, optional `margin`, plus `p_chosen` (the
probability that `chosen` is better: the soft label), `source` and `pair_id` (and `category` when the pairs
carry one, `weight` when the mix was built with sample weights).

Rows are conversational (lists of {role, content}) when any prompt of the set is a chat, so one dataset has
one schema: a text prompt then becomes a single user message and each response one assistant message.
Otherwise prompt, chosen and rejected are plain text. The train stage reads the same dicts straight from
`mix_rows_for_training` and `heldout_rows`, without a file in between.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from prefgen.errors import PrefgenError
from prefgen.storage.db import Store
from prefgen.storage.mixes import mix_manifest

EXPORT_FORMATS = ("hf", "parquet", "jsonl")
CATEGORY_KEYS = ("category", "dataset")  # LLMEval2 names its source datasets `dataset`

_PAIR_COLUMNS = "p.prompt, p.is_chat, p.response_a, p.response_b, p.metadata"


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


def _training_rows(records: Sequence[dict[str, Any]], extras: Sequence[str]) -> list[dict[str, Any]]:
    """Records: prompt, is_chat, response_a, response_b, metadata, chosen (a/b), source, pair_id, extras."""
    conversational = any(r["is_chat"] for r in records)
    categories = [_category(r["metadata"]) for r in records]
    with_category = any(c is not None for c in categories)
    rows = []
    for record, category in zip(records, categories):
        prompt: Any = json.loads(record["prompt"]) if record["is_chat"] else record["prompt"]
        row = training_row(prompt, record["response_a"], record["response_b"], record["chosen"],
                           conversational=conversational, **{key: record[key] for key in extras},
                           source=record["source"], pair_id=record["pair_id"])
        if with_category:
            row["category"] = category
        rows.append(row)
    return rows


def mix_rows_for_training(store: Store, mix_name: str) -> list[dict[str, Any]]:
    """The rows of a stored mix, in mix order, as TRL preference dicts (`margin` when the mix has margins)."""
    filters = mix_manifest(store, mix_name)["filters"]
    weighted = filters.get("weight_by_confidence") or filters.get("ai_weight") is not None
    extras = ["p_chosen", *(["margin"] if filters.get("margin_by_confidence") else []),
              *(["weight"] if weighted else [])]
    records = store.dicts(
        f"""SELECT m.pair_id, m.source, m.chosen, m.margin, m.weight,
                   coalesce(m.p_chosen, 1.0) AS p_chosen, {_PAIR_COLUMNS}
            FROM mix_rows m JOIN pairs p ON p.id = m.pair_id
            WHERE m.mix_name = ? ORDER BY m.position""",
        [mix_name],
    )
    return _training_rows(records, extras)


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
    store.con.register("_picked", batch)
    try:
        rows = store.dicts(f"""SELECT m.pair_id, m.source, m.chosen, m.p_chosen, m.weight, {_PAIR_COLUMNS}
                               FROM _picked m JOIN pairs p ON p.id = m.pair_id ORDER BY m.position""")
    finally:
        store.con.unregister("_picked")
    return _training_rows(rows, ["p_chosen", "weight"])


def heldout_rows(store: Store, *, include_ties: bool = False, import_source: bool = False) -> list[dict[str, Any]]:
    """Held-out human pairs as TRL preference dicts, by pair id. Ties have no chosen side: they are left out,
    or (for evaluation) included with `tie: True`. `source` is 'human', or with `import_source` the import(s)
    the label came from (an evaluation reports agreement per import)."""
    winners = "('a', 'b', 'tie')" if include_ties else "('a', 'b')"
    source = "h.sources" if import_source else "'human'"
    records = store.dicts(
        f"""SELECT h.pair_id, {source} AS source, h.winner AS chosen, {_PAIR_COLUMNS}
            FROM human_pair_labels h JOIN pairs p ON p.id = h.pair_id
            WHERE h.split = 'heldout' AND h.winner IN {winners} ORDER BY h.pair_id""",
        [],
    )
    if not records:
        raise PrefgenError(f"{store.path}: no held-out human labels (run `prefgen import-human` and "
                           "`prefgen split --heldout SHARE` first)")
    return _training_rows(records, [])


def write_rows(rows: Sequence[dict[str, Any]], fmt: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        out.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(list(rows)), out)
    elif fmt == "hf":
        from datasets import Dataset

        Dataset.from_list(list(rows)).save_to_disk(str(out))
    else:
        raise ValueError(f"unknown export format {fmt!r}")


def export_preferences(store: Store, out: Path, *, fmt: str, mix: str | None = None,
                       split: str | None = None) -> ExportReport:
    """Write a mix (`mix`) or the held-out human set (`split="heldout"`) in TRL's preference format."""
    if fmt not in EXPORT_FORMATS:
        raise PrefgenError(f"unknown export format {fmt!r} (use one of {', '.join(EXPORT_FORMATS)})")
    if (mix is None) == (split is None):
        raise PrefgenError("export needs exactly one of --mix NAME or --split heldout")
    if split is not None and split != "heldout":
        raise PrefgenError(f"--split {split!r}: only the held-out set is exported this way (mixes hold train rows)")
    rows = mix_rows_for_training(store, mix) if mix is not None else heldout_rows(store)
    write_rows(rows, fmt, out)
    return ExportReport(str(out), fmt, len(rows), isinstance(rows[0]["prompt"], list) if rows else False)
