"""Pairs from every supported input: JSONL, CSV, Parquet, a datasets directory, a DuckDB table."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefgen.errors import InputError
from prefgen.pipelines.humans.votes import default_source
from prefgen.pipelines.labelling.inputs import read_pairs, split_duckdb_spec

ROWS = [
    {"id": "x1", "prompt": "q1", "response_a": "alpha", "response_b": "beta", "topic": "greek"},
    {"id": "x2", "prompt": "q2", "response_a": "zeta", "response_b": "eta", "topic": "greek"},
]


def ids_and_texts(read):
    return sorted((p.source_id, p.response_a, p.response_b, p.metadata.get("topic")) for p in read.pairs)


EXPECTED = [("x1", "alpha", "beta", "greek"), ("x2", "eta", "zeta", "greek")]  # canonical order: a sorts first


def test_jsonl_csv_and_parquet_give_the_same_pairs(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    csv = tmp_path / "p.csv"
    csv.write_text("id,prompt,response_a,response_b,topic\n" + "".join(
        f"{r['id']},{r['prompt']},{r['response_a']},{r['response_b']},{r['topic']}\n" for r in ROWS))
    parquet = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), parquet)
    for path in (jsonl, csv, parquet):
        assert ids_and_texts(read_pairs(path)) == EXPECTED, path.suffix


def test_a_saved_dataset_directory_is_read(tmp_path):
    from datasets import Dataset

    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    assert ids_and_texts(read_pairs(tmp_path / "ds")) == EXPECTED


def test_a_duckdb_table_is_read(tmp_path):
    db = tmp_path / "src.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE candidates (id VARCHAR, prompt VARCHAR, response_a VARCHAR, response_b VARCHAR, "
                "topic VARCHAR)")
    con.executemany("INSERT INTO candidates VALUES (?, ?, ?, ?, ?)", [list(r.values()) for r in ROWS])
    con.close()
    assert ids_and_texts(read_pairs(f"{db}:candidates")) == EXPECTED
    with pytest.raises(InputError, match="no table"):
        read_pairs(f"{db}:missing")


def test_the_same_pair_twice_is_labelled_once(tmp_path):
    path = tmp_path / "p.jsonl"
    swapped = {**ROWS[0], "id": "x1-again", "response_a": "beta", "response_b": "alpha"}
    path.write_text("\n".join(json.dumps(r) for r in [*ROWS, swapped]) + "\n")
    read = read_pairs(path)
    assert len(read.pairs) == 2 and read.duplicates == 1


def test_limit_stops_reading_early(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n{broken\n")
    assert len(read_pairs(path, limit=1).pairs) == 1


def test_only_a_duckdb_file_with_a_table_is_a_table_spec():
    assert split_duckdb_spec("runs/store.duckdb:pairs") == (Path("runs/store.duckdb"), "pairs")
    assert split_duckdb_spec("old.db:t") == (Path("old.db"), "t")
    assert split_duckdb_spec("store.duckdb") is None and split_duckdb_spec("store.duckdb:") is None
    assert split_duckdb_spec("C:/data/pairs.jsonl") is None


def test_human_import_from_a_duckdb_table_is_named_after_the_table():
    assert default_source("labels.duckdb:panda_votes") == "panda_votes"
    assert default_source("data/panda.jsonl") == "panda"


def test_a_bad_row_says_how_to_skip_such_rows(tmp_path):
    from prefgen.errors import InputError
    from prefgen.pipelines.labelling.inputs import PairsRead, iter_pairs

    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "q", "response_a": "x", "response_b": ""}\n', encoding="utf-8")
    with pytest.raises(InputError, match="empty response") as caught:
        list(iter_pairs(path, PairsRead([])))
    assert "--skip-bad" in str(caught.value) and caught.value.line == 1
