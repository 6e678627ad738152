"""Labelling at scale on one machine: chunked streaming changes nothing stored, and a fleet of servers shares
the calls."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.pipelines.inputs import PairsRead, SeenIds, iter_pairs
from prefgen.pipelines.label import LabelConfig, run_label
from tests.loopback_server import Behaviour, LoopbackServer
from tests.test_label_pipeline import CONSTITUTION, truth, write_pairs


def label_config(tmp_path: Path, db: str, base: str, n: int = 30, **overrides) -> LabelConfig:
    constitution = tmp_path / "c.yaml"
    constitution.write_text(CONSTITUTION, encoding="utf-8")
    pairs = tmp_path / "pairs.jsonl"
    if not pairs.exists():
        write_pairs(pairs, n)
    settings = dict(constitution=constitution, pairs=str(pairs), db=tmp_path / db, judge="openai:gpt-4o-mini",
                    api_base=base, api_key="test-key", concurrency=8, progress=False, max_attempts=3)
    return LabelConfig(**(settings | overrides))


def stored(db: Path) -> tuple[dict, list]:
    """(judgements by request hash, preferences): what two ways of labelling must agree on."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        judgements = {h: rest for h, *rest in con.execute(
            "SELECT request_hash, pair_id, principle_id, ordering, status, verdict, p_first FROM judgements"
        ).fetchall()}
        preferences = con.execute(
            "SELECT pair_id, principle_id, p_a, consistent, kept, drop_reason FROM preferences "
            "UNION ALL SELECT pair_id, chosen, p_a, NULL, kept, drop_reason FROM pair_preferences ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()
    return judgements, preferences


def test_small_chunks_store_the_same_judgements_and_preferences_as_one_chunk(tmp_path, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    whole = run_label(label_config(tmp_path, "whole.duckdb", loopback.openai_base))
    chunked = run_label(label_config(tmp_path, "chunked.duckdb", loopback.openai_base, chunk_pairs=7))
    assert (chunked.pairs, chunked.calls_planned, chunked.calls_sent) == (whole.pairs, whole.calls_planned, 120)
    assert stored(tmp_path / "chunked.duckdb") == stored(tmp_path / "whole.duckdb")
    rerun = run_label(label_config(tmp_path, "chunked.duckdb", loopback.openai_base, chunk_pairs=7))
    assert (rerun.calls_sent, rerun.calls_cached) == (0, 120)


def test_duplicates_are_found_across_chunks_and_merges(tmp_path):
    seen = SeenIds()
    ids = [f"s1-{i:032x}" for i in range(20_000)]  # past one merge of the recent ids into the sorted array
    assert all(seen.add(i) for i in ids)
    assert not any(seen.add(i) for i in ids[::997])
    path = tmp_path / "dup.jsonl"
    write_pairs(path, 10)
    path.write_text(path.read_text() * 3)
    tally = PairsRead([])
    assert len(list(iter_pairs(path, tally))) == 10
    assert (tally.count, tally.duplicates) == (10, 20)


def test_a_fleet_of_api_bases_shares_the_calls_in_turn_and_stores_what_one_server_would(tmp_path, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    with LoopbackServer(behaviour=Behaviour(truth=truth)) as other:
        fleet = run_label(label_config(tmp_path, "fleet.duckdb", f"{loopback.openai_base},{other.openai_base}"))
        assert fleet.calls_sent == 120
        assert (loopback.request_count, other.request_count) == (60, 60)
        config = label_config(tmp_path, "cli.duckdb", loopback.openai_base)
        result = CliRunner().invoke(cli, [
            "label", "-c", str(config.constitution), "-p", config.pairs, "--db", str(config.db), "--judge",
            config.judge, "--api-base", loopback.openai_base, "--api-base", other.openai_base,
            "--api-key", "test-key", "--no-progress"])
        assert result.exit_code == 0, result.output
        assert (loopback.request_count, other.request_count) == (120, 120)
    loopback.reset(Behaviour(truth=truth))
    run_label(label_config(tmp_path, "one.duckdb", loopback.openai_base))
    assert stored(tmp_path / "fleet.duckdb") == stored(tmp_path / "one.duckdb")


def test_ingest_merges_shards_by_request_hash_and_derives_the_same_preferences_twice_over(tmp_path, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    run_label(label_config(tmp_path, "out.duckdb", loopback.openai_base))
    db = tmp_path / "out.duckdb"
    expected = stored(db)
    con = duckdb.connect(str(db))
    judgements = con.sql("SELECT * EXCLUDE (created_at) FROM judgements").to_arrow_table()
    con.execute("DELETE FROM judgements; DELETE FROM preferences; DELETE FROM pair_preferences")
    con.close()
    shards = tmp_path / "shards"
    shards.mkdir()
    pq.write_table(judgements.slice(0, 50), shards / "one.parquet")
    pq.write_table(judgements.slice(40), shards / "two.parquet")  # ten rows in both shards
    first = CliRunner().invoke(cli, ["ingest", str(shards), "--db", str(db)])
    assert first.exit_code == 0, first.output
    assert "2 shard(s), 130 judgement row(s): 120 new" in first.output
    assert stored(db) == expected
    again = CliRunner().invoke(cli, ["ingest", str(shards / "one.parquet"), "--db", str(db)])
    assert "50 judgement row(s): 0 new" in again.output
    assert stored(db) == expected
