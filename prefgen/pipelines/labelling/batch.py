"""`label --batch`: a chunk's calls handed to the provider as batch jobs, at half the price of asking them one by one.

The third way of sending a chunk's calls, beside `LabelRun.send_all` (one call at a time, asyncio) and the Ray
workers. It drives the same `LabelRun` (its counts, budget and writes) inside the same `RunLifecycle`, in three
passes over the input:

1. submit: each chunk is planned; the calls with no stored answer and in no open batch of the job go out in
   batches of `--batch-max-requests` calls, cut between (pair, principle) groups so that both orders of a
   comparison travel together. Before a batch is submitted its most (at the batch rate) is reserved from
   `--max-cost`, and the batch is stored with its calls, so that a kill right after the submit leaves a row to
   look for (OpenAI: by the key in the batch's metadata; Anthropic: by time and size).
2. collect: every open batch of the job, this run's and those a killed or interrupted run left, is polled every
   `--batch-poll` seconds; an ended batch's answers are stored as judgements under their request hash (charged
   at the batch rate, with the batch's id), and its errors and expired requests as judge errors, asked again
   by the next run.
3. derive: each chunk is planned again and its preferences derived from the store, as a run asked directly does.

A run asked directly (without `--batch`) leaves out the calls that wait in an open batch, after collecting the
batches that have ended: a call is never paid for twice, whichever way it was asked first.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prefgen.errors import PrefgenError
from prefgen.hashing import content_hash
from prefgen.judge.base import JUDGE_ERROR, Verdict
from prefgen.judge.batches import BatchAnswer, BatchClient, BatchState, batch_client_for
from prefgen.pipelines.labelling.job import LabelJob, Task
from prefgen.pipelines.labelling.sender import FINAL_WAIT_S, LabelRun
from prefgen.records import Pair
from prefgen.redact import redact
from prefgen.storage import batches as batches_sql
from prefgen.storage import labels as labels_sql
from prefgen.storage.batches import BatchItem

log = logging.getLogger("prefgen.label")

# Polls of one batch that may fail in a row (the network, the provider) before the run stops and says why.
MAX_FAILED_POLLS = 10


def batch_client(job: LabelJob) -> BatchClient:
    """The provider's batch API for the job's judge, or a PrefgenError saying which judges have one."""
    client = batch_client_for(job.client.backend)
    if client is None:
        raise PrefgenError(f"--batch: {job.spec_text} has no batch API here; use openai:MODEL, anthropic:MODEL or "
                           "litellm:openai/MODEL (one --api-base), or leave out --batch")
    return client


def groups(tasks: list[Task]) -> Iterator[list[Task]]:
    """The tasks of each (pair, principle), in plan order: a batch is cut between groups, never inside one."""
    current: list[Task] = []
    for task in tasks:
        if current and (task.pair_id, task.principle_id) != (current[0].pair_id, current[0].principle_id):
            yield current
            current = []
        current.append(task)
    if current:
        yield current


def batches_of(tasks: list[Task], size: int) -> Iterator[list[Task]]:
    """`tasks` cut into batches of at most `size` calls (a group larger than `size` is one batch of its own)."""
    batch: list[Task] = []
    for group in groups(tasks):
        if batch and len(batch) + len(group) > size:
            yield batch
            batch = []
        batch.extend(group)
    if batch:
        yield batch


class BatchRun:
    """One label run's provider batches: submitted, polled and collected through a `LabelRun`."""

    def __init__(self, run: LabelRun, client: BatchClient) -> None:
        self.run = run
        self.job = run.job
        self.store = run.store
        self.client = client
        judge = run.client
        self.price = judge.price.at_batch_rate() if judge.price is not None else None
        self.size = min(run.config.batch_max_requests, client.max_requests // max(judge.params.n, 1))
        self.open: dict[str, dict[str, Any]] = {}  # batch_key -> its stored row
        self.submitted = 0
        self.collected = 0
        self.fatal: str | None = None  # why a batch could not be submitted, or polled
        self.fatal_calls = 0
        self.chunks_seen = 0

    # -- the three passes ---------------------------------------------------------------------------------
    async def label(self, chunks: Callable[[], Iterable[list[Pair]]]) -> str:
        await self.resume()
        stopped = await self.submit_all(chunks())
        if self.fatal is None:
            await self.collect_all()
        self.derive_all(itertools.islice(chunks(), self.chunks_seen))  # the chunks whose pairs pass 1 stored
        if self.fatal is not None:
            return "failed"
        if self.run.stop.is_set() or self.open:
            return "interrupted"
        return "budget_stopped" if stopped else "finished"

    async def submit_all(self, chunks: Iterable[list[Pair]]) -> bool:
        """Pass 1. True when --max-cost stopped the submissions."""
        run = self.run
        run.batches_open = True
        for pairs in chunks:
            if run.stop.is_set() or self.fatal is not None:
                return False
            self.chunks_seen += 1
            run.plan(pairs)
            with self.store.briefly(FINAL_WAIT_S):
                labels_sql.save_pairs(self.store, pairs)
                todo = run.tasks_to_send()
            for tasks in batches_of(todo, self.size):
                if not await self.submit(tasks):
                    return run.budget.exhausted
        return False

    async def collect_all(self) -> None:
        """Pass 2: poll until every open batch is collected, or the user stops the run (Ctrl-C)."""
        stop = self.run.stop
        while self.open and not stop.is_set() and self.fatal is None:
            await self.poll_once()
            if self.open:
                try:
                    await asyncio.wait_for(stop.wait(), self.run.config.batch_poll_s)
                except TimeoutError:
                    pass

    def derive_all(self, chunks: Iterable[list[Pair]]) -> None:
        """Pass 3: each chunk's preferences from the stored answers."""
        run = self.run
        for pairs in chunks:
            run.plan(pairs, count=False)
            with self.store.briefly(FINAL_WAIT_S):
                stored = labels_sql.stored_answers(self.store, [t.request_hash for t in run.tasks])
            run.answers = {h: a for h, a in stored.items() if a.status != JUDGE_ERROR}
            run.finish_chunk()

    # -- resuming -----------------------------------------------------------------------------------------
    async def resume(self) -> None:
        """Take over the job's batches that an earlier run left open: their reservation counts against
        --max-cost again (their cost is not on record yet), and a batch whose id never reached the store is
        looked for at the provider."""
        with self.store.briefly(FINAL_WAIT_S):
            rows = batches_sql.open_batches(self.store, self.run.job_id)
            known = batches_sql.known_provider_ids(self.store)
        for row in rows:
            if row["provider_batch_id"] is None and not await self._find(row, known):
                continue
            self.run.budget.reserved += row["reserved"]  # already submitted: held whatever the limit says now
            self.open[row["batch_key"]] = row
            self._show(row, "resumed", 0)
        if rows:
            log.info("job %s: %d provider batch(es) from an earlier run, polled rather than sent again",
                     self.run.job_id, len(self.open))

    async def _find(self, row: dict[str, Any], known: set[str]) -> bool:
        key = row["batch_key"]
        found = await self.client.find(key, row["n_requests"], self.run.client.params.n, row["created_s"], known)
        with self.store.briefly(FINAL_WAIT_S):
            if found is None:
                log.warning("batch %s was recorded but the provider has no such batch: its %d calls are asked "
                            "again", key, row["n_requests"])
                batches_sql.forget_unsubmitted(self.store, key, "never reached the provider (a run was killed "
                                               "while submitting it)")
                return False
            batches_sql.mark_submitted(self.store, key, found)
        row["provider_batch_id"] = found
        known.add(found)
        return True

    # -- submitting ---------------------------------------------------------------------------------------
    def _bound(self, task: Task) -> tuple[tuple[int, int], float]:
        tokens = self.run.client.upper_bound_tokens(task.messages)
        return tokens, self.price.most(*tokens) if self.price is not None else 0.0

    def _affordable(self, tasks: list[Task], costs: list[float]) -> int:
        """How many of `tasks` (whole groups) the budget can hold."""
        budget = self.run.budget
        if budget.limit is None:
            return len(tasks)
        room = budget.limit - budget.already - budget.spent - budget.reserved
        taken, total, index = 0, 0.0, 0
        for group in groups(tasks):
            cost = sum(costs[index:index + len(group)])
            if total + cost > room:
                break
            total += cost
            index += len(group)
            taken = index
        return taken

    async def submit(self, tasks: list[Task]) -> bool:
        """Reserve, record, submit one batch. False: stop submitting (budget reached, or the provider refused)."""
        run = self.run
        bounds = [self._bound(task) for task in tasks]
        fits = self._affordable(tasks, [cost for _, cost in bounds])
        if fits < len(tasks):
            run.budget.exhausted = True
            tasks, bounds = tasks[:fits], bounds[:fits]
            if not tasks:
                return False
        reserved = sum(cost for _, cost in bounds)
        run.budget.reserved += reserved
        key = content_hash(["label-batch", run.job_id, [t.request_hash for t in tasks]], length=24)
        items = [BatchItem(t.request_hash, t.pair_id, t.principle_id, t.ordering, *tokens)
                 for t, (tokens, _) in zip(tasks, bounds)]
        with self.store.briefly(FINAL_WAIT_S):
            batches_sql.record_batch(self.store, batch_key=key, job_id=run.job_id, run_id=run.run_id,
                                     backend=run.client.backend.name, model=run.client.backend.model, items=items,
                                     reserved=reserved)
        try:
            batch_id = await self.client.submit(key, [(t.request_hash, t.messages) for t in tasks], run.client.params)
        except Exception as exc:  # noqa: BLE001 - any refusal: the calls stay unasked, the run says why
            error = redact(" ".join(f"{type(exc).__name__}: {exc}".split()))[:1000]
            with self.store.briefly(FINAL_WAIT_S):
                batches_sql.forget_unsubmitted(self.store, key, error)
            run.budget.reserved -= reserved
            self.fatal, self.fatal_calls = error, len(tasks)
            return False
        with self.store.briefly(FINAL_WAIT_S):
            batches_sql.mark_submitted(self.store, key, batch_id)
        row = {"batch_key": key, "provider_batch_id": batch_id, "n_requests": len(tasks), "reserved": reserved,
               "created_s": time.time(), "status": "submitted"}
        self.open[key] = row
        self.submitted += 1
        log.info("batch %s submitted: %d calls, %.4g USD reserved at the batch rate", batch_id, len(tasks), reserved)
        self._show(row, "submitted", 0)
        return not run.budget.exhausted

    # -- polling and collecting ---------------------------------------------------------------------------
    async def poll_once(self) -> None:
        """Ask the provider how each open batch is doing; collect the ended ones."""
        for key, row in list(self.open.items()):
            batch_id = row["provider_batch_id"]
            try:
                state = await self.client.state(batch_id)
            except Exception as exc:  # noqa: BLE001 - a failed poll is tried again at the next one
                error = redact(" ".join(f"{type(exc).__name__}: {exc}".split()))[:300]
                if self._gave_up(row, "failed_polls", f"polling batch {batch_id} failed {MAX_FAILED_POLLS} times "
                                 f"in a row ({error})"):
                    return
                log.warning("polling batch %s failed (%s); trying again in %g s", batch_id, error,
                            self.run.config.batch_poll_s)
                continue
            row["failed_polls"] = 0
            self._show(row, state.provider_status, state.completed + state.failed, state.total)
            if state.provider_status != row.get("provider_status"):
                row["provider_status"] = state.provider_status
                log.info("batch %s: %s (%d of %d done)", batch_id, state.provider_status,
                         state.completed + state.failed, state.total)
                with self.store.briefly(FINAL_WAIT_S):
                    batches_sql.update_status(self.store, key, status="ended" if state.ended else "submitted",
                                              provider_status=state.provider_status, completed=state.completed,
                                              failed=state.failed, error=state.error)
            if state.ended:
                await self.collect(key, row, state)

    def _gave_up(self, row: dict[str, Any], counter: str, reason: str) -> bool:
        """Count one more failure of `row` under `counter`; at MAX_FAILED_POLLS the run stops with `reason` (the
        batch stays open, so the next run tries it again)."""
        row[counter] = row.get(counter, 0) + 1
        if row[counter] < MAX_FAILED_POLLS:
            return False
        self.fatal, self.fatal_calls = reason, row["n_requests"]
        return True

    async def collect(self, key: str, row: dict[str, Any], state: BatchState) -> None:
        """Store an ended batch's answers; the calls it did not answer become judge errors (asked again)."""
        run = self.run
        batch_id = row["provider_batch_id"]
        with self.store.briefly(FINAL_WAIT_S):
            items = {i.request_hash: i for i in batches_sql.batch_items(self.store, key)}
            # Answers of this batch stored already (a run killed while collecting it) are not stored twice.
            stored = labels_sql.stored_answers(self.store, list(items))
        for request_hash, answer in stored.items():
            if answer.status != JUDGE_ERROR:
                items.pop(request_hash, None)
        latency = max(time.time() - row["created_s"], 0.0)
        verdicts: list[tuple[BatchItem, Verdict]] = []
        try:
            async for answer in self.client.answers(batch_id):
                item = items.pop(answer.custom_id, None)
                if item is not None:  # not ours, or a repeat: left alone
                    verdicts.append((item, self._verdict(answer, item, latency)))
        except Exception as exc:  # noqa: BLE001 - the results could not be read: tried again at the next poll
            error = redact(str(exc))[:300] or type(exc).__name__
            # Counted like a failed poll: results that can never be read must stop the run, not be polled forever.
            if self._gave_up(row, "failed_reads", f"reading the results of batch {batch_id} failed "
                             f"{MAX_FAILED_POLLS} times ({error})"):
                return
            log.warning("reading the results of batch %s failed (%s); trying again in %g s", batch_id, error,
                        run.config.batch_poll_s)
            return
        why = f"no answer in batch {batch_id} ({state.provider_status}{': ' + state.error if state.error else ''})"
        verdicts += [(item, Verdict(None, "", JUDGE_ERROR, None, error=f"{why}; asked again next run",
                                    latency_s=latency)) for item in items.values()]
        cost = sum(v.cost for _, v in verdicts)
        run.budget.settle(row["reserved"], cost)
        for item, verdict in verdicts:
            run._record(Task(item.pair_id, item.principle_id, item.ordering, item.request_hash, []), verdict,
                        batch_id=batch_id)
        run.flush(wait_s=FINAL_WAIT_S)
        run.answers.clear()  # stored now; pass 3 reads them back a chunk at a time (memory stays one chunk's)
        with self.store.briefly(FINAL_WAIT_S):
            batches_sql.update_status(self.store, key, status="collected", provider_status=state.provider_status,
                                      cost=cost)
        del self.open[key]
        self.collected += 1
        failed = sum(1 for _, v in verdicts if v.status == JUDGE_ERROR)
        log.info("batch %s collected: %d answers, %d without one, %.4g USD", batch_id, len(verdicts) - failed,
                 failed, cost)
        self._show(row, "collected", state.total, state.total)

    def _verdict(self, answer: BatchAnswer, item: BatchItem, latency: float) -> Verdict:
        if answer.completion is None:
            return Verdict(None, "", JUDGE_ERROR, None, error=answer.error or "no answer", latency_s=latency)
        return self.run.client.answer_verdict(answer.completion, (item.bound_in, item.bound_out), self.price,
                                              latency)

    def _show(self, row: dict[str, Any], status: str, done: int, total: int | None = None) -> None:
        if self.run.progress:
            self.run.progress.batch(row["provider_batch_id"] or row["batch_key"], status, done,
                                    total or row["n_requests"])

    def counts(self) -> dict[str, int]:
        return {"submitted": self.submitted, "collected": self.collected, "open": len(self.open)}


async def collect_ended_batches(run: LabelRun, job: LabelJob) -> int:
    """Before a run asked directly: collect the job's batches that have ended, and leave out the calls of those
    still running (`LabelRun.batches_open`). Returns the number of calls still waiting at the provider."""
    with run.store.briefly(FINAL_WAIT_S):
        rows = batches_sql.open_batches(run.store, run.job_id)
    if not rows:
        return 0
    run.batches_open = True
    client = batch_client_for(job.client.backend)
    if client is None:
        return sum(row["n_requests"] for row in rows)
    batch = BatchRun(run, client)
    try:
        # The batches still running stay reserved: --max-cost counts what they may cost once collected.
        await batch.resume()
        await batch.poll_once()
    finally:
        await client.aclose()
    return sum(row["n_requests"] for row in batch.open.values())
