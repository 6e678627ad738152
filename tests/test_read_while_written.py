"""The store can be read while a label run writes it: the run holds the DuckDB file only while a batch commits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from prefgen.storage.db import Store, StoreBusy, connect
from tests.loopback_server import Behaviour
from tests.test_label_pipeline import files, label_in_flight, query, truth, write_pairs  # noqa: F401 (files: a fixture)

REPO = Path(__file__).resolve().parents[1]
PAIRS = 60
CALLS = PAIRS * 2 * 2  # 2 principles, 2 orders
# The judge answers slowly while the readers run (seconds each on 2 busy cores, tens under heavy load), then
# at full speed: 4 calls in flight at 2 s each leave the readers up to 2 minutes.
SLOW_S = 2.0
READS = {"stats": ["stats"], "agreement": ["agreement"],
         "sql": ["sql", "SELECT count(*) AS n FROM judgements", "--format", "csv"]}


def prefgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefgen.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def reader(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "prefgen.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def write_human_labels(pairs: Path, out: Path, n: int) -> Path:
    """The first n pairs with the truth as the human winner, so `agreement` has judge and human labels."""
    rows = [json.loads(line) for line in pairs.read_text(encoding="utf-8").splitlines()[:n]]
    with out.open("w", encoding="utf-8") as f:
        for row in rows:
            winner = "a" if truth(row["response_a"], row["response_b"]) == "A" else "b"
            f.write(json.dumps({**row, "winner": winner}) + "\n")
    return out


def test_stats_sql_and_agreement_work_while_label_writes_and_the_store_ends_complete(files, loopback, tmp_path):
    constitution, pairs, db = files
    write_pairs(pairs, PAIRS)
    assert prefgen("import-human", str(write_human_labels(pairs, tmp_path / "human.jsonl", 30)),
                   "--format", "pairwise", "--db", str(db)).returncode == 0
    label, _ = label_in_flight(files, loopback, pairs=PAIRS, requests=12, latency_s=SLOW_S)
    time.sleep(1.5)  # the first answers are written (at least once a second)

    counts, overlapped = [], 0
    while label.poll() is None and overlapped < 2:
        readers = {name: reader(*args, "--db", str(db)) for name, args in READS.items()}  # all three at once
        for name, proc in readers.items():
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"prefgen {name} while label runs: {err}"
            if name == "sql":
                counts.append(int(out.split()[-1]))
        overlapped += label.poll() is None  # the label run was still writing when these reads ended
    loopback.behaviour = Behaviour(truth=truth)
    out, err = label.communicate(timeout=120)

    assert label.returncode == 0, err
    assert overlapped == 2, "the label run ended before the readers could overlap it; slow the judge down"
    assert 0 < counts[0] < CALLS and counts == sorted(counts)  # each read saw the batches written so far
    assert query(db, "SELECT count(*), count(DISTINCT request_hash) FROM judgements") == [(CALLS, CALLS)]
    assert query(db, "SELECT count(*) FROM preferences WHERE drop_reason = 'pending'") == [(0,)]
    assert query(db, "SELECT status, n_calls_sent FROM runs") == [("finished", CALLS)]
    assert loopback.request_count == CALLS  # nothing was asked twice


def test_a_second_label_run_on_the_same_store_is_refused_while_the_first_runs(files, loopback):
    constitution, pairs, db = files
    first, command = label_in_flight(files, loopback, pairs=PAIRS, requests=8, latency_s=SLOW_S)
    second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    still_running = first.poll() is None
    loopback.behaviour = Behaviour(truth=truth)
    out, err = first.communicate(timeout=120)
    assert still_running
    assert second.returncode != 0 and "another `prefgen label` is writing this store" in second.stderr
    assert first.returncode == 0, err
    assert query(db, "SELECT status FROM runs") == [("finished",)]  # not marked killed by the refused run


def test_an_open_waits_for_a_short_hold_and_names_the_holder_of_a_long_one(tmp_path):
    db = tmp_path / "s.duckdb"
    Store(db).close()
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(float(sys.argv[2]))", str(db), "1.0"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    with Store(db, read_only=True) as store:  # waits out the one-second hold
        assert store.query("SELECT count(*) FROM _migrations")[1][0][0] > 0
    assert time.monotonic() - started >= 0.3
    holder.wait(10)

    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(30)", str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusy, match=rf"process {holder.pid} .* has held the store for the last 0.5 s"):
            connect(db, read_only=True, wait_s=0.5)
    finally:
        holder.kill()
        holder.wait(10)
    assert isinstance(connect(db, read_only=True, wait_s=5), duckdb.DuckDBPyConnection)


def test_the_store_can_be_read_while_train_trains_and_the_run_ends_recorded(tmp_path):
    from click.testing import CliRunner

    from prefgen.cli import cli
    from tests.test_reward_pipeline import human_file

    db, out = tmp_path / "t.duckdb", tmp_path / "rm"
    for args in (["import-human", str(human_file(tmp_path / "h.jsonl")), "--format", "pairwise"],
                 ["split", "--heldout", "0.3", "--seed", "1"], ["mix", "--name", "m", "--human-ratio", "1.0"]):
        result = CliRunner().invoke(cli, [*args, "--db", str(db)])
        assert result.exit_code == 0, result.output
    trainer = subprocess.Popen(
        [sys.executable, "-m", "prefgen.cli", "train", "--db", str(db), "--mix", "m", "--out", str(out),
         "--max-length", "64", "--epochs", "400", "--base", "minilm", "--weight-decay", "0.01"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PREFGEN_CACHE_DIR": "off"})
    seen = set()
    try:
        while trainer.poll() is None:
            try:
                con = connect(db, read_only=True, wait_s=0)
            except StoreBusy:  # the trainer holds the file while it reads the mix and records the run
                time.sleep(0.1)
                continue
            try:
                seen |= {status for (status,) in con.execute("SELECT status FROM rm_runs").fetchall()}
            finally:
                con.close()
            time.sleep(0.1)
        stdout, stderr = trainer.communicate(timeout=60)
    finally:
        trainer.kill()
    assert trainer.returncode == 0, stderr
    assert "running" in seen  # read while the model trained
    with Store(db, read_only=True) as store:
        assert store.query("SELECT status FROM rm_runs")[1] == [("finished",)]
