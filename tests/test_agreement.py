"""Judge/human agreement: metric functions against hand-computed values, then the report over a store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.judge.swap import pair_preference, preference
from prefgen.pipelines.humans.agreement import (
    agreement_rate,
    agreement_report,
    agreement_summary,
    cohen_kappa,
    confidence_bucket,
    fleiss_kappa,
    match_scores,
    observed_agreement,
    vote_counts,
)
from prefgen.pipelines.humans.imports import import_human
from prefgen.pipelines.humans.split import split_human
from prefgen.records import Answer, make_pair
from prefgen.storage.db import Store
from prefgen.storage.labels import save_job, save_pairs, save_preferences

THRESHOLD = 0.5


# -- helpers shared with test_mix -------------------------------------------------------------------------


def pair_ids(store: Store) -> dict[str, str]:
    """prompt text -> pair id, for fixtures with one pair per prompt."""
    return dict(store.query("SELECT prompt, id FROM pairs")[1])


def save_ai_verdicts(store: Store, job_id: str, verdicts: dict[str, dict[str, tuple[float, float]]], *,
                     judge_spec: str = "openai:fake-judge") -> None:
    """Store a label job's preferences as the label pipeline would: verdicts maps pair id -> principle ->
    (P(first better | a first), P(first better | b first)), aggregated by the real swap functions."""
    save_job(store, {"job_id": job_id, "constitution_id": "c-test", "judge_spec": judge_spec, "backend": "openai",
                     "model": "fake-judge", "template_version": "t1", "confidence_mode": "logprobs",
                     "sampling": {}})
    prefs, pair_prefs = [], []
    for pair_id, principles in verdicts.items():
        ours = [preference(job_id, pair_id, principle_id, Answer("ok", p_ab, "logprobs"),
                           Answer("ok", p_ba, "logprobs"), THRESHOLD)
                for principle_id, (p_ab, p_ba) in principles.items()]
        prefs += ours
        pair_prefs.append(pair_preference(job_id, pair_id, [(p, 1.0) for p in ours], THRESHOLD))
    save_preferences(store, prefs, pair_prefs)


def write_pairwise(path: Path, rows: list[tuple[str, str]]) -> Path:
    """(prompt, winner) rows; responses "alpha" < "beta" keep the file order canonical (a = alpha)."""
    path.write_text("".join(json.dumps({"prompt": p, "response_a": "alpha", "response_b": "beta", "winner": w}) + "\n"
                            for p, w in rows), encoding="utf-8")
    return path


# -- pure metrics -----------------------------------------------------------------------------------------


AI = ["a", "a", "b", "b", "tie", "a"]
HUMAN = ["a", "b", "b", "tie", "a", "a"]


def test_agreement_with_ties_excluded_counts_only_decided_pairs():
    # Pairs 0, 1, 2, 5 have no tie: agree, disagree, agree, agree.
    assert agreement_rate(AI, HUMAN, ties="exclude") == pytest.approx(3 / 4)


def test_agreement_with_ties_as_half_scores_every_pair():
    # 1 + 0 + 1 + 0.5 + 0.5 + 1 over 6 pairs.
    assert agreement_rate(AI, HUMAN, ties="half") == pytest.approx(4 / 6)
    assert list(match_scores(["tie"], ["tie"], ties="half")) == [1.0]


def test_agreement_of_nothing_is_none():
    assert agreement_rate(["tie"], ["a"]) is None
    assert cohen_kappa([], []) is None


def test_cohen_kappa_matches_the_textbook_two_by_two_example():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o 0.7, p_e 0.5, kappa 0.4.
    x = ["a"] * 20 + ["a"] * 5 + ["b"] * 10 + ["b"] * 15
    y = ["a"] * 20 + ["b"] * 5 + ["a"] * 10 + ["b"] * 15
    assert cohen_kappa(x, y) == pytest.approx(0.4)


def test_cohen_kappa_with_ties_as_a_third_category():
    # p_o = 3/4; p_e = (2*1 + 1*2 + 1*1) / 16 = 5/16; kappa = (3/4 - 5/16) / (11/16) = 7/11.
    assert cohen_kappa(["a", "a", "b", "tie"], ["a", "b", "b", "tie"]) == pytest.approx(7 / 11)


def test_cohen_kappa_is_undefined_when_chance_agreement_is_certain():
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None


def test_fleiss_kappa_by_hand_for_two_items():
    # [a a a] and [a a b]: P_i = 1 and 1/3, P-bar = 2/3; p_a = 5/6, p_b = 1/6, P_e = 26/36; kappa = -1/5.
    counts = vote_counts([["a", "a", "a"], ["a", "a", "b"]])
    assert observed_agreement(counts) == pytest.approx(2 / 3)
    assert fleiss_kappa(counts) == pytest.approx(-0.2)


def test_fleiss_kappa_matches_the_published_worked_example():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories: P-bar 0.378, kappa 0.210.
    counts = np.array([
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ])
    assert observed_agreement(counts) == pytest.approx(0.378, abs=1e-3)
    assert fleiss_kappa(counts) == pytest.approx(0.210, abs=1e-3)


def test_confidence_buckets_are_closed_below():
    assert [confidence_bucket(c) for c in (0.0, 0.19, 0.2, 0.75, 0.8, 1.0)] == \
        ["0.0-0.2", "0.0-0.2", "0.2-0.4", "0.6-0.8", "0.8-1.0", "0.8-1.0"]


# -- the report over a store ------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "a.duckdb") as s:
        yield s


@pytest.fixture
def judged(store, tmp_path):
    """Five human-labelled pairs and one judge:
    p1 human a, judge a strongly (kept); p2 human a, judge a under two principles (kept);
    p3 human b, judge inconsistent leaning a (dropped); p4 human a, judge a weakly (dropped);
    p5 human tie, judge b strongly (kept)."""
    import_human(store, write_pairwise(tmp_path / "h.jsonl",
                                       [("p1", "a"), ("p2", "a"), ("p3", "b"), ("p4", "a"), ("p5", "tie")]))
    ids = pair_ids(store)
    save_ai_verdicts(store, "job-1", {
        ids["p1"]: {"harmless": (0.95, 0.05)},
        ids["p2"]: {"harmless": (0.95, 0.05), "honest": (0.75, 0.25)},
        ids["p3"]: {"harmless": (0.9, 0.8)},
        ids["p4"]: {"harmless": (0.65, 0.35)},
        ids["p5"]: {"harmless": (0.05, 0.95)},
    })
    return store


def test_report_before_and_after_the_filter_matches_hand_counts(judged):
    (job,) = agreement_report(judged, seed=1, n_resamples=200).jobs
    assert (job.judge_spec, job.pairs, job.kept_share) == ("openai:fake-judge", 5, pytest.approx(3 / 5))
    # Before: judge a a a a b vs human a a b a tie.
    assert job.before.ties_excluded.value == pytest.approx(3 / 4)
    assert job.before.ties_half.value == pytest.approx(3.5 / 5)
    assert job.before.kappa == pytest.approx(1 / 6)
    # After: kept p1 p2 p5, judge a a b vs human a a tie.
    assert (job.after.ties_excluded.n, job.after.ties_excluded.value) == (2, 1.0)
    assert job.after.ties_half.value == pytest.approx(2.5 / 3)
    assert job.after.kappa == pytest.approx(0.4)
    assert job.before.ties_excluded.low <= 0.75 <= job.before.ties_excluded.high


def test_report_per_principle_and_per_confidence_bucket(judged):
    (job,) = agreement_report(judged, n_resamples=50).jobs
    principles = {p.principle_id: p for p in job.by_principle}
    assert (principles["harmless"].pairs, principles["harmless"].agreement) == (5, pytest.approx(3 / 4))
    assert (principles["harmless"].kept, principles["harmless"].agreement_kept) == (3, 1.0)
    assert (principles["honest"].pairs, principles["honest"].agreement) == (1, 1.0)
    buckets = {b.bucket: (b.pairs, b.agreement, b.kept_share) for b in job.by_confidence}
    assert buckets == {
        "0.0-0.2": (1, 0.0, 0.0),  # p3: |2 * 0.55 - 1| = 0.1
        "0.2-0.4": (1, 1.0, 0.0),  # p4: 0.3
        "0.6-0.8": (1, 1.0, 1.0),  # p2: mean of 0.95 and 0.75 -> 0.7
        "0.8-1.0": (2, 1.0, 1.0),  # p1 and p5 (a human tie, excluded from the rate)
    }


def test_first_slot_answers_of_equal_confidence_are_a_tie_in_per_principle_agreement(store, tmp_path):
    # (0.9 + 1 - 0.9) / 2 is 0.49999999999999994; stored as "b" it would agree with this human's "b".
    import_human(store, write_pairwise(tmp_path / "h.jsonl", [("p1", "b")]))
    save_ai_verdicts(store, "job-1", {pair_ids(store)["p1"]: {"harmless": (0.9, 0.9)}})
    assert store.query("SELECT chosen FROM preferences")[1] == [("tie",)]
    (job,) = agreement_report(store, n_resamples=10).jobs
    (principle,) = job.by_principle
    assert (principle.pairs, principle.agreement) == (1, None)


def test_report_filters_by_judge_and_split(judged, tmp_path):
    ids = pair_ids(judged)
    save_ai_verdicts(judged, "job-2", {ids["p1"]: {"harmless": (0.1, 0.9)}}, judge_spec="openai:other")
    assert [j.job_id for j in agreement_report(judged, n_resamples=10).jobs] == ["job-1", "job-2"]
    (only,) = agreement_report(judged, judge="openai:other", n_resamples=10).jobs
    assert (only.pairs, only.before.ties_excluded.value) == (1, 0.0)

    split_human(judged, heldout=0.5, seed=0)
    heldout = dict(judged.query("""SELECT p.prompt, h.split FROM human_labels h
                                   JOIN pairs p ON p.id = h.pair_id""")[1])
    (job,) = agreement_report(judged, judge="job-1", split="heldout", n_resamples=10).jobs
    assert job.pairs == sum(side == "heldout" for side in heldout.values())


def test_inter_annotator_agreement_per_import(store, tmp_path):
    path = tmp_path / "panda.jsonl"
    rows = [{"instruction": "i1", "response1": "alpha", "response2": "beta", "annotator1": 1, "annotator2": 1,
             "annotator3": 1},
            {"instruction": "i2", "response1": "alpha", "response2": "beta", "annotator1": 1, "annotator2": 1,
             "annotator3": 2}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    import_human(store, path, source="panda")
    (panda,) = agreement_report(store).annotators
    assert (panda.source, panda.items, panda.annotators, panda.raters_per_item) == ("panda", 2, 3, 3)
    assert panda.observed == pytest.approx(2 / 3) and panda.fleiss_kappa == pytest.approx(-0.2)


def test_agreement_summary_is_none_without_anything_to_compare(store):
    assert agreement_summary(store) is None


def test_agreement_summary_gives_flat_tables_for_stats(judged):
    tables = agreement_summary(judged)
    (row,) = tables["judge vs human"]
    assert row["agreement_all"] == pytest.approx(0.75) and row["agreement_kept"] == 1.0
    assert {r["principle_id"] for r in tables["per principle"]} == {"harmless", "honest"}


def test_agreement_only_reads_the_calibrations_it_shows_are_not_stored(judged):
    path = judged.path
    judged.close()
    result = CliRunner().invoke(cli, ["agreement", "--db", path])
    assert result.exit_code == 0, result.output
    assert "judge calibration (human train split)" in result.output and "openai:fake-judge" in result.output
    with Store(path, read_only=True) as store:
        assert store.query("SELECT count(*) FROM calibrations")[1][0][0] == 0


def test_cli_agreement_prints_tables_and_json(judged):
    path = judged.path
    judged.close()
    runner = CliRunner()
    text = runner.invoke(cli, ["agreement", "--db", path])
    assert text.exit_code == 0, text.output
    assert "judge vs human" in text.output and "openai:fake-judge" in text.output
    as_json = runner.invoke(cli, ["agreement", "--db", path, "--json", "--judge", "openai:fake-judge"])
    report = json.loads(as_json.output)
    assert report["jobs"][0]["after"]["ties_excluded"]["value"] == 1.0


def test_agreement_without_overlap_says_so_in_a_line_and_what_to_do(tmp_path):
    """AI verdicts on some pairs, human labels on others: nothing to compare, and the output says why rather
    than printing a table of zeros with the reason in a column the terminal cuts."""
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        import_human(store, write_pairwise(tmp_path / "h.jsonl", [("humans only", "a")]))
        ai = make_pair("judged only", "x", "y", source="pool")[0]
        save_pairs(store, [ai])
        save_ai_verdicts(store, "job-1", {ai.id: {"harmless": (0.9, 0.1)}})
    result = CliRunner().invoke(cli, ["agreement", "--db", str(db)], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "no pair has both a judge verdict and a human label" in " ".join(result.output.split())
    assert "pairs" not in result.output.split("note:")[0]  # no table of zeros before the note
    as_json = CliRunner().invoke(cli, ["agreement", "--db", str(db), "--json"])
    assert any("no pair has both" in note for note in json.loads(as_json.output)["notes"])
