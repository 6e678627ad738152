"""Sending a label run's calls: a chunk of pairs at a time, planned, filtered against what is stored, sent with
bounded concurrency under the job's budget, written in batches at least once a second, and turned into
preferences. The asyncio engine drives one `LabelRun` over the whole input; each Ray worker drives one per
chunk, writing shards instead of the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator

from prefgen.judge.base import JUDGE_ERROR, PARSE_ERROR, Verdict
from prefgen.judge.diagnose import failure_kind
from prefgen.judge.swap import preferences_from_answers, swap_answers
from prefgen.pipelines.labelling.job import LabelJob, Task, plan_tasks
from prefgen.pipelines.labelling.progress import LabelProgress
from prefgen.pipelines.labelling.run import RunCounts
from prefgen.records import Answer, Judgement, Pair, SwapResult
from prefgen.storage import batches as batches_sql
from prefgen.storage import labels as labels_sql
from prefgen.storage.db import LOCK_WAIT_S, Store, StoreBusy

# After a write found the store held by another process (a reader between two batches), try again this soon.
_BUSY_RETRY_S = 0.05

# The run's last writes wait longer for a reader to let go: what they hold would otherwise be asked again.
FINAL_WAIT_S = 8 * LOCK_WAIT_S


log = logging.getLogger("prefgen.label")



class Budget:
    """--max-cost for a whole job, across its runs. Before each call it reserves the call's upper bound (see
    `JudgeClient.upper_bound_tokens`) and after it settles the cost charged from the provider's reported usage,
    so a run stops before it could pass the limit rather than after. `already` is what earlier runs of the
    job spent; `spent` counts this run only."""

    def __init__(self, limit: float | None, already: float = 0.0) -> None:
        self.limit = limit
        self.already = already
        self.spent = 0.0
        self.reserved = 0.0
        self.exhausted = False

    def reserve(self, bound: float) -> bool:
        if self.limit is not None and self.already + self.spent + self.reserved + bound > self.limit:
            self.exhausted = True
            return False
        self.reserved += bound
        return True

    def settle(self, reserved: float, actual: float) -> None:
        self.reserved -= reserved
        self.spent += actual



class FirstBatch:
    """The first call of every worker, watched: when each one fails for a reason no retry mends (a refused key,
    no such endpoint, no server; `judge.diagnose`), the run stops there rather than sending every call into the
    same wall. Workers wait for that decision after their first call; the first answer or other failure settles
    it at once, so a healthy run does not wait."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.errors: list[str] = []
        self.decided = asyncio.Event()
        self.fatal: str | None = None  # the first error, when the whole batch failed that way

    def add(self, verdict: Verdict) -> None:
        if self.decided.is_set():
            return
        if verdict.status != JUDGE_ERROR or failure_kind(verdict.error) is None:
            self.decided.set()
            return
        self.errors.append(verdict.error or "")
        self._check()

    def withdraw(self) -> None:
        """A worker that ends before its first call (budget, Ctrl-C) is not waited for."""
        self.size -= 1
        self._check()

    def _check(self) -> None:
        if len(self.errors) >= self.size and not self.decided.is_set():
            self.fatal = self.errors[0] if self.errors else None
            self.decided.set()



class LabelRun:
    """One invocation of the label pipeline over an open store, fed a chunk of pairs at a time (`plan`).

    `write` stores a batch of judgement rows with the run's progress (calls sent, spend): the store by
    default, Parquet shards in a Ray worker. `budget` is the job's `Budget` (a Ray worker's draws on a budget
    shared by every worker)."""

    def __init__(self, job: LabelJob, store: Store | None, run_id: str, *, budget: Budget | None = None,
                 write: Callable[[list[Judgement], tuple[str, int, float]], object] | None = None) -> None:
        self.job = job
        self.config = job.config
        self.store = store
        self.client = job.client
        self.constitution = job.constitution
        self._constitution_id = job.constitution.id  # a content hash over the whole model: once, not per call
        self.job_id = job.job_id
        self.run_id = run_id
        self.write = write or (lambda rows, progress: labels_sql.save_judgements(store, rows, run=progress))
        self.budget = budget or Budget(job.config.max_cost, already=labels_sql.job_spend(store, job.job_id))
        self.stop = asyncio.Event()
        self.buffer: list[Judgement] = []
        self.counts = RunCounts()
        self.first_batch: FirstBatch | None = None
        self.kept = 0
        self.decided = 0
        self.progress: LabelProgress | None = None
        self._busy_until = 0.0  # a write found the store held by a reader: no new try before then
        self._chunk_done = True
        self.tasks: list[Task] = []
        self.answers: dict[str, Answer] = {}
        self._order_hashes: dict[tuple[str, str], dict[str, str]] = {}
        # The job has provider batches not collected yet (`label --batch`): their calls are left out.
        self.batches_open = False

    # -- planning -----------------------------------------------------------------------------------------
    def plan(self, pairs: list[Pair], *, count: bool = True) -> list[Task]:
        """Plan the calls of one chunk of pairs; the previous chunk's tasks and answers are let go. `count`: add
        them to the run's counts (not when a chunk is planned again to derive its preferences)."""
        self.tasks = plan_tasks(self.client, self.constitution, pairs)
        self.answers = {}
        self._order_hashes = {}
        for task in self.tasks:
            self._order_hashes.setdefault((task.pair_id, task.principle_id), {})[task.ordering] = task.request_hash
        if count:
            self.counts.pairs += len(pairs)
            self.counts.planned += len(self.tasks)
        self._chunk_done = False
        return self.tasks

    def tasks_to_send(self, stored: dict[str, Answer] | None = None) -> list[Task]:
        """The chunk's calls that have no answer yet. `stored`: the answers known for its hashes (default: the
        store's)."""
        if stored is None:
            stored = labels_sql.stored_answers(self.store, [t.request_hash for t in self.tasks])
        for h, answer in stored.items():
            if answer.status != JUDGE_ERROR:  # a stored judge error is asked again; any answer is not
                self.answers[h] = answer
        # Calls waiting in a provider batch of the job (`label --batch`) are paid for already: not asked here.
        waiting = (batches_sql.in_open_batches(self.store, self.job_id, [t.request_hash for t in self.tasks])
                   if self.batches_open else set())
        unique: dict[str, Task] = {}
        for task in self.tasks:
            if task.request_hash not in self.answers and task.request_hash not in waiting:
                unique.setdefault(task.request_hash, task)
        held = sum(1 for t in self.tasks if t.request_hash in waiting) if waiting else 0
        self.counts.in_batches += held
        self.counts.cached += len(self.tasks) - len(unique) - held
        log.info("job %s: %d pairs, %d calls planned, %d already stored, %d to send (concurrency %d)", self.job_id,
                 len({pair for pair, _ in self._order_hashes}), len(self.tasks),
                 len(self.tasks) - len(unique), len(unique), self.config.concurrency)
        if self.progress:
            self.progress.discount(len(self.tasks) - len(unique))
        return list(unique.values())

    async def label_chunks(self, chunks: Iterable[list[Pair]]) -> str:
        """Plan, send, write and derive each chunk in turn; stops at the chunk where the budget ran out or the
        user pressed Ctrl-C (its answers are written and its preferences derived by `finish_chunk`)."""
        for pairs in chunks:
            self.plan(pairs)
            with self.store.briefly(FINAL_WAIT_S):  # a reader may hold the store between batches
                labels_sql.save_pairs(self.store, pairs)
                todo = self.tasks_to_send()
            status = await self.send_all(todo) if todo else "finished"
            if status != "finished":
                return status
            self.finish_chunk()
        return "finished"

    def finish_chunk(self) -> None:
        """Write what is answered and derive the chunk's preferences (once)."""
        self.flush(wait_s=FINAL_WAIT_S)
        if not self._chunk_done:
            with self.store.briefly(FINAL_WAIT_S):
                self.derive_preferences()
            self._chunk_done = True

    # -- sending ------------------------------------------------------------------------------------------
    async def send_all(self, todo: list[Task]) -> str:
        queue: Iterator[Task] = iter(todo)

        async def flush_on_time() -> None:
            # Answers are durable within flush_interval_s however the calls finish: a burst of answers right
            # after a write would otherwise wait for the next answer (or batch) to be written, and a kill would
            # send them again. A write that found the file held by a reader is tried again shortly.
            while True:
                await asyncio.sleep(self.config.flush_interval_s if self.flush() else _BUSY_RETRY_S)

        workers = min(self.config.concurrency, max(len(todo), 1))
        first_batch = self.first_batch = FirstBatch(workers)

        async def worker() -> None:
            first = True
            try:
                for task in queue:
                    if self.stop.is_set():
                        return
                    tokens = self.client.upper_bound_tokens(task.messages)
                    bound = self.client.upper_bound_cost(task.messages, tokens)
                    if not self.budget.reserve(bound):
                        self.stop.set()
                        return
                    reserved = bound

                    def may_retry(more: float) -> bool:
                        nonlocal reserved
                        if not self.budget.reserve(more):
                            return False
                        reserved += more
                        return True

                    verdict = await self.client.judge(task.messages, may_retry=may_retry, tokens=tokens)
                    self.budget.settle(reserved, verdict.cost)
                    self._record(task, verdict)
                    if len(self.buffer) >= self.config.write_batch:
                        self.flush()
                    if first:
                        first = False
                        first_batch.add(verdict)
                        await first_batch.decided.wait()
                        if first_batch.fatal is not None:
                            self.stop.set()
                            return
            finally:
                if first:
                    first_batch.withdraw()

        ticker = asyncio.create_task(flush_on_time())
        try:
            await asyncio.gather(*(worker() for _ in range(workers)))
        finally:
            ticker.cancel()
            self.flush()
        if self.budget.exhausted:
            return "budget_stopped"
        if first_batch.fatal is not None:
            return "failed"
        return "interrupted" if self.stop.is_set() else "finished"

    def _record(self, task: Task, verdict: Verdict, batch_id: str | None = None) -> None:
        counts = self.counts
        counts.sent += 1
        counts.tokens_in += verdict.tokens_in
        counts.tokens_out += verdict.tokens_out
        counts.spent = self.budget.spent
        if verdict.status == JUDGE_ERROR:
            counts.errors += 1
        else:
            counts.parse_errors += verdict.status == PARSE_ERROR
            self.answers[task.request_hash] = Answer(verdict.status, verdict.p_first, verdict.confidence_source)
        self.buffer.append(self._judgement(task, verdict, batch_id))
        if self.progress is not None and self.progress.enabled:  # the live kept count is for the bar only
            self._update_live_counts(task)
            self.progress.advance(counts.sent, self.budget.spent, self.kept, self.decided)

    def _judgement(self, task: Task, verdict: Verdict, batch_id: str | None = None) -> Judgement:
        return Judgement(
            request_hash=task.request_hash, job_id=self.job_id, run_id=self.run_id, pair_id=task.pair_id,
            constitution_id=self._constitution_id, principle_id=task.principle_id, ordering=task.ordering,
            backend=self.client.backend.name, model=self.client.backend.model,
            template_version=self.client.template.version, raw_text=verdict.raw_text, verdict=verdict.letter,
            p_first=verdict.p_first, confidence_source=verdict.confidence_source, status=verdict.status,
            tokens_in=verdict.tokens_in, tokens_out=verdict.tokens_out, cost=verdict.cost,
            latency_s=verdict.latency_s, attempts=verdict.attempts, error=verdict.error,
            tokens_cached=verdict.tokens_cached, tokens_cache_written=verdict.tokens_cache_written, batch_id=batch_id,
        )

    def _update_live_counts(self, task: Task) -> None:
        hashes = self._order_hashes.get((task.pair_id, task.principle_id))
        if hashes is None:  # an answer from a batch of another chunk: counted when its chunk is derived
            return
        if all(h in self.answers for h in hashes.values()):
            result = self._swap(hashes)
            self.decided += 1
            self.kept += int(result.kept)

    def flush(self, wait_s: float = 0.0) -> bool:
        """Write the answered calls, and this run's count and spend with them (one transaction): a run killed
        later has its spend up to here on record.

        While sending, the store is shared (see `Store.shared`): when a reader waits for it, it is let go of
        after this write, and reopened for the next; if a reader holds it, the answers stay buffered and False
        is returned (the ticker tries again shortly). With `wait_s`, wait that long for the file instead.
        """
        if not self.buffer:
            if self.store is not None:  # None: a Ray worker, writing shards
                self.store.let_go_if_wanted()  # a reader waits, and there is nothing to write: let it in now
            return True
        if not wait_s and time.monotonic() < self._busy_until:
            return False
        try:
            with self.store.briefly(wait_s) if self.store is not None else contextlib.nullcontext():
                self.write(self.buffer, (self.run_id, self.counts.sent, self.budget.spent))
        except StoreBusy:
            if wait_s:
                raise
            self._busy_until = time.monotonic() + _BUSY_RETRY_S
            return False
        self.buffer = []
        return True

    # -- deriving -----------------------------------------------------------------------------------------
    def _swap(self, hashes: dict[str, str]) -> SwapResult:
        return swap_answers(self.answers.get(hashes["ab"]), self.answers.get(hashes["ba"]), self.config.threshold)

    def derive_preferences(self) -> None:
        """Per-principle and per-pair preferences from the answers; judge errors count as such, not as pending."""
        # A judge error stored by this or an earlier run and not answered since stands in for its order.
        answers = labels_sql.stored_judge_errors(self.store, [t.request_hash for t in self.tasks]) | self.answers
        orders = {key: (answers.get(hashes["ab"]), answers.get(hashes["ba"]))
                  for key, hashes in self._order_hashes.items()}
        prefs, pair_prefs = preferences_from_answers(
            self.job_id, orders, lambda principle_id: self.constitution.principle(principle_id).weight,
            self.config.threshold)
        labels_sql.save_preferences(self.store, prefs, pair_prefs)

