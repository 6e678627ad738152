"""The human/AI mixer (ratio, exclusions, determinism, no leakage) and the TRL exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.errors import PrefgenError
from prefgen.pipelines.humans.imports import import_human
from prefgen.pipelines.mixing.mix import MixConfig, build_mix, ratio_counts
from prefgen.pipelines.humans.split import split_human
from prefgen.records import make_pair
from prefgen.storage.db import Store
from prefgen.storage.export import export_preferences, heldout_rows, mix_rows_for_training
from prefgen.storage.labels import save_pairs
from prefgen.storage.mixes import mix_manifest, mix_rows
from tests.test_agreement import pair_ids, save_ai_verdicts, write_pairwise

STRONG_A = {"harmless": (0.9, 0.1)}  # confidence 0.8
WEAK_A = {"harmless": (0.8, 0.2)}  # confidence 0.6
STRONG_B = {"harmless": (0.1, 0.9)}


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "m.duckdb") as s:
        yield s


def build_world(store: Store, tmp_path: Path, *, heldout: float = 0.5, seed: int = 0) -> None:
    """40 human-labelled prompts (one pair each), split; one label job that judged the human pairs, 40 more
    pairs on the human prompts, and 120 pairs on 60 prompts no human labelled."""
    import_human(store, write_pairwise(tmp_path / "h.jsonl", [(f"h{i}", "ab"[i % 2]) for i in range(40)]))
    split_human(store, heldout=heldout, seed=seed)
    human = pair_ids(store)
    extra = [make_pair(f"h{i}", f"gamma {i}", f"delta {i}", source="pool")[0] for i in range(40)]
    fresh = [make_pair(f"ai{i // 2}", f"one {i}", f"two {i}", source="pool")[0] for i in range(120)]
    save_pairs(store, extra + fresh)
    verdicts = {pid: STRONG_B for pid in human.values()}
    verdicts |= {p.id: STRONG_A for p in extra}
    verdicts |= {p.id: (STRONG_A, WEAK_A, STRONG_B)[i % 3] for i, p in enumerate(fresh)}
    save_ai_verdicts(store, "job-1", verdicts)


def count(store: Store, sql: str) -> int:
    return store.query(sql)[1][0][0]


def heldout_leaks(store: Store, name: str) -> int:
    """Mix rows whose prompt has a held-out human label."""
    return count(store, f"""SELECT count(*) FROM mix_rows m JOIN pairs p ON p.id = m.pair_id
                            WHERE m.mix_name = '{name}' AND p.prompt_id IN
                              (SELECT prompt_id FROM human_pair_labels WHERE split = 'heldout')""")


# -- the ratio --------------------------------------------------------------------------------------------


def test_ratio_counts_are_exact_when_the_data_allows():
    assert ratio_counts(100, 300, 0.25) == (100, 300)
    assert ratio_counts(100, 1000, 0.25) == (100, 300)
    assert ratio_counts(500, 300, 0.25) == (100, 300)
    assert ratio_counts(100, 1000, 0.25, size=200) == (50, 150)


def test_ratio_counts_use_the_scarce_side_whole():
    human, ai = ratio_counts(100, 200, 0.25)
    assert (human, ai) == (67, 200)  # AI runs out first: 200 * 0.25 / 0.75 = 66.7 human rows
    assert ratio_counts(7, 5, 0.3) == (2, 5)


def test_ratio_counts_at_the_ends_and_with_an_empty_side():
    assert ratio_counts(10, 20, 0.0) == (0, 20)
    assert ratio_counts(10, 20, 1.0) == (10, 0)
    assert ratio_counts(0, 20, 0.5) == (0, 20)  # an empty side: the other is used whole, and reported
    assert ratio_counts(7, 0, 0.25, size=5) == (5, 0)


# -- building a mix ---------------------------------------------------------------------------------------


def test_mix_honours_the_ratio_and_reports_what_was_left_out(store, tmp_path):
    build_world(store, tmp_path)
    report = build_mix(store, MixConfig(name="m", human_ratio=0.25))
    human, ai = report.counts["human"], report.counts["ai"]
    train = count(store, "SELECT count(*) FROM human_pair_labels WHERE split = 'train'")
    assert human["available"] == train and human["used"] == report.human
    # AI: the 40 human pairs (held out or human-labelled), 40 extra (held-out prompts dropped), 120 fresh.
    assert ai["available"] == 200
    assert ai["left_out"]["heldout_prompt"] == 2 * (40 - train)
    assert ai["left_out"]["human_labelled"] == train
    assert ai["after_cap"] == 120 + train
    assert (report.human, report.ai) == ratio_counts(train, 120 + train, 0.25)
    assert report.realised_ratio == pytest.approx(0.25, abs=1 / report.rows)
    assert report.counts["per_principle"] == {"harmless": report.ai}


def test_mix_never_takes_a_pair_or_prompt_from_the_heldout_side(store, tmp_path):
    build_world(store, tmp_path)
    for heldout in (0.2, 0.5, 0.8):
        for seed in range(2):
            split_human(store, heldout=heldout, seed=seed)
            build_mix(store, MixConfig(name="leak", human_ratio=0.3, seed=seed))
            assert heldout_leaks(store, "leak") == 0
            assert count(store, """SELECT count(*) FROM mix_rows m JOIN human_pair_labels h USING (pair_id)
                                   WHERE m.mix_name = 'leak' AND m.source = 'human' AND h.split <> 'train'""") == 0


def test_same_mix_twice_gives_identical_rows_and_hash(store, tmp_path):
    build_world(store, tmp_path)
    first = build_mix(store, MixConfig(name="one", human_ratio=0.2, seed=9))
    second = build_mix(store, MixConfig(name="two", human_ratio=0.2, seed=9))
    assert mix_rows(store, "one") == mix_rows(store, "two")
    assert first.content_hash == second.content_hash
    rebuilt = build_mix(store, MixConfig(name="one", human_ratio=0.2, seed=9))
    assert rebuilt.content_hash == first.content_hash and len(mix_rows(store, "one")) == first.rows
    other = build_mix(store, MixConfig(name="three", human_ratio=0.2, seed=10))
    assert other.content_hash != first.content_hash


def test_human_label_wins_over_the_ai_label_for_the_same_pair(store, tmp_path):
    import_human(store, write_pairwise(tmp_path / "h.jsonl", [("q", "a")]))
    split_human(store, heldout=0.0)
    (pid,) = pair_ids(store).values()
    fresh = make_pair("other", "x", "y")[0]
    save_pairs(store, [fresh])
    save_ai_verdicts(store, "job-1", {pid: STRONG_B, fresh.id: STRONG_A})
    report = build_mix(store, MixConfig(name="m", human_ratio=0.5))
    rows = {r["pair_id"]: r for r in mix_rows(store, "m")}
    assert (rows[pid]["source"], rows[pid]["chosen"]) == ("human", "a")
    assert report.counts["ai"]["left_out"] == {"human_labelled": 1}


def test_pair_kept_by_two_jobs_enters_once_from_the_more_confident(store, tmp_path):
    pair = make_pair("q", "x", "y")[0]
    save_pairs(store, [pair])
    save_ai_verdicts(store, "job-weak", {pair.id: WEAK_A})
    save_ai_verdicts(store, "job-strong", {pair.id: STRONG_A})
    report = build_mix(store, MixConfig(name="m", human_ratio=0.0))
    (row,) = mix_rows(store, "m")
    assert row["origin"] == "job-strong" and report.counts["ai"]["left_out"] == {"duplicate": 1}


def test_max_per_prompt_caps_pairs_and_prefers_the_confident(store):
    pairs = [make_pair("one prompt", f"r{i}", f"s{i}")[0] for i in range(5)]
    save_pairs(store, pairs)
    save_ai_verdicts(store, "job-1", {p.id: (WEAK_A if i else STRONG_A) for i, p in enumerate(pairs)})
    report = build_mix(store, MixConfig(name="m", human_ratio=0.0, max_per_prompt=2))
    rows = mix_rows(store, "m")
    assert len(rows) == 2 and report.counts["capped_per_prompt"] == 3
    assert pairs[0].id in {r["pair_id"] for r in rows}


def test_min_confidence_leaves_out_less_confident_ai_pairs(store, tmp_path):
    build_world(store, tmp_path)
    report = build_mix(store, MixConfig(name="m", human_ratio=0.0, ai_min_confidence=0.7))
    assert report.counts["ai"]["left_out"]["below_min_confidence"] > 0
    assert count(store, "SELECT min(confidence) FROM mix_rows WHERE mix_name = 'm'") >= 0.7


def test_size_beyond_the_data_is_reported_as_a_shortfall(store, tmp_path):
    build_world(store, tmp_path)
    report = build_mix(store, MixConfig(name="m", human_ratio=0.25, size=10_000))
    assert report.counts["shortfall"]["below_requested_size"] == 10_000 - report.rows
    assert any("shortfall" in line for line in report.lines())


def test_mix_needs_a_split_when_there_are_human_labels(store, tmp_path):
    import_human(store, write_pairwise(tmp_path / "h.jsonl", [("q", "a")]))
    with pytest.raises(PrefgenError, match="prefgen split"):
        build_mix(store, MixConfig(name="m"))


def test_blend_without_ai_pairs_uses_the_human_side_and_says_which_side_is_missing(store, tmp_path):
    import_human(store, write_pairwise(tmp_path / "h.jsonl", [("q", "a")]))
    split_human(store, heldout=0.0)
    report = build_mix(store, MixConfig(name="m", human_ratio=0.25))
    assert (report.rows, report.human, report.ai, report.realised_ratio) == (1, 1, 0, 1.0)
    assert any("no AI pairs passing the filters" in line for line in report.lines())


def test_mix_with_nothing_on_either_side_is_refused(store):
    with pytest.raises(PrefgenError, match="would be empty"):
        build_mix(store, MixConfig(name="m", human_ratio=0.25))


def test_manifest_records_inputs_filters_and_counts(store, tmp_path):
    build_world(store, tmp_path)
    report = build_mix(store, MixConfig(name="m", human_ratio=0.25, max_per_prompt=3, margin_by_confidence=True))
    manifest = mix_manifest(store, "m")
    assert manifest["content_hash"] == report.content_hash and manifest["n_rows"] == report.rows
    assert manifest["inputs"] == {"label_jobs": ["job-1"], "human_sources": ["h"],
                                  "split": {"heldout": 0.5, "seed": 0}}
    assert manifest["filters"]["max_per_prompt"] == 3 and manifest["filters"]["margin_by_confidence"]
    assert manifest["counts"]["human"]["used"] == report.human
    with pytest.raises(PrefgenError, match="no mix named 'nope'"):
        mix_manifest(store, "nope")


# -- rows for training and exports -------------------------------------------------------------------------


def test_training_rows_have_the_trl_shape_with_margin_from_confidence(store, tmp_path):
    build_world(store, tmp_path)
    build_mix(store, MixConfig(name="m", human_ratio=0.25, margin_by_confidence=True))
    rows = mix_rows_for_training(store, "m")
    assert set(rows[0]) == {"prompt", "chosen", "rejected", "margin", "p_chosen", "source", "pair_id", "source_id"}
    by_id = {r["pair_id"]: r for r in rows}
    stored = {r["pair_id"]: r for r in mix_rows(store, "m")}
    for pair_id, row in by_id.items():
        assert row["margin"] == stored[pair_id]["confidence"]
        assert row["source"] == stored[pair_id]["source"]
    human = next(r for r in rows if r["source"] == "human")
    assert human["margin"] == 1.0 and {human["chosen"], human["rejected"]} == {"alpha", "beta"}
    for row in rows:
        if row["source"] == "ai" and row["prompt"].startswith("ai"):
            word, index = row["chosen"].split()
            assert word == ("two" if int(index) % 3 == 2 else "one")  # STRONG_B picks response_b ("two")
        elif row["source"] == "ai":
            assert row["chosen"].startswith("delta")  # extra pairs: STRONG_A on response_a ("delta")


def test_training_rows_without_margin_or_weight_leave_those_keys_out(store, tmp_path):
    build_world(store, tmp_path)
    build_mix(store, MixConfig(name="plain", human_ratio=0.25))
    assert set(mix_rows_for_training(store, "plain")[0]) == {"prompt", "chosen", "rejected", "p_chosen", "source",
                                                             "pair_id", "source_id"}
    build_mix(store, MixConfig(name="weighted", human_ratio=0.25, weight_by_confidence=True))
    assert "weight" in mix_rows_for_training(store, "weighted")[0]


def test_chat_prompts_make_every_row_conversational(store, tmp_path):
    chat = [{"role": "user", "content": "Hi there"}]
    path = tmp_path / "trl.jsonl"
    path.write_text(json.dumps({"prompt": chat, "chosen": [{"role": "assistant", "content": "Hello!"}],
                                "rejected": [{"role": "assistant", "content": "Go away."}]}) + "\n", encoding="utf-8")
    import_human(store, path)
    split_human(store, heldout=0.0)
    text_pair = make_pair("plain text prompt", "good", "bad")[0]
    save_pairs(store, [text_pair])
    save_ai_verdicts(store, "job-1", {text_pair.id: STRONG_B})
    build_mix(store, MixConfig(name="m", human_ratio=0.5))
    rows = {r["source"]: r for r in mix_rows_for_training(store, "m")}
    assert rows["human"]["prompt"] == chat and rows["human"]["chosen"] == [{"role": "assistant", "content": "Hello!"}]
    assert rows["ai"]["prompt"] == [{"role": "user", "content": "plain text prompt"}]
    assert rows["ai"]["chosen"] == [{"role": "assistant", "content": "good"}]


def test_heldout_rows_are_the_heldout_human_pairs_without_ties(store, tmp_path):
    import_human(store, write_pairwise(tmp_path / "h.jsonl", [(f"h{i}", ("a", "b", "tie")[i % 3])
                                                                for i in range(30)]))
    split_human(store, heldout=0.5, seed=2)
    rows = heldout_rows(store)
    expected = count(store, "SELECT count(*) FROM human_pair_labels WHERE split = 'heldout' AND winner <> 'tie'")
    assert len(rows) == expected > 0
    assert all(r["source"] == "human" and {r["chosen"], r["rejected"]} == {"alpha", "beta"} for r in rows)
    assert heldout_rows(store) == rows


def test_category_comes_from_the_pair_metadata(store, tmp_path):
    path = tmp_path / "llmeval.jsonl"
    path.write_text("".join(json.dumps({"query": f"q{i}", "response1": "x", "response2": "y", "human": "model1",
                                        "dataset": "shp"}) + "\n" for i in range(4)), encoding="utf-8")
    import_human(store, path)
    split_human(store, heldout=0.5, seed=1)
    assert {r["category"] for r in heldout_rows(store)} == {"shp"}


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_export_writes_the_training_rows_in_each_format(store, tmp_path, fmt):
    build_world(store, tmp_path)
    build_mix(store, MixConfig(name="m", human_ratio=0.25, margin_by_confidence=True))
    out = tmp_path / f"out.{fmt}"
    report = export_preferences(store, out, fmt=fmt, mix="m")
    expected = mix_rows_for_training(store, "m")
    if fmt == "jsonl":
        written = [json.loads(line) for line in out.read_text().splitlines()]
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        written = pq.read_table(out).to_pylist()
    else:
        from datasets import load_from_disk

        written = load_from_disk(str(out)).to_list()
    assert report.rows == len(expected) and written == expected


def test_export_needs_exactly_one_of_mix_or_split(store, tmp_path):
    with pytest.raises(PrefgenError, match="exactly one"):
        export_preferences(store, tmp_path / "x.jsonl", fmt="jsonl")


def test_cli_mix_then_export_heldout_and_mix(tmp_path):
    db = tmp_path / "cli.duckdb"
    with Store(db) as store:
        build_world(store, tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["mix", "--db", str(db), "--name", "blend", "--human-ratio", "0.25",
                                 "--max-per-prompt", "2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "mix 'blend'" in result.output
    out = tmp_path / "blend.jsonl"
    result = runner.invoke(cli, ["export", "--db", str(db), "--mix", "blend", "--format", "jsonl", "--out", str(out)])
    assert result.exit_code == 0, result.output
    held = tmp_path / "heldout.parquet"
    result = runner.invoke(cli, ["export", "--db", str(db), "--split", "heldout", "--format", "parquet",
                                 "--out", str(held)])
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        assert mix_manifest(store, "blend")["filters"]["max_per_prompt"] == 2
        assert len(out.read_text().splitlines()) == len(mix_rows(store, "blend"))
        import pyarrow.parquet as pq

        assert pq.read_table(held).num_rows == len(heldout_rows(store))


def test_a_plain_mix_keeps_every_human_train_label_and_its_summary_adds_up(store, tmp_path):
    build_world(store, tmp_path)
    train = count(store, "SELECT count(*) FROM human_pair_labels WHERE split = 'train'")
    report = build_mix(store, MixConfig(name="plain"))
    assert report.human == train and report.ai == report.counts["ai"]["after_cap"]
    text = "\n".join(report.lines())
    assert "left out none" not in text and "shortfall" not in text
    assert f"human: {train} train pairs, {train} in the mix" in text


def test_a_ratio_mix_says_how_many_rows_the_ratio_left_out():
    from prefgen.pipelines.mixing.mix import MixReport

    counts = {"human": {"available": 349, "left_out": {}}, "ai": {"available": 40, "left_out": {}},
              "shortfall": {"human_unused": 338, "ai_unused": 0}, "capped_per_prompt": 0}
    lines = MixReport("m", 43, 11, 32, 0.25, 11 / 43, "h", counts).lines()
    assert "human: 349 train pairs, 11 in the mix" in lines
    assert "  338 human rows that passed every filter left out to keep --human-ratio 0.25" in lines
    assert not any("left out none" in line or line.startswith("shortfall") for line in lines)
