"""The store keeps each pair's responses in a canonical order, and says so: results joined back to the input file
by its own id are in the input's terms (`input_preferences`, `kept_pairs.input_chosen`, the exports' `source_id`),
and `show` names the responses as the input did."""

from __future__ import annotations

import json

import duckdb
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.pipelines.labelling import run_label
from prefgen.pipelines.mixing.mix import MixConfig, build_mix
from prefgen.storage.db import Store
from prefgen.storage.export import export_preferences
from tests.loopback_server import Behaviour
from tests.test_label_pipeline import config, files, quality, truth, write_pairs  # noqa: F401 (files: fixture)


def input_truth(pairs_path) -> dict[str, str]:
    """The better response of each input row, in the input's terms: 'a' is the row's response_a."""
    rows = [json.loads(line) for line in pairs_path.read_text().splitlines()]
    return {r["id"]: "a" if quality(r["response_a"]) > quality(r["response_b"]) else "b" for r in rows}


def labelled(files, loopback, n: int = 40):
    write_pairs(files[1], n)
    loopback.behaviour = Behaviour(truth=truth)
    run_label(config(files, loopback))
    return input_truth(files[1])


def test_results_joined_back_to_the_input_by_its_id_agree_with_the_truth(files, loopback):
    expected = labelled(files, loopback)
    con = duckdb.connect(str(files[2]), read_only=True)
    swapped = dict(con.execute("SELECT source_id, input_swapped FROM pairs").fetchall())
    canonical = dict(con.execute(
        "SELECT p.source_id, pp.chosen FROM pair_preferences pp JOIN pairs p ON p.id = pp.pair_id "
        "WHERE pp.kept").fetchall())
    in_input_terms = dict(con.execute(
        "SELECT source_id, input_chosen FROM input_preferences WHERE kept").fetchall())
    kept = dict(con.execute("SELECT source_id, input_chosen FROM kept_pairs").fetchall())
    con.close()
    assert any(swapped.values()) and not all(swapped.values())  # the canonical order differs for some rows
    assert any(canonical[i] != expected[i] for i in canonical)  # the trap: canonical a/b joined to the input
    assert in_input_terms and all(in_input_terms[i] == expected[i] for i in in_input_terms)
    assert kept == in_input_terms


def test_an_export_carries_the_inputs_id_and_its_chosen_text_is_the_better_one(files, loopback, tmp_path):
    expected = labelled(files, loopback)
    rows = {json.loads(line)["id"]: json.loads(line) for line in files[1].read_text().splitlines()}
    with Store(files[2]) as store:
        build_mix(store, MixConfig(name="m", human_ratio=None))
        export_preferences(store, tmp_path / "m.jsonl", fmt="jsonl", mix="m")
    exported = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert exported and all(row["source_id"] in rows for row in exported)
    for row in exported:
        source = rows[row["source_id"]]
        better = source["response_a"] if expected[row["source_id"]] == "a" else source["response_b"]
        assert row["chosen"] == better


def test_show_names_the_response_shown_first_as_the_input_named_it(files, loopback):
    labelled(files, loopback, n=10)
    con = duckdb.connect(str(files[2]), read_only=True)
    request_hash, source_id = con.execute(
        "SELECT j.request_hash, p.source_id FROM judgements j JOIN pairs p ON p.id = j.pair_id "
        "WHERE p.input_swapped AND j.ordering = 'ab' LIMIT 1").fetchone()
    con.close()
    result = CliRunner().invoke(cli, ["show", request_hash, "--db", str(files[2])])
    assert result.exit_code == 0, result.output
    assert f"(input id {source_id})" in result.output
    assert "the input's response_b (stored as response_a" in result.output
