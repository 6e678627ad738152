"""Labelling at scale on one machine: chunked streaming changes nothing stored, and a fleet of servers shares
the calls."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.pipelines.labelling.inputs import PairsRead, SeenIds, iter_pairs
from prefgen.pipelines.labelling import LabelConfig, run_label
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


# -- import-human and mix in batches ----------------------------------------------------------------------


def annotated_rows(n: int) -> list[dict]:
    """Pairs with three annotators each; every third row repeats an earlier pair (with the responses swapped
    on every other repeat), and every ninth repeat disagrees with the first occurrence."""
    rows = []
    for i in range(n):
        base = i - 2 if i % 3 == 2 else i
        a, b = f"answer {base} plainly", f"answer {base} vaguely"
        votes = ["a", "a", "b"] if base % 2 else ["b", "b", "tie"]
        if base != i and i % 9 == 8:
            votes = ["b", "b", "a"] if base % 2 else ["a", "a", "b"]
        if base != i and i % 2:
            a, b, votes = b, a, [{"a": "b", "b": "a"}.get(v, v) for v in votes]
        rows.append({"prompt": f"question {base}?", "response_a": a, "response_b": b,
                     **{f"annotator_{k}": v for k, v in enumerate(votes)}})
    return rows


def human_store_state(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("""SELECT h.pair_id, h.annotator, h.winner, h.confidence, h.source_line, h.split,
                                     p.response_a, p.response_b
                              FROM human_labels h JOIN pairs p ON p.id = h.pair_id ORDER BY ALL""").fetchall()
    finally:
        con.close()


def test_import_human_in_small_batches_reports_and_stores_what_one_batch_does(tmp_path, monkeypatch):
    import json

    from prefgen.pipelines.humans import imports as human
    from prefgen.storage.db import Store

    path = tmp_path / "annotated.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in annotated_rows(40)), encoding="utf-8")
    reports = []
    for db, batch in (("one.duckdb", 10_000), ("small.duckdb", 4)):
        monkeypatch.setattr(human, "IMPORT_BATCH", batch)
        with Store(tmp_path / db) as store:
            reports.append(vars(human.import_human(store, path)))
    assert reports[0] == reports[1]
    assert (reports[0]["duplicates"], reports[0]["conflicting"]) == (13, 4)
    assert human_store_state(tmp_path / "one.duckdb") == human_store_state(tmp_path / "small.duckdb")


def test_a_bad_row_in_a_later_batch_keeps_nothing_of_the_import(tmp_path, monkeypatch):
    import json

    import pytest

    from prefgen.errors import InputError
    from prefgen.pipelines.humans import imports as human
    from prefgen.storage.db import Store

    good = [{"prompt": f"q{i}", "response_a": "x", "response_b": "y", "winner": "a"} for i in range(7)]
    path = tmp_path / "pw.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in good), encoding="utf-8")
    monkeypatch.setattr(human, "IMPORT_BATCH", 2)
    with Store(tmp_path / "s.duckdb") as store:
        human.import_human(store, path)
    before = human_store_state(tmp_path / "s.duckdb")
    path.write_text("".join(json.dumps(row) + "\n" for row in [*good, {**good[0], "prompt": "q9", "winner": "?"}]),
                    encoding="utf-8")
    with Store(tmp_path / "s.duckdb") as store, pytest.raises(InputError) as failure:
        human.import_human(store, path)
    assert failure.value.line == 8
    assert human_store_state(tmp_path / "s.duckdb") == before


def test_a_label_file_read_in_batches_names_a_repeated_id_and_the_labels_without_a_pair(tmp_path, monkeypatch):
    import json

    import pytest

    from prefgen.errors import InputError
    from prefgen.pipelines.humans import imports as human
    from prefgen.storage.db import Store

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"q{i}", "response_a": "x", "response_b": "y"})
                             + "\n" for i in range(6)), encoding="utf-8")
    labels = tmp_path / "labels.jsonl"
    rows = [{"id": f"p{i}", "winner": "ab"[i % 2]} for i in (5, 0, 1, 2, 9, 3)]
    labels.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    monkeypatch.setattr(human, "IMPORT_BATCH", 2)
    with Store(tmp_path / "s.duckdb") as store:
        report = human.import_human(store, pairs, labels=labels, fmt="pairwise", skip_bad=True)
        assert (report.pairs, report.unlabelled_pairs) == (5, 1)
        assert report.skipped == [] and report.unmatched_labels == 1
        labels.write_text("".join(json.dumps(row) + "\n" for row in [*rows, {"id": "p0", "winner": "b"}]),
                          encoding="utf-8")
        with pytest.raises(InputError, match=r"'p0' is labelled twice \(first at line 2\)") as failure:
            human.import_human(store, pairs, labels=labels, fmt="pairwise")
        assert failure.value.line == 7


def test_a_mix_written_in_small_batches_has_the_rows_and_hash_of_one_batch(tmp_path, monkeypatch):
    from prefgen.hashing import ListHash, content_hash
    from prefgen.pipelines.mixing import mix
    from prefgen.storage.db import Store
    from prefgen.storage.mixes import mix_manifest, mix_rows
    from tests.test_mix import build_world

    items = [["s1-a", "human", "a", None, 0.5, 0.25], ["s1-b", "ai", "b", 0.3, None, 1.0]]
    streamed = ListHash("mix")
    streamed.update(items[:1])
    streamed.update(items[1:])
    assert streamed.hexdigest() == content_hash(["mix", items])

    with Store(tmp_path / "s.duckdb") as store:
        build_world(store, tmp_path)
        built = {}
        for batch in (10_000, 7):
            monkeypatch.setattr(mix, "SELECTED_BATCH", batch)
            report = mix.build_mix(store, mix.MixConfig(name=f"m{batch}", human_ratio=0.3, weight_by_confidence=True))
            manifest = mix_manifest(store, f"m{batch}")
            built[batch] = (report.content_hash, mix_rows(store, f"m{batch}"), manifest["counts"],
                            manifest["content_hash"])
        assert built[10_000] == built[7] and len(built[7][1]) > 7
