"""SIGTERM and SIGHUP end a command as Ctrl-C does, and no schema change or paid answer lives only in a WAL.

`timeout`, systemd, Kubernetes and Slurm stop a process with SIGTERM; a closed ssh session sends SIGHUP. A
label run they end stops sending, finishes the calls in flight, writes every answer, checkpoints and exits
143 / 129 with the line that says how to resume; an import they end keeps nothing half-written. A WAL that
DuckDB cannot replay is moved aside (never deleted) by a writer, and refused with instructions by a reader.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.errors import PrefgenError
from prefgen.storage.db import Store
from tests.loopback_server import Behaviour
from tests.test_label_pipeline import REPO, files, label_command, query, truth, write_pairs  # noqa: F401

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def wal(db: Path) -> Path:
    return Path(f"{db}.wal")


def start_label(files, loopback, *, latency_s: float = 0.05, requests: int = 40, **popen) -> tuple:
    write_pairs(files[1], 60)  # 240 calls
    loopback.behaviour = Behaviour(truth=truth, latency_s=latency_s)
    command = label_command(files, loopback)
    proc = subprocess.Popen(command, cwd=REPO, env=ENV, **popen)
    deadline = time.monotonic() + 60
    while loopback.request_count < requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be signalled"
    return proc, command


def assert_resumes_asking_only_the_rest(command, loopback, db: Path) -> None:
    stored = query(db, "SELECT count(*) FROM judgements")[0][0]
    sent = loopback.request_count
    assert stored == sent  # every answer the stopped run got was written: none is asked (or paid for) twice
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert loopback.request_count - sent == 240 - stored
    assert query(db, "SELECT count(*), count(DISTINCT (pair_id, principle_id, ordering)) FROM judgements") == [
        (240, 240)]


def test_a_new_store_keeps_no_schema_change_in_its_wal(tmp_path):
    db = tmp_path / "new.duckdb"
    with Store(db):  # open: a process killed now must leave a file DuckDB 1.4 / 1.5 could open too
        assert not wal(db).exists() or wal(db).stat().st_size == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == ["new.duckdb"]  # built aside, linked in whole


def test_a_writer_that_drops_a_macro_checkpoints_the_change(tmp_path):
    db = tmp_path / "s.duckdb"
    Store(db).close()
    con = duckdb.connect(str(db))
    con.execute("CREATE MACRO lower(x) AS 'forged'")
    con.close()
    with Store(db):
        assert not wal(db).exists() or wal(db).stat().st_size == 0


def test_sigterm_ends_a_label_run_like_ctrl_c_and_the_same_command_resumes(files, loopback):
    db = files[2]
    proc, command = start_label(files, loopback, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Stopped by SIGTERM; everything answered is stored. Run the same command to resume." in " ".join(
        out.split())
    assert "Traceback" not in err
    assert query(db, "SELECT status FROM runs") == [("interrupted",)]
    assert not wal(db).exists() or wal(db).stat().st_size == 0  # written and checkpointed before the exit
    assert_resumes_asking_only_the_rest(command, loopback, db)


def test_a_second_sigterm_stops_at_once_and_still_writes_what_was_answered(files, loopback):
    db = files[2]
    # Slow answers: the calls in flight when the first SIGTERM comes would take seconds to finish.
    proc, command = start_label(files, loopback, latency_s=0.5, requests=20, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM; everything written is kept" in err and "Traceback" not in err
    answered = query(db, "SELECT count(*) FROM judgements")[0][0]
    assert 0 < answered <= loopback.request_count


def test_sighup_from_a_hung_up_terminal_ends_a_label_run_like_ctrl_c(files, loopback):
    """The ssh session closed: the run's terminal is gone (writing to it fails) and SIGHUP arrives."""
    db = files[2]
    terminal, run_side = pty.openpty()
    proc, command = start_label(files, loopback, stdout=run_side, stderr=run_side)
    os.close(run_side)
    os.close(terminal)  # hang up: the run's stdout and stderr now fail with EIO
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=60) == 129
    assert query(db, "SELECT status FROM runs") == [("interrupted",)]
    assert_resumes_asking_only_the_rest(command, loopback, db)


def test_sigterm_ends_an_import_with_nothing_half_written(tmp_path):
    db = tmp_path / "h.duckdb"
    rows = tmp_path / "human.jsonl"
    with rows.open("w", encoding="utf-8") as f:
        for i in range(60_000):  # an import of several seconds
            f.write(f'{{"prompt": "q{i}", "response_a": "a{i}", "response_b": "b{i}", "winner": "a"}}\n')
    command = [sys.executable, "-m", "prefgen.cli", "import-human", str(rows), "--db", str(db), "--format", "pairwise"]
    proc = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not db.exists() and time.monotonic() < deadline:  # the store is created before the rows are read
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM; everything written is kept. Run the same command to resume." in err
    assert query(db, "SELECT count(*) FROM human_labels") == [(0,)]  # one transaction: all of the import or none
    assert CliRunner().invoke(cli, ["stats", "--db", str(db)]).exit_code == 0
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert query(db, "SELECT count(*) FROM human_labels WHERE annotator = 'label'") == [(60_000,)]


def unreplayable_wal(tmp_path) -> Path:
    """A store whose WAL holds a write DuckDB refuses to replay (a damaged entry)."""
    db = tmp_path / "s.duckdb"
    Store(db).close()
    con = duckdb.connect(str(db))
    con.execute("PRAGMA disable_checkpoint_on_shutdown")
    con.execute("INSERT INTO human_split VALUES (1, 0.2, 7, now())")
    con.close()
    data = bytearray(wal(db).read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    wal(db).write_bytes(bytes(data))
    return db


def test_a_wal_that_cannot_be_replayed_is_moved_aside_and_the_store_opens(tmp_path, caplog):
    db = unreplayable_wal(tmp_path)
    held = wal(db).read_bytes()
    with Store(db) as store:
        assert store.query("SELECT count(*) FROM human_split")[1] == [(0,)]  # as of the last checkpoint
    aside = list(tmp_path.glob("s.duckdb.wal.unreplayable-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == held  # moved, never deleted
    message = " ".join(caplog.text.split())
    assert f"It was moved to {aside[0]} and the store opened without it" in message
    assert f"put {aside[0]} back as {wal(db)}" in message and "CHECKPOINT" in message


def test_a_reader_refuses_a_store_whose_wal_cannot_be_replayed_and_changes_nothing(tmp_path):
    db = unreplayable_wal(tmp_path)
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir())
    result = CliRunner().invoke(cli, ["stats", "--db", str(db)])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "cannot be replayed" in result.output and "nothing was changed" in result.output
    assert "Move" in result.output and "aside (never delete it)" in result.output
    assert sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir()) == before
    with pytest.raises(PrefgenError, match="cannot be replayed"):
        Store(db, read_only=True)
