"""Importing human labels (every format), the held-out split, and the real data sets in ../shared."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from prefgen.cli import cli
from prefgen.errors import InputError
from prefgen.formats._columns import parse_winner
from prefgen.pipelines.humans.imports import import_human
from prefgen.pipelines.humans.votes import majority
from prefgen.pipelines.labelling.inputs import read_pairs
from prefgen.pipelines.humans.split import HELDOUT, TRAIN, side_of, split_human
from prefgen.records import make_pair
from prefgen.storage.db import Store
from prefgen.storage.labels import save_pairs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def hh(prompt_turns: str, chosen: str, rejected: str) -> dict:
    return {"chosen": f"{prompt_turns}\n\nAssistant: {chosen}", "rejected": f"{prompt_turns}\n\nAssistant: {rejected}"}


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "t.duckdb") as s:
        yield s


def labels(store: Store, annotator: str | None = None) -> list[dict]:
    sql = """SELECT h.annotator, h.winner, h.confidence, h.source_line, h.split, p.prompt, p.is_chat,
                    p.response_a, p.response_b, p.prompt_id
             FROM human_labels h JOIN pairs p ON p.id = h.pair_id"""
    params = []
    if annotator:
        sql += " WHERE h.annotator = ?"
        params.append(annotator)
    columns, rows = store.query(sql + " ORDER BY h.source_line, h.annotator", params)
    return [dict(zip(columns, r)) for r in rows]


def winner_text(row: dict) -> str | None:
    return {"a": row["response_a"], "b": row["response_b"]}.get(row["winner"])


def count(store: Store, table: str) -> int:
    return store.query(f"SELECT count(*) FROM {table}")[1][0][0]


# -- formats ---------------------------------------------------------------------------------------------


def test_hh_transcripts_become_shared_prompt_and_final_turns(store, tmp_path):
    path = write_jsonl(tmp_path / "hh.jsonl", [
        hh("\n\nHuman: How do I boil an egg?", "Put it in boiling water for nine minutes.", "No."),
        hh("\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke.", "Why did the hen cross?", "Zebra."),
    ])
    report = import_human(store, path, fmt="hh")
    assert (report.pairs, report.balance) == (2, {"first": 2, "second": 0, "tie": 0})
    rows = labels(store)
    assert [r["prompt"] for r in rows] == ["Human: How do I boil an egg?",
                                            "Human: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke."]
    assert [winner_text(r) for r in rows] == ["Put it in boiling water for nine minutes.", "Why did the hen cross?"]
    assert {r["annotator"] for r in rows} == {"label"}


def test_hh_line_whose_conversations_differ_is_reported_with_its_line(store, tmp_path):
    bad = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello", "rejected": "\n\nHuman: Bye\n\nAssistant: Hello there"}
    path = write_jsonl(tmp_path / "hh.jsonl", [hh("\n\nHuman: Q", "yes", "no"), bad])
    with pytest.raises(InputError) as failure:
        import_human(store, path, fmt="hh")
    assert failure.value.line == 2 and "conversations differ" in failure.value.message
    assert count(store, "human_labels") == 0 and count(store, "pairs") == 0

    report = import_human(store, path, fmt="hh", skip_bad=True)
    assert report.pairs == 1
    assert len(report.skipped) == 1 and "hh.jsonl:2" in report.skipped[0]


def test_trl_text_rows_map_chosen_to_the_winner(store, tmp_path):
    path = write_jsonl(tmp_path / "trl.jsonl", [
        {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."},
        {"prompt": "Name a fruit.", "chosen": "Apple.", "rejected": "Zucchini bread."},
    ])
    report = import_human(store, path, fmt="trl")
    assert report.format == "trl"
    assert [winner_text(r) for r in labels(store)] == ["Blue.", "Apple."]


def test_trl_conversational_parquet_keeps_the_chat_prompt(store, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
        "chosen": [{"role": "assistant", "content": "Paris."}],
        "rejected": [{"role": "assistant", "content": "Lyon, I think."}],
    }]
    path = tmp_path / "trl.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    import_human(store, path)
    row = labels(store)[0]
    assert row["is_chat"] and json.loads(row["prompt"])[1] == {"role": "user", "content": "Capital of France?"}
    assert winner_text(row) == "Paris."


def test_trl_implicit_prompt_is_the_shared_conversation(store, tmp_path):
    user = {"role": "user", "content": "Say hi."}
    path = write_jsonl(tmp_path / "implicit.jsonl", [{
        "chosen": [user, {"role": "assistant", "content": "Hi!"}],
        "rejected": [user, {"role": "assistant", "content": "Go away."}],
    }])
    import_human(store, path)
    row = labels(store)[0]
    assert json.loads(row["prompt"]) == [user] and winner_text(row) == "Hi!"


def test_pairwise_csv_winners_follow_the_canonical_order(store, tmp_path):
    path = tmp_path / "pairwise.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["prompt", "response_a", "response_b", "winner"])
        writer.writeheader()
        # "zebra" sorts after "apple": in the second row the file's first response becomes response_b.
        writer.writerow({"prompt": "p1", "response_a": "apple", "response_b": "zebra", "winner": "a"})
        writer.writerow({"prompt": "p2", "response_a": "zebra", "response_b": "apple", "winner": "a"})
        writer.writerow({"prompt": "p3", "response_a": "zebra", "response_b": "apple", "winner": "tie"})
    report = import_human(store, path, fmt="pairwise")
    assert report.balance == {"first": 2, "second": 0, "tie": 1}
    rows = labels(store)
    assert [winner_text(r) for r in rows] == ["apple", "zebra", None]
    assert [r["winner"] for r in rows] == ["a", "b", "tie"]


def test_llmeval_style_columns_and_winner_values_are_understood(store, tmp_path):
    path = write_jsonl(tmp_path / "llmeval.jsonl", [
        {"query": "q1", "response1": "one", "response2": "two", "human": "model2", "dataset": "shp"},
        {"query": "q2", "response1": "three", "response2": "four", "human": "TIE", "dataset": "shp"},
    ])
    report = import_human(store, path)
    assert report.format == "pairwise" and report.balance == {"first": 0, "second": 1, "tie": 1}
    _, meta = store.query("SELECT metadata FROM pairs ORDER BY source_id, id")
    assert all(json.loads(m[0]) == {"dataset": "shp"} for m in meta)


def test_annotators_store_every_vote_and_the_majority(store, tmp_path):
    path = write_jsonl(tmp_path / "panda.jsonl", [
        {"idx": 1, "instruction": "Rename.", "input": "my shop", "response1": "Shop Co", "response2": "Zed",
         "annotator1": 1, "annotator2": 1, "annotator3": 2},
        {"idx": 2, "instruction": "Count.", "input": "", "response1": "3", "response2": "4",
         "annotator1": 1, "annotator2": 2, "annotator3": 0},
    ])
    report = import_human(store, path, fmt="annotators")
    assert report.annotators == ["annotator1", "annotator2", "annotator3", "majority"]
    assert report.labels == 8
    first = labels(store, "majority")
    assert first[0]["prompt"] == "Rename.\n\nmy shop"
    assert winner_text(first[0]) == "Shop Co" and first[0]["confidence"] == pytest.approx(2 / 3)
    assert first[1]["winner"] == "tie"  # no side has more than half of the votes
    assert report.balance == {"first": 1, "second": 0, "tie": 1}


def test_hf_dataset_directory_imports_like_its_rows(store, tmp_path):
    from datasets import Dataset

    Dataset.from_list([
        {"prompt": "Say yes.", "chosen": "Yes.", "rejected": "No."},
        {"prompt": "Say no.", "chosen": "No.", "rejected": "Yes."},
    ]).save_to_disk(str(tmp_path / "ds"))
    report = import_human(store, tmp_path / "ds")
    assert (report.format, report.source, report.pairs) == ("trl", "ds", 2)
    assert [winner_text(r) for r in labels(store)] == ["Yes.", "No."]


def test_human_and_ai_copies_of_a_pair_are_one_pair(store, tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"prompt": "Q?", "response_a": "short", "response_b": "longer"}])
    save_pairs(store, read_pairs(pool).pairs)
    human = write_jsonl(tmp_path / "human.jsonl", [{"prompt": "Q? ", "chosen": "longer", "rejected": "short"}])
    report = import_human(store, human)
    assert report.new_pairs == 0 and count(store, "pairs") == 1
    assert winner_text(labels(store)[0]) == "longer"


def test_bad_row_fails_the_import_and_writes_nothing(store, tmp_path):
    path = write_jsonl(tmp_path / "pw.jsonl", [
        {"prompt": "a", "response_a": "x", "response_b": "y", "winner": "a"},
        {"prompt": "b", "response_a": "x", "response_b": "y", "winner": "maybe"},
        {"prompt": "c", "response_a": "same", "response_b": "same ", "winner": "a"},
    ])
    with pytest.raises(InputError) as failure:
        import_human(store, path)
    assert (failure.value.line, failure.value.field) == (2, "winner")
    assert count(store, "pairs") == 0 and count(store, "human_labels") == 0

    report = import_human(store, path, skip_bad=True)
    assert report.pairs == 1
    assert [re.search(r"pw\.jsonl:(\d+)", s)[1] for s in report.skipped] == ["2", "3"]


def test_duplicate_rows_are_counted_and_the_first_is_kept(store, tmp_path):
    path = write_jsonl(tmp_path / "pw.jsonl", [
        {"prompt": "a", "response_a": "x", "response_b": "y", "winner": "a"},
        {"prompt": "a", "response_a": "y", "response_b": "x", "winner": "b"},  # the same label, swapped
        {"prompt": "a", "response_a": "x", "response_b": "y", "winner": "b"},  # a conflicting label
    ])
    report = import_human(store, path)
    assert (report.pairs, report.duplicates, report.conflicting) == (1, 2, 1)
    assert winner_text(labels(store)[0]) == "x"


def test_reimporting_a_source_replaces_its_labels(store, tmp_path):
    path = tmp_path / "pw.jsonl"
    write_jsonl(path, [{"prompt": "a", "response_a": "x", "response_b": "y", "winner": "a"},
                       {"prompt": "b", "response_a": "x", "response_b": "y", "winner": "a"}])
    import_human(store, path)
    write_jsonl(path, [{"prompt": "a", "response_a": "x", "response_b": "y", "winner": "b"}])
    import_human(store, path)
    assert [winner_text(r) for r in labels(store)] == ["y"]


def test_unknown_layout_asks_for_a_format(store, tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"text": "hello"}])
    with pytest.raises(InputError, match="--format"):
        import_human(store, path)


def test_winner_spellings_and_majority():
    assert [parse_winner(v, "f", 1, "w") for v in ("A", "model2", 0, 1.0, "2", " tie ")] == \
        ["a", "b", "tie", "a", "b", "tie"]
    with pytest.raises(InputError):
        parse_winner(True, "f", 1, "w")
    assert majority(["a", "a", "b"]) == ("a", pytest.approx(2 / 3))
    assert majority(["a", "b"])[0] == "tie"
    assert majority(["tie", "tie", "a"])[0] == "tie"


def test_cli_import_human_maps_columns_and_reports(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [
        {"question_text": "Why?", "ans1": "Because.", "ans2": "No idea.", "pick": "1"},
    ])
    db = tmp_path / "cli.duckdb"
    result = CliRunner().invoke(cli, [
        "import-human", str(path), "--db", str(db), "--format", "pairwise", "--source", "quiz",
        "--column", "prompt=question_text", "--column", "response_a=ans1", "--column", "response_b=ans2",
        "--column", "winner=pick",
    ])
    assert result.exit_code == 0, result.output
    assert "imported 1 labelled pairs" in result.output
    with Store(db) as store:
        row = labels(store)[0]
        assert (row["prompt"], winner_text(row)) == ("Why?", "Because.")
        assert store.query("SELECT DISTINCT source FROM human_labels")[1] == [("quiz",)]


def test_cli_import_human_bad_file_exits_with_one_line(tmp_path):
    path = write_jsonl(tmp_path / "hh.jsonl", [{"chosen": "\n\nHuman: x", "rejected": "\n\nHuman: y"}])
    result = CliRunner().invoke(cli, ["import-human", str(path), "--db", str(tmp_path / "c.duckdb")])
    assert result.exit_code == 2
    assert "hh.jsonl:1" in result.output and "Traceback" not in result.output


# -- held-out split --------------------------------------------------------------------------------------


def many_prompts(tmp_path: Path, n: int, per_prompt: int = 2) -> Path:
    rows = [{"prompt": f"prompt {i}", "response_a": f"answer {i}.{j}", "response_b": f"other {i}.{j}",
             "winner": "ab"[j % 2]} for i in range(n) for j in range(per_prompt)]
    return write_jsonl(tmp_path / "many.jsonl", rows)


def sides_per_prompt(store: Store) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for row in labels(store):
        result.setdefault(row["prompt_id"], set()).add(row["split"])
    return result


def test_split_puts_every_prompt_on_exactly_one_side(store, tmp_path):
    import_human(store, many_prompts(tmp_path, 200, per_prompt=3))
    report = split_human(store, heldout=0.3, seed=7)
    sides = sides_per_prompt(store)
    assert all(len(s) == 1 and s <= {TRAIN, HELDOUT} for s in sides.values())
    assert sum(report.prompts.values()) == 200
    assert 0.2 < report.realised < 0.4
    assert report.pairs == {TRAIN: report.prompts[TRAIN] * 3, HELDOUT: report.prompts[HELDOUT] * 3}


def test_split_depends_only_on_prompt_and_seed(store, tmp_path):
    import_human(store, many_prompts(tmp_path, 50))
    split_human(store, heldout=0.5, seed=1)
    first = sides_per_prompt(store)
    split_human(store, heldout=0.5, seed=1)
    assert sides_per_prompt(store) == first
    split_human(store, heldout=0.5, seed=2)
    assert sides_per_prompt(store) != first
    assert all(side_of(pid, 0.5, 2) in sides for pid, sides in sides_per_prompt(store).items())


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**31), prompt_id=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40))
def test_split_hash_in_sql_equals_the_python_hash_used_at_import(seed, prompt_id):
    import duckdb

    from prefgen.pipelines.humans.split import unit_hash
    from prefgen.storage.human import unit_hash_sql

    value = duckdb.connect().execute(f"SELECT {unit_hash_sql('$seed', '$pid')}", {"seed": seed, "pid": prompt_id})
    assert value.fetchone()[0] == unit_hash(seed, prompt_id)


def test_labels_imported_after_a_split_join_their_prompt_side(store, tmp_path):
    import_human(store, many_prompts(tmp_path, 40))
    split_human(store, heldout=0.5, seed=3)
    later = write_jsonl(tmp_path / "later.jsonl", [
        {"prompt": f"prompt {i}", "response_a": f"late {i}", "response_b": f"later {i}", "winner": "a"}
        for i in range(40)
    ])
    report = import_human(store, later)
    assert all(len(s) == 1 and None not in s for s in sides_per_prompt(store).values())
    assert sum(report.split.values()) == 120


def test_cli_split_reports_both_sides(tmp_path):
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        import_human(store, many_prompts(tmp_path, 30))
    result = CliRunner().invoke(cli, ["split", "--db", str(db), "--heldout", "0.25", "--seed", "4"])
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        assert store.query("SELECT count(*) FROM human_labels WHERE split IS NULL")[1][0][0] == 0
        assert store.query("SELECT heldout, seed FROM human_split")[1] == [(0.25, 4)]


def test_split_of_an_empty_store_says_what_to_do(store):
    from prefgen.errors import PrefgenError

    with pytest.raises(PrefgenError, match="import-human"):
        split_human(store, heldout=0.3)


# -- real data in ../shared ------------------------------------------------------------------------------

REAL = [
    # file, format, rows read, pairs imported, bad rows skipped, duplicates, balance first/second/tie
    ("hh-rlhf-harmless/human_small.jsonl", "hh", 500, 500, 0, 0, (500, 0, 0)),
    ("hh-rlhf-harmless/human_heldout.jsonl", "hh", 500, 499, 1, 0, (499, 0, 0)),
    ("pandalm/annotated.jsonl", "annotators", 600, 549, 4, 47, (233, 268, 48)),
    ("llmeval2/en.jsonl", "pairwise", 1451, 1255, 196, 0, (534, 500, 221)),
]


@pytest.mark.parametrize(("name", "fmt", "rows", "pairs", "skipped", "duplicates", "balance"), REAL,
                         ids=[r[0].split("/")[0] + "/" + Path(r[0]).stem for r in REAL])
def test_real_data_imports_with_expected_counts_and_balance(store, name, fmt, rows, pairs, skipped, duplicates,
                                                            balance):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not here")
    report = import_human(store, path, skip_bad=True)
    assert report.format == fmt
    assert (report.rows, report.pairs, len(report.skipped), report.duplicates) == (rows, pairs, skipped, duplicates)
    assert tuple(report.balance.values()) == balance
    assert store.query("SELECT count(*) FROM human_pair_labels")[1][0][0] == pairs


def test_real_hh_heldout_line_with_two_conversations_is_line_162():
    path = DATA / "hh-rlhf-harmless" / "human_heldout.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is not here")
    from prefgen.pipelines.humans.imports import read_human

    with pytest.raises(InputError) as failure:
        read_human(path, fmt="hh")
    assert failure.value.line == 162


def test_real_pandalm_annotators_agree_mostly():
    path = DATA / "pandalm" / "annotated.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is not here")
    from prefgen.pipelines.humans.imports import read_human

    read = read_human(path, skip_bad=True)
    majority_rows = [label for label in read.labels if label.annotator == "majority"]
    assert len(majority_rows) == 549 and len(read.labels) == 549 * 4
    assert sum(label.winner == "tie" for label in majority_rows) == 48


def test_real_pool_and_human_sets_line_up_with_pair_ids(store):
    pool = DATA / "hh-rlhf-harmless" / "pool.jsonl"
    if not pool.exists():
        pytest.skip(f"{pool} is not here")
    pool_prompts = {p.prompt_id for p in read_pairs(pool, skip_bad=True).pairs}
    import_human(store, DATA / "hh-rlhf-harmless" / "human_small.jsonl")
    import_human(store, DATA / "hh-rlhf-harmless" / "human_heldout.jsonl", skip_bad=True)
    human_prompts = {r["prompt_id"] for r in labels(store)}
    # HH prompts are stored as the same text the pool uses, so a shared prompt has one id.
    assert len(pool_prompts & human_prompts) == 1
    assert make_pair("x", "y", "z")[0].id == make_pair(" x", "z", "y ")[0].id


def test_a_long_list_of_skipped_rows_is_summarised_not_printed_whole(store, tmp_path):
    path = tmp_path / "bad.jsonl"
    rows = [{"prompt": f"q{i}", "response_a": "x", "response_b": "y", "winner": "a"} for i in range(3)]
    rows += [{"prompt": f"bad {i}", "response_a": "x", "response_b": "y", "winner": "zz"} for i in range(40)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report = import_human(store, path, fmt="pairwise", skip_bad=True)
    lines = report.lines()
    assert len(report.skipped) == 40 and len(lines) < 20
    assert "  ... and 30 more (--json lists them all)" in lines
