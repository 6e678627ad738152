"""`prefgen label`: judge every (pair, principle) in both orders, store every call, derive preferences.

Flow: read and validate everything first (nothing is written for bad input) -> then, a chunk of pairs at a
time: plan every request and its hash -> skip what the store already answered -> send the rest with bounded
concurrency, a cost budget and retries -> write judgements in batches -> derive per-principle and per-pair
preferences from the answers. Re-running the same command resumes: a stored answer is never asked (or paid
for) twice. Both passes stream the input, so memory holds one chunk (`--chunk-pairs`), not the input.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefgen.constitution import Constitution, load_constitution, sample_principles
from prefgen.errors import ExitCode, PrefgenError
from prefgen.hashing import content_hash
from prefgen.judge.base import JUDGE_ERROR, PARSE_ERROR, SOURCE_VERDICT, Verdict
from prefgen.judge.core import JudgeClient
from prefgen.judge.fleet import Fleet, split_api_bases
from prefgen.judge.diagnose import failure_kind, what_to_check
from prefgen.judge.pricing import resolve_price
from prefgen.judge.prompts import make_template
from prefgen.judge.registry import make_backend, parse_spec
from prefgen.judge.swap import both_orders, pair_preference, preference, swap_answers
from prefgen.pipelines.configs import LabelConfig
from prefgen.pipelines.inputs import PairsRead, iter_pairs, pair_batches
from prefgen.pipelines.progress import LabelProgress
from prefgen.pipelines.sync import run_coroutine
from prefgen.records import Answer, Judgement, Pair, PairPreference, Preference, SwapResult
from prefgen.redact import redact
from prefgen.storage import labels as labels_sql
from prefgen.storage.db import LOCK_WAIT_S, Store, StoreBusy


# After a write found the store held by another process (a reader between two batches), try again this soon.
_BUSY_RETRY_S = 0.05
# The run's last writes wait longer for a reader to let go: what they hold would otherwise be asked again.
_FINAL_WAIT_S = 8 * LOCK_WAIT_S

log = logging.getLogger("prefgen.label")


@dataclass(frozen=True, slots=True)
class Task:
    """One planned judge call."""

    pair_id: str
    principle_id: str
    ordering: str
    request_hash: str
    messages: list[dict[str, str]]


@dataclass
class LabelSummary:
    run_id: str
    job_id: str
    status: str
    pairs: int
    calls_planned: int
    calls_cached: int
    calls_sent: int
    judge_errors: int
    tokens_in: int
    tokens_out: int
    cost: float
    elapsed_s: float
    kept_pairs: int = 0
    kept_preferences: int = 0
    preferences: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)
    first_slot_share: float | None = None
    consistency_rate: float | None = None
    estimated: dict[str, Any] | None = None  # dry runs only
    skipped: list[str] = field(default_factory=list)  # --skip-bad: the rows dropped, each with its reason
    duplicates: int = 0  # rows that repeated an earlier pair and were judged once
    job_cost: float = 0.0  # every run of the job, this one included (what --max-cost counts)
    max_cost: float | None = None  # the job's budget (--max-cost)
    priced: bool = True  # False: no price is known for the model, so costs are unknown (not zero)
    parse_errors: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)  # this run's top failure reasons with counts
    stopped_early: str | None = None  # why the run stopped after its first batch, and what to check
    warnings: list[str] = field(default_factory=list)  # e.g. a confidence that --threshold cannot use

    @property
    def calls_per_s(self) -> float:
        return self.calls_sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def exit_code(self) -> ExitCode:
        """What `prefgen label` exits with (docs/exit-codes.md): the stop reason first, then failed calls."""
        if self.status == "interrupted":
            return ExitCode.INTERRUPTED
        if self.status == "budget_stopped":
            return ExitCode.BUDGET_REACHED
        if self.calls_sent and self.judge_errors + self.parse_errors >= self.calls_sent:
            return ExitCode.ALL_CALLS_FAILED
        if self.judge_errors:
            return ExitCode.CALLS_FAILED
        return ExitCode.OK


def plan_tasks(client: JudgeClient, constitution: Constitution, pairs: list[Pair]) -> list[Task]:
    tasks = []
    for pair in pairs:
        for principle in sample_principles(constitution, pair.id):
            for ordering, comparison in both_orders(pair, principle.text):
                messages = client.render(comparison)
                tasks.append(Task(pair.id, principle.id, ordering, client.request_hash(messages), messages))
    return tasks


def job_record(job_id: str, constitution: Constitution, spec_text: str, client: JudgeClient,
               confidence_mode: str) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "constitution_id": constitution.id,
        "judge_spec": spec_text,
        "backend": client.backend.name,
        "model": client.backend.model,
        "template_version": client.template.version,
        "confidence_mode": confidence_mode,
        "sampling": client.params.as_dict(),
        "template": client.template.record(),  # with the store's texts, rebuilds every request (prefgen show)
    }


def confidence_mode(config: LabelConfig, supports_logprobs: bool) -> str:
    if config.samples > 1:
        return "self_consistency"
    if config.mode == "verbalised":
        return "verbalised"
    return "logprobs" if supports_logprobs and config.mode == "direct" else "verdict"


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


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """About four characters a token for English: enough for a budget check and a dry-run estimate."""
    return sum(len(m["content"]) for m in messages) // 4 + 8 * len(messages)


class LabelRun:
    """One invocation of the label pipeline over an open store, fed a chunk of pairs at a time (`plan`).

    `write` stores a batch of judgement rows with the run's progress (calls sent, spend): the store by
    default, Parquet shards in a Ray worker. `budget` is the job's `Budget` (a Ray worker's draws on a budget
    shared by every worker)."""

    def __init__(self, config: LabelConfig, store: Store | None, client: JudgeClient, constitution: Constitution,
                 job_id: str, *, run_id: str | None = None, budget: Budget | None = None,
                 write: Callable[[list[Judgement], tuple[str, int, float]], object] | None = None) -> None:
        self.config = config
        self.store = store
        self.client = client
        self.constitution = constitution
        self._constitution_id = constitution.id  # a content hash over the whole model: once, not per judgement
        self.job_id = job_id
        self.run_id = run_id or f"run-{uuid.uuid4().hex[:12]}"
        self.write = write or (lambda rows, progress: labels_sql.save_judgements(store, rows, run=progress))
        self.budget = budget or Budget(config.max_cost, already=labels_sql.job_spend(store, job_id))
        self.stop = asyncio.Event()
        self.buffer: list[Judgement] = []
        self.pairs = 0
        self.planned = 0
        self.cached = 0
        self.sent = 0
        self.errors = 0
        self.parse_errors = 0
        self.first_batch: FirstBatch | None = None
        self.tokens_in = 0
        self.tokens_out = 0
        self.kept = 0
        self.decided = 0
        self.progress: LabelProgress | None = None
        self._busy_until = 0.0  # a write found the store held by a reader: no new try before then
        self._chunk_done = True
        self.tasks: list[Task] = []
        self.answers: dict[str, Answer] = {}
        self._order_hashes: dict[tuple[str, str], dict[str, str]] = {}

    # -- planning -----------------------------------------------------------------------------------------
    def plan(self, pairs: list[Pair]) -> list[Task]:
        """Plan the calls of one chunk of pairs; the previous chunk's tasks and answers are let go."""
        self.tasks = plan_tasks(self.client, self.constitution, pairs)
        self.answers = {}
        self._order_hashes = {}
        for task in self.tasks:
            self._order_hashes.setdefault((task.pair_id, task.principle_id), {})[task.ordering] = task.request_hash
        self.pairs += len(pairs)
        self.planned += len(self.tasks)
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
        unique: dict[str, Task] = {}
        for task in self.tasks:
            if task.request_hash not in self.answers:
                unique.setdefault(task.request_hash, task)
        self.cached += len(self.tasks) - len(unique)
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
            with self.store.briefly(_FINAL_WAIT_S):  # a reader may hold the store between batches
                labels_sql.save_pairs(self.store, pairs)
                todo = self.tasks_to_send()
            status = await self.send_all(todo) if todo else "finished"
            if status != "finished":
                return status
            self.finish_chunk()
        return "finished"

    def finish_chunk(self) -> None:
        """Write what is answered and derive the chunk's preferences (once)."""
        self.flush(wait_s=_FINAL_WAIT_S)
        if not self._chunk_done:
            with self.store.briefly(_FINAL_WAIT_S):
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
                    bound = self.client.upper_bound_cost(task.messages)
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

                    verdict = await self.client.judge(task.messages, may_retry=may_retry)
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

    def _record(self, task: Task, verdict: Verdict) -> None:
        self.sent += 1
        self.tokens_in += verdict.tokens_in
        self.tokens_out += verdict.tokens_out
        if verdict.status == JUDGE_ERROR:
            self.errors += 1
        else:
            self.parse_errors += verdict.status == PARSE_ERROR
            self.answers[task.request_hash] = Answer(verdict.status, verdict.p_first, verdict.confidence_source)
        self.buffer.append(self._judgement(task, verdict))
        self._update_live_counts(task)
        if self.progress:
            self.progress.advance(self.sent, self.budget.spent, self.kept, self.decided)

    def _judgement(self, task: Task, verdict: Verdict) -> Judgement:
        return Judgement(
            request_hash=task.request_hash, job_id=self.job_id, run_id=self.run_id, pair_id=task.pair_id,
            constitution_id=self._constitution_id, principle_id=task.principle_id, ordering=task.ordering,
            backend=self.client.backend.name, model=self.client.backend.model,
            template_version=self.client.template.version, raw_text=verdict.raw_text, verdict=verdict.letter,
            p_first=verdict.p_first, confidence_source=verdict.confidence_source, status=verdict.status,
            tokens_in=verdict.tokens_in, tokens_out=verdict.tokens_out, cost=verdict.cost,
            latency_s=verdict.latency_s, attempts=verdict.attempts, error=verdict.error,
        )

    def _update_live_counts(self, task: Task) -> None:
        hashes = self._order_hashes[(task.pair_id, task.principle_id)]
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
                self.write(self.buffer, (self.run_id, self.sent, self.budget.spent))
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
        answers = {
            h: a for h, a in labels_sql.stored_answers(self.store, [t.request_hash for t in self.tasks]).items()
            if a.status == JUDGE_ERROR
        } | self.answers
        orders = {key: (answers.get(hashes["ab"]), answers.get(hashes["ba"]))
                  for key, hashes in self._order_hashes.items()}
        prefs, pair_prefs = preferences_from_answers(
            self.job_id, orders, lambda principle_id: self.constitution.principle(principle_id).weight,
            self.config.threshold)
        labels_sql.save_preferences(self.store, prefs, pair_prefs)


def preferences_from_answers(job_id: str, orders: dict[tuple[str, str], tuple[Answer | None, Answer | None]],
                             weight: Callable[[str], float], threshold: float
                             ) -> tuple[list[Preference], list[PairPreference]]:
    """The preferences of (pair, principle) -> (answer A/B, answer B/A), and of each pair over its principles
    (weighted by `weight(principle_id)`): what a run derives, and `prefgen ingest` too."""
    prefs = []
    by_pair: dict[str, list[tuple[SwapResult, float]]] = {}
    for (pair_id, principle_id), (ab, ba) in orders.items():
        pref = preference(job_id, pair_id, principle_id, ab, ba, threshold)
        prefs.append(pref)
        by_pair.setdefault(pair_id, []).append((pref, weight(principle_id)))
    pair_prefs = [pair_preference(job_id, pair_id, results, threshold) for pair_id, results in by_pair.items()]
    return prefs, pair_prefs


class _CtrlC:
    """First Ctrl-C: stop sending, finish the calls in flight, write everything. Second: stop now (the calls in
    flight are abandoned; everything answered is still written). Presses while the final writes and the summary
    run are ignored, so those finish: they take a moment, and a traceback out of them helps nobody.

    Raising KeyboardInterrupt from a loop callback would leave the main task half-run; cancelling it instead lets
    its `finally` write everything, and `run_label` turns the cancellation into KeyboardInterrupt.
    """

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.finishing = False
        self.cancelled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None

    def install(self) -> _CtrlC:
        # Only the main thread may set signal handlers, and Windows event loops have none: there the default
        # KeyboardInterrupt still applies, and the store stays consistent because every batch is a transaction.
        if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
            return self
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        self._loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self) -> None:
        if self.finishing:
            return
        if not self.stop.is_set():
            self.stop.set()
            return
        self.finishing = self.cancelled = True
        if self._task is not None:
            self._task.cancel()

    def remove(self) -> None:
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGINT)
            self._loop = None


def build_client(config: LabelConfig, constitution: Constitution) -> tuple[JudgeClient, str]:
    spec = parse_spec(config.judge)
    # Every setting on offer; each backend takes the ones it declares (`Backend.options`).
    settings = dict(api_key=config.api_key, timeout=config.timeout_s, concurrency=config.concurrency,
                    transport=config.transport, batch_size=config.batch_size, allow_http_key=config.allow_http_key)
    bases = split_api_bases(config.api_base)
    if len(bases) > 1:
        backend = Fleet([make_backend(spec, api_base=base, **settings) for base in bases])
    else:
        backend = make_backend(spec, api_base=config.api_base, **settings)
    template = make_template(constitution.judge_template, config.mode)
    params = template.sampling(samples=config.samples)
    if not backend.supports_logprobs and params.logprobs:
        params = dataclasses.replace(params, logprobs=False)
    price = resolve_price(backend.model, backend.name, config.price_in, config.price_out)
    if config.max_cost is not None and price is None:
        raise PrefgenError(
            f"--max-cost needs a price, and none is known for model {backend.model!r}: "
            "pass --price-in and --price-out (USD per million tokens)"
        )
    client = JudgeClient(backend, template, params, price=price, max_attempts=config.max_attempts,
                         timeout_s=config.timeout_s)
    return client, spec.text


def count_planned_calls(config: LabelConfig, constitution: Constitution,
                        tally: PairsRead | None = None) -> tuple[PairsRead, int]:
    """The first pass: every row validated (so bad input writes nothing) and the calls counted, for the
    progress bar's total, without keeping the pairs."""
    tally = PairsRead([]) if tally is None else tally
    calls = 0
    for pair in iter_pairs(config.pairs, tally, limit=config.limit, skip_bad=config.skip_bad):
        calls += 2 * len(sample_principles(constitution, pair.id))
    return tally, calls


def chunks_of(config: LabelConfig, tally: PairsRead) -> Iterator[list[Pair]]:
    return pair_batches(config.pairs, tally, config.chunk_pairs, limit=config.limit, skip_bad=config.skip_bad)


@dataclass
class DryRunEstimate:
    """Calls, tokens and cost of what a run would send, added up a chunk at a time."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_max: float = 0.0

    def add(self, client: JudgeClient, todo: list[Task]) -> None:
        self.calls += len(todo)
        self.tokens_in += sum(estimate_tokens(t.messages) for t in todo)
        self.tokens_out += len(todo) * client.params.max_tokens * client.params.n
        if client.price:
            self.cost_max += sum(client.upper_bound_cost(t.messages) for t in todo)

    def as_dict(self, client: JudgeClient) -> dict[str, Any]:
        price = client.price
        return {
            "calls": self.calls,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost": price.cost(self.tokens_in, self.tokens_out) if price else None,
            # What --max-cost reserves: the most these calls can cost (one token per byte in, max_tokens out).
            "cost_max": self.cost_max if price else None,
            "priced": price is not None,
        }


def label_identity(config: LabelConfig) -> tuple[Constitution, JudgeClient, str, str, str]:
    """(constitution, client, judge spec, confidence mode, job id): what the single-process and Ray paths share."""
    constitution = load_constitution(config.constitution)
    client, spec_text = build_client(config, constitution)
    mode = confidence_mode(config, client.backend.supports_logprobs)
    job_id = content_hash(["label-job", constitution.id, client.identity, mode], length=16)
    return constitution, client, spec_text, mode, job_id


async def label_async(config: LabelConfig) -> LabelSummary:
    constitution, client, spec_text, mode, job_id = label_identity(config)
    for warning in start_warnings(config, mode, spec_text):
        log.warning(warning)
    started = time.perf_counter()
    first, calls = (None, 0) if config.dry_run else count_planned_calls(config, constitution)
    # A dry run against a store that does not exist yet uses an empty one in memory: nothing is cached.
    dry_and_new = config.dry_run and not config.db.exists()
    store = Store(":memory:" if dry_and_new else config.db)
    run_lock = ctrl_c = None
    try:
        run = LabelRun(config, store, client, constitution, job_id)
        read = PairsRead([])
        if config.dry_run:
            estimate = DryRunEstimate()
            for pairs in chunks_of(config, read):
                run.plan(pairs)
                estimate.add(client, run.tasks_to_send())
            return label_summary(run, "dry_run", started, estimated=estimate.as_dict(client), read=read)
        run_lock = hold_run_lock(config.db)
        save_inputs(store, config, constitution, job_record(job_id, constitution, spec_text, client, mode))
        labels_sql.mark_interrupted_runs(store)  # a run still 'running' while we hold the run lock was killed
        labels_sql.start_run(store, run_id=run.run_id, job_id=job_id, command="label",
                     args=config.model_dump(mode="json", exclude={"api_key"}))
        status = "failed"
        ctrl_c = _CtrlC(run.stop).install()
        try:
            with LabelProgress(calls, enabled=config.progress, priced=client.price is not None) as progress:
                run.progress = progress
                # Other processes (stats, sql, agreement) may open the store while the judge is asked: once one
                # waits, each batch holds it only while it commits. Held again at the end to derive preferences.
                with store.shared(wait_s=_FINAL_WAIT_S):
                    status = await run.label_chunks(chunks_of(config, read))
        except (KeyboardInterrupt, asyncio.CancelledError):
            status = "interrupted"  # a second Ctrl-C: what was answered is still written below
            raise
        finally:
            ctrl_c.finishing = True
            run.finish_chunk()
            labels_sql.finish_run(store, run.run_id, status=status, n_pairs=first.count,
                          n_calls_planned=calls, n_calls_cached=run.cached, n_calls_sent=run.sent,
                          cost=run.budget.spent)
        return label_summary(run, status, started, read=first, planned=calls)
    finally:
        await client.backend.aclose()
        store.close()
        if run_lock is not None:
            run_lock.release()
        # Last, and on every way out (an interrupted run too): a handler still installed when asyncio closes the
        # loop meets a Ctrl-C after the loop's wake-up pipe is closed, and CPython prints a traceback for it.
        if ctrl_c is not None:
            ctrl_c.remove()


def hold_run_lock(db: Path) -> Any:
    """One label run per store at a time. The store itself is let go of between batches (readers get in), so
    the DuckDB lock no longer keeps a second run out: a lock file next to the store does (`DB.label.lock`,
    released by the OS if the process dies). Holding it is also what lets a run mark the 'running' runs it
    finds as killed."""
    import filelock

    lock = filelock.FileLock(f"{db}.label.lock", timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise PrefgenError(f"{db}: another `prefgen label` is writing this store; let it finish (follow it with "
                           "`prefgen stats`), or stop it with Ctrl-C first") from None
    return lock


def start_warnings(config: LabelConfig, mode: str, spec_text: str) -> list[str]:
    """What the user should know before a call is sent: a --threshold that cannot filter anything."""
    if mode != "verdict" or config.threshold <= 0:
        return []
    why = "--mode cot answers with a letter" if config.mode == "cot" else "this backend gives no logprobs"
    return [f"{spec_text} gives hard A/B verdicts ({why}): every consistent pair has confidence 1, so "
            f"--threshold {config.threshold:g} filters nothing. For a graded confidence use --mode verbalised "
            "or --samples N."]


def outcome_warnings(config: LabelConfig, mode: str, sources: dict[str, int], parse_errors: int,
                     failures: list[dict[str, Any]]) -> list[str]:
    """What the answers showed about their confidence, for the summary."""
    warnings = []
    hard = sources.get(SOURCE_VERDICT, 0)
    if hard and config.threshold > 0:
        answers = sum(sources.values())
        what = "the server sent no logprobs for them" if mode == "logprobs" else "hard A/B verdicts"
        warnings.append(f"{hard} of {answers} answers have no graded confidence ({what}); "
                        f"--threshold {config.threshold:g} cannot filter them (use --mode verbalised or --samples N).")
    no_confidence = sum(f["calls"] for f in failures if "Confidence" in (f["error"] or ""))
    if mode == "verbalised" and no_confidence:
        warnings.append(f"{no_confidence} of the answers gave no `Confidence: N` line, so they count as parse "
                        "errors: this judge does not follow --mode verbalised; try --samples N (self-consistency) "
                        "or a backend with logprobs.")
    elif parse_errors and not no_confidence:
        warnings.append(f"{parse_errors} answers named no verdict (parse errors): see the reasons above.")
    return warnings


def save_inputs(store: Store, config: LabelConfig, constitution: Constitution, job: dict[str, Any]) -> None:
    labels_sql.save_constitution(
        store, cid=constitution.id, name=constitution.name, version=str(constitution.version),
        source=str(config.constitution), body=constitution.model_dump(mode="json"),
        principles=[{"principle_id": p.id, "text": p.text, "weight": p.weight, "category": p.category}
                    for p in constitution.principles],
    )
    labels_sql.save_job(store, job)


def label_summary(run: LabelRun, status: str, started: float, estimated: dict[str, Any] | None = None,
             read: PairsRead | None = None, planned: int | None = None) -> LabelSummary:
    counts = labels_sql.job_summary(run.store, run.job_id) if estimated is None else {}
    bias = labels_sql.job_position_stats(run.store, run.job_id) if estimated is None else {}
    failures = labels_sql.run_failures(run.store, run.run_id) if estimated is None else []
    sources = labels_sql.run_confidence_sources(run.store, run.run_id) if estimated is None else {}
    mode = confidence_mode(run.config, run.client.backend.supports_logprobs)
    return LabelSummary(
        run_id=run.run_id, job_id=run.job_id, status=status, pairs=read.count if read else run.pairs,
        calls_planned=run.planned if planned is None else planned, calls_cached=run.cached,
        calls_sent=run.sent, judge_errors=run.errors,
        tokens_in=run.tokens_in, tokens_out=run.tokens_out, cost=run.budget.spent,
        elapsed_s=time.perf_counter() - started, kept_pairs=counts.get("kept_pairs", 0),
        kept_preferences=counts.get("kept_preferences", 0), preferences=counts.get("preferences", 0),
        drop_reasons=counts.get("reasons", {}), first_slot_share=bias.get("first_slot_share"),
        consistency_rate=bias.get("consistency_rate"), estimated=estimated,
        job_cost=run.budget.already + run.budget.spent,
        skipped=list(read.skipped) if read else [], duplicates=read.duplicates if read else 0,
        max_cost=run.config.max_cost, priced=run.client.price is not None, parse_errors=run.parse_errors,
        failures=failures, stopped_early=_stopped_early(run),
        # What the answers showed, or what was said at the start when no answer came.
        warnings=outcome_warnings(run.config, mode, sources, run.parse_errors, failures)
        or start_warnings(run.config, mode, run.config.judge),
    )


def _stopped_early(run: LabelRun) -> str | None:
    """Why the run stopped after its first batch, in the provider's words, and what to check."""
    fatal = run.first_batch.fatal if run.first_batch else None
    if fatal is None:
        return None
    backend = run.client.backend
    hint = what_to_check(failure_kind(fatal), backend.name, provider=getattr(backend, "provider", None),
                         api_base=redact(run.config.api_base) if run.config.api_base else None)
    return (f"stopped after the first {run.first_batch.size} calls, which all failed: {fatal.rstrip('.')}. "
            f"What to check: {hint}.")


def run_label(config: LabelConfig) -> LabelSummary:
    """Synchronous entry point (the CLI, tests and notebooks call this). A second Ctrl-C ends in
    KeyboardInterrupt after everything answered is written. Inside a running event loop (Jupyter) the run
    gets its own loop in a worker thread; `await label_async(config)` is the async variant."""
    if config.engine == "ray":
        from prefgen.pipelines.label_ray import run_label_ray

        return run_label_ray(config)
    try:
        return run_coroutine(label_async(config))
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
