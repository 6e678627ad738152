"""Data-parallel training under accelerate: 2 CPU processes (gloo) train the same TRL stage as one process."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.storage.db import Store
from prefgen.storage.export import mix_rows_for_training
from tests.test_reward_pipeline import human_file

pytestmark = pytest.mark.slow

# One global batch of 8 either way: 8 rows in one process, or 4 in each of two.
TRAIN = ["--method", "full", "--max-steps", "8", "--max-length", "64", "--lr", "2e-4", "--seed", "0"]


def test_two_processes_train_a_model_that_scores_like_one_process_and_rm_runs_records_the_world_size(tmp_path):
    from prefgen.train.score import load_reward_model, score_pairs

    db = tmp_path / "db.duckdb"
    runner = CliRunner()
    for args in (["import-human", str(human_file(tmp_path / "h.jsonl", n=32)), "--format", "pairwise"],
                 ["split", "--heldout", "0.25", "--seed", "1"],
                 ["mix", "--name", "m", "--human-ratio", "1.0"],
                 ["train", "--mix", "m", "--out", str(tmp_path / "one"), "--batch-size", "8", *TRAIN],
                 ["train", "--mix", "m", "--out", str(tmp_path / "two"), "--batch-size", "4", "--processes", "2",
                  *TRAIN]):
        result = runner.invoke(cli, [*args, "--db", str(db)])
        assert result.exit_code == 0, result.output

    con = duckdb.connect(str(db), read_only=True)
    runs = dict(con.execute("SELECT checkpoint_path, world_size FROM rm_runs WHERE status = 'finished'").fetchall())
    con.close()
    assert runs == {str((tmp_path / "one").resolve()): 1, str((tmp_path / "two").resolve()): 2}

    with Store(db, read_only=True) as store:
        rows = mix_rows_for_training(store, "m")
    margins = {}
    for name in ("one", "two"):
        chosen, rejected = score_pairs(load_reward_model(tmp_path / name), rows)
        margins[name] = np.asarray(chosen.mean) - np.asarray(rejected.mean)
    # Both learnt the task and agree on the pairs; the margins are of one size (not identical: the rows of a
    # global batch are split between the processes and their gradients averaged in another order).
    assert (margins["one"] > 0).mean() >= 0.9 and (margins["two"] > 0).mean() >= 0.9
    assert ((margins["one"] > 0) == (margins["two"] > 0)).mean() >= 0.9
    assert 0.5 <= margins["two"].mean() / margins["one"].mean() <= 2.0
