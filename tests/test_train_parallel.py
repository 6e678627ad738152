"""Data-parallel training under accelerate: 2 CPU processes (gloo) train the same TRL stage as one process."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.storage.db import Store
from prefgen.storage.export import mix_rows_for_training
from tests.test_reward_pipeline import human_file

# --batch-size is the whole step's: 8 rows in one process, or 4 in each of two.
TRAIN = ["--method", "full", "--max-steps", "8", "--max-length", "64", "--lr", "2e-4", "--seed", "0",
         "--batch-size", "8"]


def test_two_processes_take_the_very_length_grouped_batches_of_one_process_every_epoch():
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler

    from prefgen.train.trainer import length_grouped_sampler_class

    lengths = [(i * 37) % 300 + 5 for i in range(101)]
    one = length_grouped_sampler_class()(lengths, step_pairs=8, seed=3)
    two = length_grouped_sampler_class()(lengths, step_pairs=8, seed=3)
    shards = [BatchSamplerShard(BatchSampler(two, 4, drop_last=False), num_processes=2, process_index=i)
              for i in range(2)]
    previous = None
    for epoch in range(3):  # transformers sets the epoch of the sampler before each
        one.set_epoch(epoch)
        two.set_epoch(epoch)
        steps = list(BatchSampler(one, 8, drop_last=False))
        shared = [a + b for a, b in zip(*(list(shard) for shard in shards), strict=True)]
        assert [sorted(s) for s in shared[:-1]] == [sorted(s) for s in steps[:-1]]
        assert set(shared[-1]) >= set(steps[-1])  # the short last step is filled up from the start by accelerate
        if epoch:
            assert steps != previous  # reshuffled every epoch
        previous = steps


def test_batch_size_is_the_steps_and_each_of_n_processes_takes_an_equal_share(tmp_path):
    from prefgen.errors import PrefgenError
    from prefgen.train.common import pick_device
    from prefgen.train.config import TrainConfig
    from prefgen.train.trainer import reward_config

    config = TrainConfig(out_dir=tmp_path, method="full", batch_size=8)
    assert reward_config(config, pick_device(), "[SEP]").per_device_train_batch_size == 8
    assert reward_config(config, pick_device(), "[SEP]", processes=2).per_device_train_batch_size == 4
    with pytest.raises(PrefgenError, match="--batch-size 8 does not split evenly over 3 processes"):
        reward_config(config, pick_device(), "[SEP]", processes=3)
    result = CliRunner().invoke(cli, ["train", "--db", str(tmp_path / "db.duckdb"), "--mix", "m", "--out",
                                      str(tmp_path / "rm"), "--batch-size", "8", "--processes", "3"])
    assert result.exit_code != 0 and "does not split evenly over 3 processes" in result.output


@pytest.mark.slow
def test_two_processes_train_a_model_that_scores_like_one_process_and_rm_runs_records_the_world_size(tmp_path):
    from prefgen.train.score import load_reward_model, score_pairs

    db = tmp_path / "db.duckdb"
    runner = CliRunner()
    for args in (["import-human", str(human_file(tmp_path / "h.jsonl", n=32)), "--format", "pairwise"],
                 ["split", "--heldout", "0.25", "--seed", "1"],
                 ["mix", "--name", "m", "--human-ratio", "1.0"],
                 ["train", "--mix", "m", "--out", str(tmp_path / "one"), *TRAIN],
                 ["train", "--mix", "m", "--out", str(tmp_path / "two"), "--processes", "2", *TRAIN]):
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
    records = {name: json.loads((tmp_path / name / "prefgen_train.json").read_text()) for name in ("one", "two")}
    assert [(r["steps"], r["world_size"], r["per_device_batch_size"]) for r in records.values()] == [(8, 1, 8),
                                                                                                      (8, 2, 4)]
    # The same regime on the same batches: both learnt the task, agree on the pairs and their margins are of
    # one size (not identical: each process draws its own dropout masks, and the gradients are averaged in
    # another order).
    assert (margins["one"] > 0).mean() >= 0.9 and (margins["two"] > 0).mean() >= 0.9
    assert ((margins["one"] > 0) == (margins["two"] > 0)).mean() >= 0.9
    assert 0.8 <= margins["two"].mean() / margins["one"].mean() <= 1.25
