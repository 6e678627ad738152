"""`prefgen label --engine ray`: the same judging, fanned out over Ray workers that write Parquet shards.

The driver validates the input (nothing is written for bad input), merges shards an earlier killed run left,
records the run, and closes the store. The pairs are then read as a Ray Dataset and `map_batches` hands each
chunk of `--chunk-pairs` rows to a `ShardJudge` actor (`--workers` of them): it plans the chunk with the
single-process code (`LabelRun`), leaves out the pairs the input repeats in another chunk that claimed them first
(`Claims`: a repeated pair is asked once, as in one process), skips what the store (opened read-only) or the
chunk's own shards answered already, sends the rest with `--concurrency` calls in flight, and writes each flush as a Parquet shard. Ray
restarts a killed worker and retries its chunk, which then skips what the dead worker flushed. At the end the
driver merges the shards (`ingest_shards`, by request hash) and derives the preferences with `LabelRun`, exactly
as a single-process run does. `--max-cost` holds across workers: each leases slices of the job's budget from
one small `Ledger` actor, which also gathers the counts the progress bar shows.

On a cluster, the store, the shards directory and the input must be on storage every node sees.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import orjson

from prefgen.constitution import Constitution
from prefgen.errors import PrefgenError
from prefgen.hashing import content_hash
from prefgen.pipelines.configs import LabelConfig
from prefgen.pipelines.labelling.inputs import PairsRead, Row, SeenIds, pair_from_row, read_rows
from prefgen.pipelines.labelling.job import LabelJob, build_client
from prefgen.pipelines.labelling.progress import LabelProgress
from prefgen.pipelines.labelling.run import LabelSummary, RunCounts, RunLifecycle, label_summary
from prefgen.pipelines.labelling.sender import Budget, LabelRun
from prefgen.records import Answer, Judgement, Pair
from prefgen.storage import batches as batches_sql
from prefgen.storage import labels as labels_sql
from prefgen.storage.db import Store
from prefgen.storage.shards import IngestCount, ingest_shards, remove_shards, shard_paths, sharded_answers, write_shard

# Each worker mostly waits on the network: half a CPU each leaves room for Ray Data's read tasks on a small node.
WORKER_CPUS = 0.5
# A worker leases budget in slices of this share of the job's limit, so that the ledger is asked rarely.
LEASE_SHARE = 0.02


class Ledger:
    """The job's budget and counts, shared by every worker (a Ray actor with no CPU of its own)."""

    def __init__(self, limit: float | None, already: float) -> None:
        self.room = None if limit is None else limit - already
        self.sent = 0
        self.cached = 0
        self.spent = 0.0

    def lease(self, want: float, need: float) -> float:
        """Up to `want` of the budget, or nothing when less than `need` is left."""
        if self.room is None:
            return want
        if self.room < need:
            return 0.0
        granted = min(want, self.room)
        self.room -= granted
        return granted

    def give_back(self, unused: float) -> None:
        if self.room is not None:
            self.room += unused

    def report(self, sent: int, spent: float, cached: int = 0) -> None:
        self.sent += sent
        self.spent += spent
        self.cached += cached

    def totals(self) -> tuple[int, float, int]:
        return self.sent, self.spent, self.cached


class Claims:
    """Which chunk asks the pairs that the input holds more than once (a Ray actor with no CPU of its own).

    The single-process run asks a repeated pair once, at its first occurrence. Ray Data cuts the input into
    chunks without line numbers, so the occurrences of a pair may fall in chunks judged at the same time: the
    first chunk to claim the pair asks it, and the others leave it out (its answers reach the store from the
    owner's shards, where the preferences of every pair are derived). A retried chunk (its worker was killed)
    has the same key and keeps its claims. Only the repeated pairs, which the driver's first pass found, are
    held here."""

    def __init__(self) -> None:
        self.owner: dict[str, str] = {}

    def claim(self, chunk: str, pair_ids: list[str]) -> list[str]:
        """The ids of `pair_ids` that `chunk` asks: unclaimed until now, or claimed by it before."""
        return [pair_id for pair_id in pair_ids if self.owner.setdefault(pair_id, chunk) == chunk]


class LeasedBudget(Budget):
    """A worker's part of the job's budget: it reserves from slices leased from the `Ledger` and gives back
    what it did not spend. The slices never add up past the limit, so neither can the workers' spend."""

    def __init__(self, ledger: Any, limit: float | None) -> None:
        super().__init__(limit)
        self.ledger = ledger
        self.leased = 0.0

    def reserve(self, bound: float) -> bool:
        if self.limit is None:
            self.reserved += bound
            return True
        need = self.spent + self.reserved + bound - self.leased
        if need > 0:
            import ray

            granted = ray.get(self.ledger.lease.remote(max(need, self.limit * LEASE_SHARE), need))
            self.leased += granted
            if granted < need:
                self.exhausted = True
                return False
        self.reserved += bound
        return True

    def give_back(self) -> None:
        unused = self.leased - self.spent - self.reserved
        if self.limit is not None and unused > 0:
            self.ledger.give_back.remote(unused)
            self.leased -= unused


class ShardJudge:
    """A Ray Data worker: judges the chunks of pairs it is handed and writes their answers as shards."""

    def __init__(self, config: LabelConfig, constitution: Constitution, job_id: str, mode: str, run_id: str,
                 shards: str, ledger: Any, claims: Any, repeated: frozenset[str]) -> None:
        self.config = config
        self.claims = claims
        self.repeated = repeated  # ids of the pairs the input holds more than once
        self.job_id = job_id
        self.run_id = run_id
        self.shards = Path(shards)
        self.ledger = ledger
        self.loop = asyncio.new_event_loop()
        client, spec_text = build_client(config, constitution)  # a client of its own: sessions do not pickle
        self.job = LabelJob(config, constitution, client, spec_text, mode, job_id)
        self.client = client
        self.source = Path(config.pairs).name

    def __call__(self, batch: Any) -> dict[str, list]:
        pairs = self._pairs(batch.to_pylist())
        key = content_hash(["shard-chunk", self.job_id, [p.id for p in pairs]], length=24)
        pairs = self._owned(key, pairs)
        reported = {"sent": 0, "spent": 0.0}

        def write(rows: list[Judgement], progress: tuple[str, int, float]) -> None:
            write_shard(self.shards, key, rows)
            _, sent, spent = progress
            self.ledger.report.remote(sent - reported["sent"], spent - reported["spent"])
            reported.update(sent=sent, spent=spent)

        budget = LeasedBudget(self.ledger, self.config.max_cost)
        run = LabelRun(self.job, None, self.run_id, budget=budget, write=write)
        run.plan(pairs)
        todo = run.tasks_to_send(self._known(run, key))
        self.ledger.report.remote(0, 0.0, run.counts.cached)
        status = self.loop.run_until_complete(run.send_all(todo)) if todo else "finished"
        budget.give_back()
        run.counts.spent = budget.spent
        return {**{name: [value] for name, value in run.counts.as_dict().items()}, "status": [status]}

    def _pairs(self, rows: list[dict[str, Any]]) -> list[Pair]:
        """The chunk's valid pairs, de-duplicated within it (the driver reported the invalid rows already)."""
        pairs, seen = [], SeenIds()
        for data in rows:
            if set(data) == {"text"}:  # a JSON Lines input read as lines of text
                if not data["text"].strip():
                    continue
                data = orjson.loads(data["text"])
            try:
                pair = pair_from_row(Row(0, data), self.config.pairs, self.source)
            except PrefgenError:
                continue
            if seen.add(pair.id):
                pairs.append(pair)
        return pairs

    def _owned(self, key: str, pairs: list[Pair]) -> list[Pair]:
        """The chunk's pairs less the repeated ones that another chunk claimed first."""
        repeated = [p.id for p in pairs if p.id in self.repeated]
        if not repeated:
            return pairs
        import ray

        others = set(repeated) - set(ray.get(self.claims.claim.remote(key, repeated)))
        return [p for p in pairs if p.id not in others]

    def _known(self, run: LabelRun, key: str) -> dict[str, Answer]:
        """Answers the store holds (opened read-only: the driver has closed it) or the chunk's shards hold."""
        with Store(self.config.db, read_only=True) as store:
            known = labels_sql.stored_answers(store, [t.request_hash for t in run.tasks])
        return known | sharded_answers(self.shards, key)

    def __del__(self) -> None:
        try:
            self.loop.run_until_complete(self.client.backend.aclose())
        except Exception:  # noqa: BLE001 - an actor going away: nothing to tell anyone
            pass


def shards_dir(config: LabelConfig) -> Path:
    return config.shards or Path(f"{config.db}.shards")


def pairs_dataset(config: LabelConfig, read: PairsRead):
    """The input as a Ray Dataset: JSON Lines and Parquet files are read by Ray itself (in parallel, on a
    cluster by the nodes); other inputs, or a --limit, go through the driver's own reader."""
    import ray.data

    suffix = Path(config.pairs).suffix.lower()
    if config.limit is None and suffix in (".jsonl", ".ndjson"):
        return ray.data.read_text(config.pairs)
    if config.limit is None and suffix == ".parquet":
        return ray.data.read_parquet(config.pairs)
    rows = []
    for row in read_rows(config.pairs):
        if read.last_line is not None and row.line > read.last_line:
            break
        rows.append(row.data)
    return ray.data.from_items(rows)


def _start_ray(config: LabelConfig) -> None:
    try:
        import ray
    except ImportError:
        raise PrefgenError("--engine ray needs Ray: pip install 'prefgen[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=config.address, include_dashboard=False, log_to_driver=False, logging_level="warning")
    import ray.data

    # prefgen draws its own progress bar; Ray Data's would fight it for the terminal.
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def run_label_ray(config: LabelConfig) -> LabelSummary:
    if config.dry_run:
        raise PrefgenError("--dry-run runs in one process: leave out --engine ray")
    job = LabelJob.from_config(config)
    read, calls = job.count_planned_calls(PairsRead([], repeated=set()))
    shards = shards_dir(config)
    try:
        with RunLifecycle(job) as life:
            with Store(config.db) as store:
                if batches_sql.open_batches(store, job.job_id):  # the workers cannot tell which calls wait there
                    raise PrefgenError("this job has provider batches still running (label --batch): collect them "
                                       "first with the same command and --batch, or label without --engine ray")
                merge_shards(store, shard_paths(shards))  # what a killed run left: stored now, so not asked again
                life.start(store)
                already = labels_sql.job_spend(store, job.job_id)
                for pairs in job.chunks(PairsRead([])):  # so that shards merged later by `ingest` have their pairs
                    labels_sql.save_pairs(store, pairs)
            counts, status = RunCounts(), "failed"
            try:
                counts, status = _judge_on_ray(job, life.run_id, read, calls, shards, already)
            finally:
                with Store(config.db) as store:
                    merge_shards(store, shard_paths(shards))
                    derive_preferences(job, store, life.run_id)
                    counts.planned = calls
                    life.finish(store, status, counts, pairs=read.count, planned=calls)
            with Store(config.db) as store:
                return label_summary(store, job, life.run_id, status, counts, started=life.started,
                                     sending=life.sending,
                                     already=already, read=read)
    finally:
        asyncio.run(job.client.backend.aclose())


def _judge_on_ray(job: LabelJob, run_id: str, read: PairsRead, calls: int, shards: Path,
                  already: float) -> tuple[RunCounts, str]:
    """Judge every pair on Ray workers; their counts added up, and the run's status."""
    import ray
    import ray.data

    config = job.config
    _start_ray(config)
    ledger = ray.remote(num_cpus=0)(Ledger).remote(config.max_cost, already)
    claims = ray.remote(num_cpus=0)(Claims).remote()
    results = pairs_dataset(config, read).map_batches(
        ShardJudge, batch_size=config.chunk_pairs, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=config.workers), num_cpus=WORKER_CPUS,
        fn_constructor_kwargs=dict(config=config, constitution=job.constitution, job_id=job.job_id, mode=job.mode,
                                   run_id=run_id, shards=str(shards), ledger=ledger, claims=claims,
                                   repeated=frozenset(read.repeated or ())),
    )
    counts, statuses = RunCounts(), set()
    with LabelProgress(calls, enabled=config.progress) as progress, _Watch(ledger, progress):
        for row in results.iter_rows():
            counts.add(RunCounts(**{name: row[name] for name in RunCounts().as_dict()}))
            statuses.add(row["status"])
    counts.spent = ray.get(ledger.totals.remote())[1]
    return counts, "budget_stopped" if "budget_stopped" in statuses else "finished"


def merge_shards(store: Store, paths: list) -> IngestCount:
    """Merge shards this engine wrote, then remove them: their rows are in the store."""
    count = ingest_shards(store, paths)
    remove_shards(paths)
    return count


def derive_preferences(job: LabelJob, store: Store, run_id: str) -> None:
    """The preferences of every pair from the stored answers: the single-process run's own code, a chunk at
    a time."""
    run = LabelRun(job, store, run_id, budget=Budget(None))
    for pairs in job.chunks(PairsRead([])):
        run.plan(pairs)
        run.tasks_to_send()
        run.derive_preferences()


class _Watch:
    """Updates the progress bar from the ledger's counts twice a second while the workers run."""

    def __init__(self, ledger: Any, progress: LabelProgress) -> None:
        self.ledger = ledger
        self.progress = progress
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self._cached = 0

    def __enter__(self) -> _Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def _poll(self) -> None:
        import ray

        while not self.done.wait(0.5):
            sent, spent, cached = ray.get(self.ledger.totals.remote())
            self.progress.discount(cached - self._cached)
            self._cached = cached
            self.progress.advance(sent, spent, 0, 0)
