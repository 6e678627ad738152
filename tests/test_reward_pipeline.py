"""The reward-model stages over the store: train on a mix, evaluate on held-out humans, score a file."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.train.common import pick_device
from tests import chromium

pytestmark = pytest.mark.slow

POLITE = ["Happy to help: here is a clear answer.", "Of course, thank you for asking.",
          "Good question, here is what I know.", "Sure, let me explain step by step."]
RUDE = ["Figure it out yourself.", "That is a stupid question.", "Go away.", "Not my problem."]


def human_file(path, n=24):
    rows = []
    for i in range(n):
        good, bad = POLITE[i % 4] + f" ({i})", RUDE[i % 4] + f" ({i})"
        first_good = i % 2 == 0
        rows.append({"prompt": f"question number {i}?", "response_a": good if first_good else bad,
                     "response_b": bad if first_good else good, "winner": "a" if first_good else "b"})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rm")
    db, out = tmp / "db.duckdb", tmp / "rm"
    runner = CliRunner()
    for args in (["import-human", str(human_file(tmp / "h.jsonl")), "--format", "pairwise"],
                 ["split", "--heldout", "0.3", "--seed", "1"],
                 ["mix", "--name", "m", "--human-ratio", "1.0"],
                 ["train", "--mix", "m", "--out", str(out), "--max-steps", "6", "--batch-size", "4",
                  "--max-length", "64", "--base", "minilm"]):
        result = runner.invoke(cli, [*args, "--db", str(db)])
        assert result.exit_code == 0, result.output
    return db, out, tmp


def test_training_a_mix_records_the_run_and_writes_a_loadable_model_with_a_card(trained):
    db, out, _ = trained
    con = duckdb.connect(str(db), read_only=True)
    row = con.execute("SELECT status, mix_name, n_train, device, checkpoint_path FROM rm_runs").fetchall()
    con.close()
    assert row == [("finished", "m", row[0][2], pick_device().device, str(out.resolve()))] and row[0][2] > 10
    card = (out / "README.md").read_text()
    assert "AutoModelForSequenceClassification" in card and "human" in card
    assert (out / "config.json").is_file() and (out / "prefgen_train.json").is_file()


def test_eval_stores_metrics_and_writes_the_html_report(trained):
    db, out, _ = trained
    result = CliRunner().invoke(cli, ["eval", "--model", str(out), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "agreement with held-out humans" in result.output
    con = duckdb.connect(str(db), read_only=True)
    metrics = dict(con.execute("SELECT metric, value FROM rm_evals WHERE split = 'heldout'").fetchall())
    run_ids = con.execute("SELECT DISTINCT e.run_id = r.run_id FROM rm_evals e, rm_runs r").fetchall()
    con.close()
    assert 0.0 <= metrics["accuracy"] <= 1.0 and "calibration.ece" in metrics
    assert run_ids == [(True,)]
    pages = list((out / "evals").glob("*/eval.html"))
    assert len(pages) == 1 and f"full report: {pages[0]}" in " ".join(result.output.split())
    html = pages[0].read_text()
    assert "<img" in html and "agreement with humans" in html
    assert "Evaluation" in (out / "README.md").read_text()
    assert "calibration.ece" not in result.output and "expected calibration error" in result.output


def test_each_eval_keeps_its_own_folder_and_the_card_lists_them_newest_first(trained, tmp_path):
    db, out, _ = trained
    runner = CliRunner()
    first = runner.invoke(cli, ["eval", "--model", str(out), "--db", str(db), "--out", str(tmp_path / "first")])
    second = runner.invoke(cli, ["eval", "--model", str(out), "--db", str(db), "--no-progress"])
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert (tmp_path / "first" / "eval.html").is_file() and (tmp_path / "first" / "eval.json").is_file()
    history = json.loads((out / "prefgen_evals.json").read_text())
    assert history[1]["html"] == str((tmp_path / "first" / "eval.html").resolve())
    assert all(Path(e["html"]).is_file() for e in history)  # nothing overwritten
    card = (out / "README.md").read_text()
    listed = card[card.index("Every evaluation (newest first)"):]
    newest = Path(history[0]["html"]).relative_to(out.resolve()).as_posix()
    assert listed.index(newest) < listed.index(str(tmp_path / "first" / "eval.html"))


def test_eval_page_gives_model_training_data_and_eval_set_context_and_import_sources(trained, tmp_path):
    db, out, _ = trained
    result = CliRunner().invoke(cli, ["eval", "--model", str(out), "--db", str(db), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "eval.html").read_text()
    for heading in ("<h2>Model</h2>", "<h2>Training data</h2>", "<h2>Evaluation set</h2>",
                    "Agreement per import source of the human labels"):
        assert heading in page, heading
    assert "<td>h</td>" in page and "<td>human</td>" not in page  # the import (h.jsonl), not 'human'
    assert "mix" in page and str(db) in page
    context = json.loads((tmp_path / "eval.json").read_text())["context"]
    held_out = context["evaluation set"]["pairs"]
    assert context["training data"]["mix"] == "m" and context["evaluation set"]["import sources"] == {"h": held_out}
    rendered = chromium.render(tmp_path / "eval.html", "eval.png")
    assert rendered.console_errors == [] and len(rendered.images) == 3
    assert all(i["complete"] and i["naturalWidth"] > 0 for i in rendered.images)


def test_score_writes_rewards_next_to_the_input(trained):
    _, out, tmp = trained
    candidates = tmp / "candidates.jsonl"
    candidates.write_text(json.dumps({"prompt": "help?", "responses": ["Go away.", "Happy to help, here you go."]})
                          + "\n" + json.dumps({"prompt": "hi", "response_a": "Hello, glad to help.",
                                               "response_b": "Not my problem."}) + "\n")
    result = CliRunner().invoke(cli, ["score", "--model", str(out), "--responses", str(candidates)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp / "candidates.scored.jsonl").read_text().splitlines()]
    assert len(rows[0]["rewards"]) == 2 and rows[0]["best"] in (0, 1)
    assert {"reward_a", "reward_b", "preferred"} <= set(rows[1])


def test_scoring_reports_its_progress_batch_by_batch_with_the_same_metrics(trained, tmp_path):
    from prefgen.train.evaluate import evaluate_model

    _, out, _ = trained
    rows = [{"prompt": f"question {i}?", "chosen": POLITE[i % 4], "rejected": RUDE[i % 4]} for i in range(20)]
    seen = []
    watched = evaluate_model(out, rows, tmp_path / "watched", batch_size=2, plots=False,
                             on_progress=lambda done, total: seen.append((done, total)))
    plain = evaluate_model(out, rows, tmp_path / "plain", batch_size=2, plots=False)
    # 20 pairs are 40 responses in batches of 2: a report after each batch, never stuck at 0 while scoring.
    assert seen[0] == (0, 20) and seen[-1] == (20, 20) and len(seen) == 21
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert watched.r_chosen == pytest.approx(plain.r_chosen, abs=1e-6)
    assert watched.metrics["accuracy"] == plain.metrics["accuracy"]
