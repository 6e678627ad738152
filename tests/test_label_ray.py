"""`label --engine ray` on a local Ray instance (2 CPUs) against the loopback judge: the store it builds equals
the single-process store, a worker killed mid-run loses nothing and costs no second request for anything it had
written, and --max-cost holds across workers."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray

from prefgen.constitution import load_constitution
from prefgen.pipelines.labelling import run_label
from prefgen.pipelines.labelling.job import build_client
from prefgen.storage.shards import shard_paths
from tests.loopback_server import Behaviour
from tests.test_label_pipeline import truth, write_pairs
from tests.test_scale import label_config, stored

pytestmark = pytest.mark.slow  # a Ray instance and its workers take seconds to start on 2 cores


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def worker_pids() -> list[int]:
    """The processes of the Ray Data workers that judge (Ray names them in their command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"ShardJudge" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def sharded_hashes(directory: Path) -> set[str]:
    return {h for path in shard_paths(directory)
            for h in pq.read_table(path, columns=["request_hash"]).column(0).to_pylist()}


class KillOneWorker(threading.Thread):
    """Once a few shards are written, SIGKILLs one worker, then notes what the shards held at that moment and
    how many requests the server had received by then: none of those answers may be asked for again."""

    def __init__(self, shards: Path, server) -> None:
        super().__init__(daemon=True)
        self.shards, self.server = shards, server
        self.killed: int | None = None
        self.flushed: set[str] = set()
        self.requests_before = 0

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.killed is None:
            pids = worker_pids()
            if len(shard_paths(self.shards)) >= 3 and pids:
                os.kill(pids[0], signal.SIGKILL)
                self.killed = pids[0]
                self.flushed = sharded_hashes(self.shards)
                self.requests_before = self.server.request_count
            time.sleep(0.05)


def test_ray_store_equals_single_process_store_and_a_killed_worker_loses_and_repeats_nothing(
        tmp_path, loopback, ray_instance):
    loopback.behaviour = Behaviour(truth=truth)
    reference = run_label(label_config(tmp_path, "one.duckdb", loopback.openai_base, n=300))
    assert reference.calls_sent == 1200

    loopback.reset(Behaviour(truth=truth, latency_s=0.02))
    shards = tmp_path / "shards"
    config = label_config(tmp_path, "ray.duckdb", loopback.openai_base, engine="ray", workers=2, concurrency=4,
                          chunk_pairs=40, write_batch=20, shards=shards)
    killer = KillOneWorker(shards, loopback)
    killer.start()
    first = run_label(config)  # Ray restarts the killed worker and retries its chunk
    killer.join()
    assert killer.killed is not None and killer.flushed
    assert first.status == "finished"

    client, _ = build_client(config, load_constitution(config.constitution))
    asked_after_kill = [client.request_hash(r.body["messages"]) for r in loopback.requests[killer.requests_before:]]
    assert not killer.flushed & set(asked_after_kill), "an answer written to a shard was asked for again"
    asked = [client.request_hash(r.body["messages"]) for r in loopback.requests]
    assert set(asked) == set(stored(tmp_path / "one.duckdb")[0])  # the request hashes are the store's keys
    assert stored(tmp_path / "ray.duckdb") == stored(tmp_path / "one.duckdb")
    assert not shard_paths(shards)  # merged, then removed

    again = run_label(config)
    assert (again.calls_sent, again.calls_cached, again.status) == (0, 1200, "finished")
    assert stored(tmp_path / "ray.duckdb") == stored(tmp_path / "one.duckdb")


def test_max_cost_holds_across_ray_workers(tmp_path, loopback, ray_instance):
    loopback.behaviour = Behaviour(truth=truth)
    config = label_config(tmp_path, "ray.duckdb", loopback.openai_base, n=60, engine="ray", workers=2,
                          chunk_pairs=10, price_in=1000.0, price_out=1000.0, max_cost=2.0)
    summary = run_label(config)
    assert summary.status == "budget_stopped"
    assert 0 < summary.cost <= 2.0
    assert summary.calls_sent < 240
    assert loopback.request_count == summary.calls_sent


def test_a_pair_repeated_in_other_chunks_is_asked_once_as_in_one_process(tmp_path, loopback, ray_instance):
    pairs = tmp_path / "pairs.jsonl"
    lines = write_pairs(pairs, 30).read_text(encoding="utf-8").splitlines()
    # The first 15 pairs again, every other one with its responses swapped (the same canonical pair), so that
    # each chunk of 10 rows shares pairs with another chunk.
    repeats = []
    for line in lines[:15]:
        row = json.loads(line)
        if len(repeats) % 2:
            row["response_a"], row["response_b"] = row["response_b"], row["response_a"]
        repeats.append(json.dumps(row))
    pairs.write_text("\n".join(lines[:20] + repeats + lines[20:]) + "\n", encoding="utf-8")

    loopback.behaviour = Behaviour(truth=truth)
    one = run_label(label_config(tmp_path, "one.duckdb", loopback.openai_base))
    assert (one.calls_sent, one.duplicates) == (120, 15)

    loopback.reset(Behaviour(truth=truth))
    config = label_config(tmp_path, "ray.duckdb", loopback.openai_base, engine="ray", workers=2, chunk_pairs=10)
    ray_run = run_label(config)
    client, _ = build_client(config, load_constitution(config.constitution))
    asked = [client.request_hash(r.body["messages"]) for r in loopback.requests]
    assert len(asked) == len(set(asked)) == ray_run.calls_sent == 120
    assert stored(tmp_path / "ray.duckdb") == stored(tmp_path / "one.duckdb")


def test_a_ray_run_beside_a_live_local_run_is_refused_and_neither_marks_the_other_interrupted(
        tmp_path, loopback, ray_instance):
    """Both engines go through one run lifecycle, which holds the store's run lock before it touches the run
    rows: a second run of either engine is refused, and the live run finishes as `finished`."""
    from prefgen.errors import PrefgenError
    from tests.test_label_pipeline import CONSTITUTION, label_in_flight

    constitution = tmp_path / "c.yaml"
    constitution.write_text(CONSTITUTION, encoding="utf-8")
    files = (constitution, tmp_path / "pairs.jsonl", tmp_path / "out.duckdb")
    local, _ = label_in_flight(files, loopback, pairs=60, requests=20, latency_s=0.05)
    try:
        with pytest.raises(PrefgenError, match="another `prefgen label` is writing this store"):
            run_label(label_config(tmp_path, "out.duckdb", loopback.openai_base, engine="ray", workers=1))
    finally:
        out, err = local.communicate(timeout=120)
    assert local.returncode == 0, err
    statuses = [row[1] for row in stored_runs(tmp_path / "out.duckdb")]
    assert statuses == ["finished"]

    # And the other way round: a local run beside a live Ray run is refused the same way.
    loopback.behaviour = Behaviour(truth=truth, latency_s=0.2)
    ray_config = label_config(tmp_path, "ray.duckdb", loopback.openai_base, engine="ray", workers=1, concurrency=2)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(summary=run_label(ray_config)), daemon=True)
    requests_before = loopback.request_count
    worker.start()
    deadline = time.monotonic() + 120
    while loopback.request_count < requests_before + 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(PrefgenError, match="another `prefgen label` is writing this store"):
        run_label(label_config(tmp_path, "ray.duckdb", loopback.openai_base))
    worker.join(timeout=300)
    assert result["summary"].status == "finished"
    assert [row[1] for row in stored_runs(tmp_path / "ray.duckdb")] == ["finished"]


def stored_runs(db: Path) -> list[tuple]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT run_id, status FROM runs ORDER BY started_at").fetchall()
    finally:
        con.close()
