"""Routing pairs to annotators, the Label Studio / Argilla round-trip, declared splits, labels beside pairs,
and human labels feeding both calibration and the mix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.errors import InputError, PrefgenError
from prefgen.pipelines.humans.agreement import agreement_report
from prefgen.formats.label_studio import LABEL_STUDIO_CONFIG
from prefgen.pipelines.configs import RouteConfig, RouteWeights
from prefgen.pipelines.humans.imports import import_human
from prefgen.pipelines.mixing.mix import MixConfig, build_mix
from prefgen.pipelines.mixing.route import PairSignals, choose, even_split, route
from prefgen.pipelines.humans.split import split_human
from prefgen.records import make_pair
from prefgen.storage.calibration import calibration_pairs
from prefgen.storage.db import Store
from prefgen.storage.labels import save_pairs
from tests.test_agreement import save_ai_verdicts

SURE = {"harmless": (0.95, 0.05), "helpful": (0.95, 0.05)}  # consistent, confidence 0.9, side a
UNSURE = {"harmless": (0.6, 0.45), "helpful": (0.55, 0.4)}  # consistent but weak
FLIPPED = {"harmless": (0.9, 0.9), "helpful": (0.95, 0.05)}  # harmless answers the first slot both times
SPLIT = {"harmless": (0.9, 0.1), "helpful": (0.1, 0.9)}  # the principles pick opposite sides


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "r.duckdb") as s:
        yield s


def judged_pool(store: Store) -> dict[str, list[str]]:
    """20 judged pairs, 5 of each kind; returns pair ids by kind."""
    kinds = {"sure": SURE, "unsure": UNSURE, "flipped": FLIPPED, "split": SPLIT}
    ids: dict[str, list[str]] = {k: [] for k in kinds}
    verdicts = {}
    pairs = []
    for i in range(20):
        kind = list(kinds)[i % 4]
        pair, _ = make_pair(f"prompt {i}", f"alpha {i}", f"beta {i}", source="pool", source_id=f"id{i}")
        pairs.append(pair)
        ids[kind].append(pair.id)
        verdicts[pair.id] = kinds[kind]
    save_pairs(store, pairs)
    save_ai_verdicts(store, "job-1", verdicts)
    return ids


def routed_batch(store: Store, tmp_path: Path, fmt: str = "label-studio", budget: int = 8, share: float = 0.25):
    out = tmp_path / ("batch.json")
    report = route(store, RouteConfig(budget=budget, format=fmt, out=out, random_share=share, seed=1))
    return report, json.loads(out.read_text())


def items(store: Store) -> list[dict]:
    return store.dicts("SELECT * FROM route_items ORDER BY position")


# -- ranking ---------------------------------------------------------------------------------------------


def test_even_split_is_one_for_a_draw_and_zero_for_unanimity():
    assert even_split(["a", "b"]) == 1.0
    assert even_split(["a", "a", "tie"]) == 0.0
    assert even_split(["a", "a", "b"]) == pytest.approx(2 / 3)


def test_the_random_slice_is_drawn_first_and_the_rest_goes_to_the_highest_scores():
    signals = [PairSignals(f"p{i}", f"q{i}", 0.5, i / 10, 0.0, 0.0, 0.0) for i in range(10)]
    picked = choose(signals, budget=4, random_share=0.5, seed=0)
    random = [p.signals.pair_id for p in picked if p.selection == "random"]
    routed = [p.signals.pair_id for p in picked if p.selection == "routed"]
    assert len(random) == 2 and len(routed) == 2
    best_others = [s.pair_id for s in sorted(signals, key=lambda s: -s.uncertainty) if s.pair_id not in random]
    assert routed == best_others[:2]


def kept_row(pair_id: str, mix_error: float) -> PairSignals:
    """A pair whose AI row is in the mix: consistent and confident enough, wrong with P mix_error."""
    return PairSignals(pair_id, pair_id, 1.0 - mix_error, 2 * mix_error, 0.0, 0.2, 0.0, mix_error=mix_error)


def dropped_pair(pair_id: str) -> PairSignals:
    """A pair the filter dropped with every warning sign up: both orders disagree, the principles split."""
    return PairSignals(pair_id, pair_id, 0.5, 1.0, 1.0, 0.0, 1.0, new_row=1.0)


def routed_ids(signals: list[PairSignals], budget: int, **weights: float) -> list[str]:
    picked = choose(signals, budget=budget, random_share=0.0, seed=0, weights=RouteWeights(**weights))
    return [p.signals.pair_id for p in picked]


def test_a_mix_row_likely_wrong_outranks_a_pair_the_filter_dropped_however_doubtful():
    signals = [kept_row("kept-0.05", 0.05), kept_row("kept-0.3", 0.3), dropped_pair("dropped")]
    assert routed_ids(signals, 2) == ["kept-0.3", "dropped"]  # 0.3 > 0.1 + warning signs > 0.05 + signs


def test_the_new_row_weight_trades_correcting_mix_rows_against_adding_rows():
    signals = [kept_row("kept-0.3", 0.3), dropped_pair("dropped")]
    assert routed_ids(signals, 1, new_row=1.0) == ["dropped"]
    assert routed_ids(signals, 1, new_row=0.0, uncertainty=0.0, inconsistency=0.0,
                      principle_disagreement=0.0) == ["kept-0.3"]


def test_the_reason_names_the_signals_that_decided_the_rank():
    assert kept_row("k", 0.3).reason(RouteWeights()).startswith("mix_error 0.30")
    assert dropped_pair("d").reason(RouteWeights()).startswith("new_row 1.00")
    assert dropped_pair("d").reason(RouteWeights(new_row=0.0, inconsistency=0.5)).startswith("inconsistency 1.00")


def test_inclusion_probabilities_match_how_often_the_design_picks_each_rank():
    signals = [kept_row(f"p{i:02d}", 0.5 - i / 100) for i in range(20)]  # p00 ranks first
    counts = {s.pair_id: 0 for s in signals}
    expected = {}
    for seed in range(600):
        for p in choose(signals, budget=6, random_share=0.5, seed=seed):
            counts[p.signals.pair_id] += 1
            expected[p.signals.pair_id] = p.inclusion
    assert expected["p00"] == expected["p02"] == 1.0  # above every cut the slice can leave
    assert expected["p19"] == pytest.approx(3 / 20)  # only ever drawn at random
    for pair_id, n in counts.items():
        assert n / 600 == pytest.approx(expected[pair_id], abs=0.06), pair_id


def test_calibration_weights_make_a_batch_count_as_many_pairs_as_it_holds():
    signals = [kept_row(f"p{i:02d}", 0.5 - i / 100) for i in range(20)]
    totals = []
    for seed in range(300):
        picked = choose(signals, budget=6, random_share=0.5, seed=seed)
        assert all(p.calibration_weight == pytest.approx(6 / 20 / p.inclusion) for p in picked)
        totals.append(sum(p.calibration_weight for p in picked))
    assert sum(totals) / len(totals) == pytest.approx(6, abs=0.3)  # Horvitz-Thompson: unbiased for the count
    routed = [p for p in picked if p.selection == "routed"]
    assert max(p.calibration_weight for p in routed) < min(p.calibration_weight for p in picked
                                                            if p.selection == "random" and p.rank > 10)


def test_without_a_random_slice_routed_pairs_carry_no_calibration_weight():
    signals = [kept_row(f"p{i:02d}", 0.5 - i / 100) for i in range(20)]
    assert {p.calibration_weight for p in choose(signals, budget=6, random_share=0.0, seed=0)} == {0.0}
    assert {p.calibration_weight for p in choose(signals, budget=20, random_share=0.0, seed=0)} == {1.0}


def test_route_checks_the_mix_rows_first_and_stores_why(store, tmp_path):
    ids = judged_pool(store)
    report, tasks = routed_batch(store, tmp_path, budget=16)
    stored = items(store)
    assert len(tasks) == len(stored) == 16
    routed = [i for i in stored if i["selection"] == "routed"]
    assert len(routed) == 12 and report.selected == {"routed": 12, "random": 4}
    # The sure and the flipped pairs are in the mix (a flipped pair by its consistent principle, at P 0.95).
    # With no human label on a judged pair yet, the calibration halves the judge's lean, so each of their rows
    # is 0.275 likely wrong: worth more than a new row (0.1 + warning signs).
    in_mix = [i for i in stored if i["pair_id"] in ids["sure"] + ids["flipped"]]
    assert len(in_mix) == 10 and max(i["rank"] for i in in_mix) == 10
    assert all(i["new_row"] == 0.0 and i["mix_error"] == pytest.approx(1 - (0.5 + 0.5 * 0.45)) for i in in_mix)
    assert all(i["reason"].startswith("mix_error") for i in in_mix)
    others = [i for i in stored if i not in in_mix]
    assert all(i["new_row"] == 1.0 and i["mix_error"] is None and i["reason"].startswith("new_row") for i in others)
    flipped = [i for i in stored if i["pair_id"] in ids["flipped"]]
    assert all(i["inconsistency"] == 0.5 for i in flipped)
    assert max(i["rank"] for i in flipped) == 5  # equal mix_error: the flip is the warning sign that decides
    split = next(i for i in stored if i["pair_id"] in ids["split"])
    assert split["principle_disagreement"] == 1.0 and split["judge_disagreement"] is None
    assert {i["inclusion"] for i in routed if i["rank"] <= 12} == {1.0}
    batch = store.dicts("SELECT * FROM route_batches")[0]
    assert json.loads(batch["label_jobs"]) == ["job-1"] and json.loads(batch["counts"])["candidates"] == 20
    assert json.loads(batch["weights"]) == RouteWeights().model_dump()
    assert json.loads(batch["calibration"])["job-1"]["method"] == "shrink"
    assert sum(e["in_mix"] for e in report.effect.values()) == 10
    assert sum(e["expected_fixes"] for e in report.effect.values()) == pytest.approx(10 * 0.275)
    assert "pairs whose AI label a plain mix would take (about" in "\n".join(report.lines())
    assert (tmp_path / "batch.label_config.xml").read_text() == LABEL_STUDIO_CONFIG


def test_mix_error_follows_the_calibration_fitted_on_human_labels(store, tmp_path):
    ids = judged_pool(store)
    pairs = dict(store.query("SELECT id, prompt FROM pairs")[1])
    agreeing = ids["sure"][:3]  # the humans side with the judge on 3 sure pairs: agreement (3 + 1) / (3 + 2)
    labels = tmp_path / "h.jsonl"
    labels.write_text("".join(json.dumps({"prompt": pairs[p], "response_a": f"alpha {pairs[p].split()[1]}",
                                          "response_b": f"beta {pairs[p].split()[1]}", "winner": "a"}) + "\n"
                              for p in agreeing))
    import_human(store, labels, pin="train")
    route(store, RouteConfig(budget=20, format="argilla", out=tmp_path / "b.json", random_share=0.0))
    shrink = 2 * (4 / 5) - 1
    errors = {i["pair_id"]: i["mix_error"] for i in items(store) if i["mix_error"] is not None}
    assert set(errors) == set(ids["sure"][3:] + ids["flipped"])
    assert all(e == pytest.approx(1 - (0.5 + shrink * 0.45)) for e in errors.values())


def test_a_second_batch_never_repeats_a_pair(store, tmp_path):
    judged_pool(store)
    routed_batch(store, tmp_path)
    route(store, RouteConfig(budget=8, format="argilla", out=tmp_path / "second.json", seed=2))
    assert store.query("SELECT count(DISTINCT pair_id), count(*) FROM route_items")[1][0] == (16, 16)


def test_tasks_show_each_pair_in_the_order_they_record(store, tmp_path):
    judged_pool(store)
    _, tasks = routed_batch(store, tmp_path)
    texts = dict(store.query("SELECT id, response_a FROM pairs")[1])
    for task in tasks:
        data = task["data"]
        first = data["response_1"] if data["shown"] == "ab" else data["response_2"]
        assert first == texts[data["pair_id"]]
    assert {t["data"]["shown"] for t in tasks} == {"ab", "ba"}


def test_route_without_verdicts_says_to_label_first(store, tmp_path):
    with pytest.raises(PrefgenError, match="prefgen label"):
        route(store, RouteConfig(budget=3, format="argilla", out=tmp_path / "b.json"))


# -- Label Studio and Argilla back -----------------------------------------------------------------------


def label_studio_export(tasks: list[dict], answers: dict[str, list[tuple[object, str]]]) -> list[dict]:
    """Label Studio's JSON export: tasks with `annotations` (answers: pair id -> [(completed_by, choice)])."""
    out = []
    for n, task in enumerate(tasks, start=1):
        annotations = [{"id": 10 * n + k, "completed_by": who, "was_cancelled": False, "ground_truth": False,
                        "result": [{"from_name": "preference", "to_name": "prompt", "type": "choices",
                                    "value": {"choices": [choice]}, "origin": "manual"}]}
                       for k, (who, choice) in enumerate(answers.get(task["data"]["pair_id"], []))]
        out.append({"id": n, "data": task["data"], "annotations": annotations, "meta": {}, "project": 1})
    return out


def canonical_labels(store: Store, annotator: str | None = None) -> dict[str, str]:
    sql = "SELECT pair_id, winner FROM human_labels WHERE annotator = ?"
    return dict(store.query(sql, [annotator or "majority"])[1])


def test_label_studio_export_maps_the_shown_order_ties_and_annotators_back(store, tmp_path):
    judged_pool(store)
    _, tasks = routed_batch(store, tmp_path)
    one, two, three = (t["data"] for t in tasks[:3])
    answers = {one["pair_id"]: [(1, "Response 1"), ({"id": 2, "email": "b@x.org"}, "Response 1")],
               two["pair_id"]: [(1, "Tie")],
               three["pair_id"]: [(1, "Response 2"), (2, "Response 1"), (3, "Response 2")]}
    export = tmp_path / "export.json"
    export.write_text(json.dumps(label_studio_export(tasks, answers)))
    report = import_human(store, export, fmt="label-studio")
    assert report.pairs == 3 and report.rows == 8  # five tasks not labelled yet
    first_shown = {"ab": "a", "ba": "b"}
    majority = canonical_labels(store)
    assert majority[one["pair_id"]] == first_shown[one["shown"]]
    assert majority[two["pair_id"]] == "tie"
    assert majority[three["pair_id"]] == {"a": "b", "b": "a"}[first_shown[three["shown"]]]
    assert canonical_labels(store, "label-studio:b@x.org") == {one["pair_id"]: first_shown[one["shown"]]}
    assert set(report.annotators) == {"label-studio:1", "label-studio:2", "label-studio:3", "label-studio:b@x.org",
                                      "majority"}
    before = store.query("SELECT count(*) FROM human_labels")[1][0][0]
    import_human(store, export, fmt="label-studio")
    assert store.query("SELECT count(*) FROM human_labels")[1][0][0] == before


def test_cancelled_annotations_and_unknown_pairs(store, tmp_path):
    judged_pool(store)
    _, tasks = routed_batch(store, tmp_path)
    export = label_studio_export(tasks[:2], {t["data"]["pair_id"]: [(1, "Response 1")] for t in tasks[:2]})
    export[0]["annotations"][0]["was_cancelled"] = True
    export[1]["data"]["pair_id"] = "not-a-pair"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(export))
    with pytest.raises(InputError, match="not in this store") as caught:
        import_human(store, path, fmt="label-studio")
    assert caught.value.line == 2


def test_argilla_records_round_trip(store, tmp_path):
    judged_pool(store)
    _, records = routed_batch(store, tmp_path, fmt="argilla")
    assert set(records[0]) >= {"id", "fields", "metadata", "responses", "suggestions", "vectors"}
    assert set(records[0]["fields"]) == {"prompt", "response_1", "response_2"}
    records[0]["responses"] = {"preference": [{"value": "response_1", "user_id": "u-1"},
                                              {"value": "response_2", "user_id": "u-2", "status": "discarded"}]}
    records[1]["responses"] = {"preference": [{"value": "tie", "user_id": "u-1", "status": "submitted"}]}
    export = tmp_path / "argilla.json"
    export.write_text(json.dumps(records))
    report = import_human(store, export, fmt="argilla")
    assert report.pairs == 2 and report.annotators == ["argilla:u-1", "majority"]
    first = records[0]["metadata"]
    assert canonical_labels(store)[first["pair_id"]] == {"ab": "a", "ba": "b"}[first["shown"]]
    assert canonical_labels(store)[records[1]["metadata"]["pair_id"]] == "tie"


def test_routed_pairs_are_left_out_of_agreement_weighted_down_in_calibration_and_enter_the_mix(store, tmp_path):
    judged_pool(store)
    _, tasks = routed_batch(store, tmp_path)
    answers = {t["data"]["pair_id"]: [(1, "Response 2")] for t in tasks}
    export = tmp_path / "export.json"
    export.write_text(json.dumps(label_studio_export(tasks, answers)))
    import_human(store, export, fmt="label-studio")
    split_human(store, heldout=0.0)
    selection = dict(store.query("SELECT pair_id, selection FROM route_items")[1])
    random = {p for p, s in selection.items() if s == "random"}
    report = agreement_report(store, n_resamples=50)
    assert report.jobs[0].pairs == len(random) == 2
    assert report.routed[0].pairs == 6
    stored = {i["pair_id"]: i["calibration_weight"] for i in items(store)}
    weights = {r["pair_id"]: r["weight"] for r in calibration_pairs(store)}
    assert weights == pytest.approx(stored) and len(weights) == 8
    assert all(w == pytest.approx(8 / 20 / i["inclusion"]) for w, i in zip(
        [weights[i["pair_id"]] for i in items(store)], items(store)))
    mix = build_mix(store, MixConfig(name="m", human_ratio=None))
    assert mix.human == 8
    ai_rows = {r[0] for r in store.query("SELECT pair_id FROM mix_rows WHERE source = 'ai'")[1]}
    assert not ai_rows & set(selection)


# -- declared splits -------------------------------------------------------------------------------------


def pairwise_file(path: Path, prompts: range, winner: str = "a") -> Path:
    path.write_text("".join(json.dumps({"prompt": f"prompt {i}", "response_a": f"alpha {i}",
                                        "response_b": f"beta {i}", "winner": winner}) + "\n" for i in prompts))
    return path


def sides(store: Store, source: str) -> dict[str, int]:
    return dict(store.query("SELECT split, count(*) FROM human_labels WHERE source = ? GROUP BY 1", [source])[1])


def test_a_file_declared_heldout_stays_heldout_through_split(store, tmp_path):
    import_human(store, pairwise_file(tmp_path / "heldout.jsonl", range(0, 40)), pin="heldout")
    import_human(store, pairwise_file(tmp_path / "train.jsonl", range(40, 80)))
    report = split_human(store, heldout=0.5, seed=3)
    assert sides(store, "heldout") == {"heldout": 40}
    assert report.origin["pinned"] == {"heldout": 40}
    assert sum(report.origin["assigned"].values()) == 40 and len(report.origin["assigned"]) == 2
    assert any(line.startswith("pinned (declared at import") for line in report.lines())


def test_other_labels_of_a_pinned_prompt_follow_the_pin(store, tmp_path):
    import_human(store, pairwise_file(tmp_path / "a.jsonl", range(0, 10)))
    split_human(store, heldout=0.0)
    other = tmp_path / "b.jsonl"
    other.write_text("".join(json.dumps({"prompt": f"prompt {i}", "response_a": f"gamma {i}",
                                         "response_b": f"delta {i}", "winner": "b"}) + "\n" for i in range(0, 5)))
    import_human(store, other, pin="heldout")
    assert sides(store, "a") == {"heldout": 5, "train": 5}
    split_human(store, heldout=0.0)
    assert sides(store, "a") == {"heldout": 5, "train": 5}


def test_pinning_a_prompt_to_both_sides_is_refused(store, tmp_path):
    import_human(store, pairwise_file(tmp_path / "a.jsonl", range(0, 5)), pin="train")
    with pytest.raises(PrefgenError, match="2 prompt.s. would have labels pinned to both sides .*a:train, b:heldout"):
        import_human(store, pairwise_file(tmp_path / "b.jsonl", range(3, 8), winner="b"), pin="heldout",
                     source="b")
    assert store.query("SELECT count(*) FROM human_labels WHERE source = 'b'")[1][0][0] == 0


def test_pinned_imports_need_no_split_before_mixing(store, tmp_path):
    import_human(store, pairwise_file(tmp_path / "a.jsonl", range(0, 6)), pin="train")
    assert build_mix(store, MixConfig(name="m", human_ratio=1.0)).human == 6


# -- labels beside pairs ---------------------------------------------------------------------------------


def pool_files(tmp_path: Path) -> tuple[Path, Path]:
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": f"id{i}", "prompt": f"prompt {i}", "response_a": f"zeta {i}",
                                        "response_b": f"alpha {i}"}) + "\n" for i in range(6)))
    labels = tmp_path / "pool_labels.jsonl"
    labels.write_text("".join(json.dumps({"id": f"id{i}", "human_winner": "ab"[i % 2]}) + "\n" for i in range(5)))
    return pool, labels


def test_a_label_file_joins_its_pair_file_by_id(store, tmp_path):
    pool, labels = pool_files(tmp_path)
    report = import_human(store, pool, labels=labels, on="id", columns={"winner": "human_winner"})
    assert report.pairs == 5 and report.unlabelled_pairs == 1 and report.source == "pool_labels"
    # file order a = "zeta", the canonical a is "alpha": the winner must come out flipped, text for text
    rows = store.dicts("""SELECT p.response_a, p.response_b, h.winner FROM human_labels h
                          JOIN pairs p ON p.id = h.pair_id WHERE p.prompt = 'prompt 0'""")
    winner = rows[0]
    assert winner["response_b"] == "zeta 0" and winner["winner"] == "b"


def test_labels_for_pairs_of_another_batch_are_counted_not_refused(store, tmp_path):
    """A label file usually covers the whole pool while the pair file is one batch of it."""
    pool, labels = pool_files(tmp_path)
    labels.write_text(labels.read_text() + "".join(json.dumps({"id": f"id9{i}", "human_winner": "a"}) + "\n"
                                                   for i in range(700)))
    report = import_human(store, pool, labels=labels, columns={"winner": "human_winner"})
    assert report.pairs == 5 and report.unmatched_labels == 700 and report.skipped == []
    text = "\n".join(report.lines())
    assert "label rows that name no pair of this file: 700" in text and len(report.lines()) < 15


def test_auto_detect_error_lists_the_column_mapping_that_works(store, tmp_path):
    pool, labels = pool_files(tmp_path)
    with pytest.raises(InputError) as caught:
        import_human(store, pool, labels=labels)
    assert "--column winner=human_winner" in caught.value.render()
    with pytest.raises(InputError) as alone:
        import_human(store, labels)
    assert "--labels THIS_FILE --on ID_COLUMN" in alone.value.render()


def test_cli_import_with_labels_and_split(tmp_path):
    pool, labels = pool_files(tmp_path)
    db = tmp_path / "cli.duckdb"
    result = CliRunner().invoke(cli, ["import-human", str(pool), "--labels", str(labels), "--column",
                                      "winner=human_winner", "--split", "heldout", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "pinned to heldout" in result.output
    with Store(db) as store:
        assert sides(store, "pool_labels") == {"heldout": 5}


# -- human labels feed both uses -------------------------------------------------------------------------


def test_a_human_labelled_pair_keeps_its_ai_preference_for_calibration_while_the_human_wins_the_mix(store, tmp_path):
    ids = judged_pool(store)
    sure = ids["sure"]
    labels = tmp_path / "h.jsonl"
    pairs = dict(store.query("SELECT id, prompt FROM pairs")[1])
    labels.write_text("".join(json.dumps({"prompt": pairs[p], "response_a": f"alpha {pairs[p].split()[1]}",
                                          "response_b": f"beta {pairs[p].split()[1]}", "winner": "b"}) + "\n"
                              for p in sure))
    import_human(store, labels, pin="train")
    assert {r["pair_id"] for r in calibration_pairs(store)} == set(sure)
    mix = build_mix(store, MixConfig(name="m", human_ratio=None))
    rows = dict(store.query("SELECT pair_id, chosen FROM mix_rows WHERE source = 'human'")[1])
    assert rows == {p: "b" for p in sure}  # the judge said a; the humans' b wins
    assert "5 AI rows replaced by human labels for the same pair" in "\n".join(mix.lines())


def test_cli_route_writes_the_batch_and_says_how_to_bring_it_back(tmp_path):
    db = tmp_path / "cli.duckdb"
    with Store(db) as store:
        judged_pool(store)
    out = tmp_path / "b.json"
    result = CliRunner().invoke(cli, ["route", "--db", str(db), "--budget", "5", "--format", "argilla",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 routed by value, 1 drawn at random" in result.output
    assert "prefgen import-human EXPORT --format argilla" in result.output
    assert len(json.loads(out.read_text())) == 5


def test_cli_weights_reorder_the_batch_and_are_stored(tmp_path):
    db = tmp_path / "cli.duckdb"
    with Store(db) as store:
        ids = judged_pool(store)
    args = ["route", "--db", str(db), "--budget", "5", "--format", "argilla", "--random-share", "0"]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "b.json"), "--weight-new-row", "2"])
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        picked = {r[0] for r in store.query("SELECT pair_id FROM route_items")[1]}
        weights = json.loads(store.query("SELECT weights FROM route_batches")[1][0][0])
    assert picked == set(ids["split"])  # new rows first now; among them the even principle split ranks highest
    assert weights == {**RouteWeights().model_dump(), "new_row": 2.0}
    bad = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "c.json"), "--weight-uncertainty", "-1"])
    assert bad.exit_code == 2 and "--weight-uncertainty" in bad.output and "must be >= 0" in bad.output


def test_route_config_takes_weights_nested_or_by_signal_name(tmp_path):
    nested = RouteConfig(budget=1, format="argilla", out=tmp_path / "b.json", weights={"new_row": 0.5})
    flat = RouteConfig(budget=1, format="argilla", out=tmp_path / "b.json", new_row=0.5)
    assert nested == flat and flat.weights.mix_error == RouteWeights().mix_error


@pytest.mark.slow
def test_a_reward_model_ensemble_adds_its_spread_as_a_signal(store, tmp_path):
    from prefgen.train.config import TrainConfig
    from prefgen.train.trainer import train_ensemble
    from tests.test_train import polite_vs_rude

    judged_pool(store)
    model = tmp_path / "ensemble"
    train_ensemble(polite_vs_rude(8), TrainConfig(base="minilm", out_dir=model, max_length=32, batch_size=4, max_steps=1,
                                                  ensemble=2))
    route(store, RouteConfig(budget=4, format="argilla", out=tmp_path / "b.json", reward_model=model))
    spreads = [i["rm_spread"] for i in items(store)]
    assert all(s is not None and 0.0 <= s <= 1.0 for s in spreads) and max(spreads) > 0.0
    assert store.dicts("SELECT model_path FROM route_batches")[0]["model_path"] == str(model)



def test_a_mix_made_human_only_by_labels_on_every_judged_pair_says_so(store, tmp_path):
    judged_pool(store)
    labels = tmp_path / "all.jsonl"
    labels.write_text("".join(json.dumps({"prompt": f"prompt {i}", "response_a": f"alpha {i}",
                                          "response_b": f"beta {i}", "winner": "a"}) + "\n" for i in range(20)))
    import_human(store, labels, pin="train")
    mix = build_mix(store, MixConfig(name="m", human_ratio=None))
    text = "\n".join(mix.lines())
    assert mix.ai == 0 and "so the mix is human-only" in text
    assert f"{mix.counts['ai']['available']} AI rows replaced by human labels for the same pair" in text
    assert len(calibration_pairs(store)) == 20


def test_the_heldout_share_of_a_split_is_measured_on_the_prompts_it_assigned(store, tmp_path):
    """500 prompts pinned to heldout at import and 500 unpinned: --heldout 0.3 holds out about 30% of the 500,
    and the report says so, rather than "65% realised" over all 1,000."""
    import_human(store, pairwise_file(tmp_path / "heldout.jsonl", range(0, 500)), pin="heldout")
    import_human(store, pairwise_file(tmp_path / "train.jsonl", range(500, 1000)))
    report = split_human(store, heldout=0.3, seed=0)
    assert report.by_origin["pinned"] == {"train": 0, "heldout": 500}
    assert 0.25 < report.realised < 0.35
    text = "\n".join(report.lines())
    assert f"{report.realised:.1%} realised, 30.0% requested" in text
    assert "--heldout applies to these prompts only" in text


# -- the cross-check --------------------------------------------------------------------------------------


def wrong_ai_rows(store: Store) -> set[str]:
    """Pool pairs (polite wins) whose AI row points to the rude response."""
    rows = store.dicts("""SELECT pp.pair_id, pp.chosen, p.response_a FROM pair_preferences pp
                          JOIN pairs p ON p.id = pp.pair_id WHERE p.source = 'pool' AND pp.kept""")
    from tests.test_soft_labels import POLITE

    polite = {template.split("{t}")[0] for template in POLITE}
    return {r["pair_id"] for r in rows
            if any(r["response_a"].startswith(start) for start in polite) != (r["chosen"] == "a")}


def test_the_cross_check_finds_the_wrong_ai_rows_the_judges_confidence_cannot_tell_apart(tmp_path):
    from tests.test_soft_labels import world

    picks = {}
    for checked in (False, True):
        with Store(tmp_path / f"{checked}.duckdb") as store:
            world(store, tmp_path, n_human=16, n_ai=48, ai_right=0.8)
            wrong = wrong_ai_rows(store)
            report = route(store, RouteConfig(budget=len(wrong), format="argilla", out=tmp_path / f"{checked}.json",
                                              random_share=0.0, cross_check=checked))
            stored = items(store)
            picks[checked] = len({i["pair_id"] for i in stored} & wrong) / len(wrong)
            batch = store.dicts("SELECT cross_check FROM route_batches")[0]["cross_check"]
    # Every AI row carries the judge's same confidence, so on its own the judge's P cannot rank them: the picks
    # are as wrong as the rows at large. Models trained without each prompt (the default base, SmolLM2's
    # response-mean head) know rude from polite.
    assert len(wrong) >= 5
    assert picks[True] >= 0.8 > picks[False]
    assert all(i["rm_check"] is not None and 0.0 < i["rm_check"] < 1.0 for i in stored)
    doubted = [i for i in stored if i["pair_id"] in wrong]
    assert all(i["rm_check"] < 0.5 and i["mix_error"] > 1 - 0.5 for i in doubted)
    batch = json.loads(batch)
    assert batch == report.cross_check and batch["weight_decay"] is not None
    assert batch["humans"] == 16 and batch["scale"] > 0 and batch["disagree"] >= len(doubted)
    assert "cross-check: reward models trained without each prompt (5 folds" in "\n".join(report.lines())


def test_the_cross_check_needs_human_labels_to_calibrate_on(store, tmp_path):
    judged_pool(store)
    with pytest.raises(PrefgenError, match="--cross-check calibrates the reward models' margins on human train"):
        route(store, RouteConfig(budget=4, format="argilla", out=tmp_path / "b.json", cross_check=True))


def test_a_base_without_the_cross_check_is_refused():
    with pytest.raises(ValueError, match="--base is the --cross-check models' base"):
        RouteConfig(budget=4, format="argilla", out="b.json", base="minilm")


def test_two_calibrated_opinions_of_a_side_multiply_their_odds():
    from prefgen.pipelines.mixing.route import joined

    assert joined(0.8, None) == 0.8
    assert joined(0.8, 0.5) == pytest.approx(0.8)  # an opinion without a lean changes nothing
    assert joined(0.8, 0.2) == pytest.approx(0.5)  # equal and opposite: no lean left
    assert joined(0.8, 0.8) == pytest.approx(16 / 17)  # odds 4 x 4 = 16
