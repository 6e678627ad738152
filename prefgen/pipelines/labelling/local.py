"""The asyncio engine of `prefgen label` (the default, `--engine local`): one process, every call in flight on one
event loop, answers written to the store in batches.

Flow: read and validate everything first (nothing is written for bad input) -> then, a chunk of pairs at a
time: plan every request and its hash -> skip what the store already answered -> send the rest with bounded
concurrency, a cost budget and retries -> write judgements in batches -> derive per-principle and per-pair
preferences from the answers. Re-running the same command resumes: a stored answer is never asked (or paid
for) twice. Both passes stream the input, so memory holds one chunk (`--chunk-pairs`), not the input.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time

from prefgen.pipelines.configs import LabelConfig
from prefgen.pipelines.labelling.batch import BatchRun, batch_client, collect_ended_batches
from prefgen.pipelines.labelling.inputs import PairsRead
from prefgen.pipelines.labelling.job import DryRunEstimate, LabelJob
from prefgen.pipelines.labelling.progress import LabelProgress
from prefgen.pipelines.labelling.run import LabelSummary, RunLifecycle, label_summary, stopped_early_reason
from prefgen.pipelines.labelling.sender import FINAL_WAIT_S, LabelRun
from prefgen.pipelines.labelling.sync import run_coroutine
from prefgen.signals import GRACEFUL, note, signal_name
from prefgen.storage.db import Store

log = logging.getLogger("prefgen.label")


async def label_async(config: LabelConfig) -> LabelSummary:
    job = LabelJob.from_config(config)
    for warning in job.start_warnings():
        log.warning(warning)
    try:
        if config.dry_run:
            return dry_run(job)
        return await _label(job)
    finally:
        await job.client.backend.aclose()


def dry_run(job: LabelJob) -> LabelSummary:
    """Calls, tokens and cost of what the run would send; nothing is sent or written. A store that does not
    exist yet is an empty one in memory: nothing is cached."""
    config = job.config
    started = time.perf_counter()
    with Store(":memory:" if not config.db.exists() else config.db) as store:
        run = LabelRun(job, store, run_id="dry-run")
        run.batches_open = True  # calls waiting in a provider batch of the job will not be sent either
        read, estimate = PairsRead([]), DryRunEstimate(batch=config.batch)
        for pairs in job.chunks(read):
            run.plan(pairs)
            estimate.add(job.client, run.tasks_to_send())
        return label_summary(store, job, run.run_id, "dry_run", run.counts, started=started,
                             already=run.budget.already, read=read, estimated=estimate.as_dict(job.client))


async def _label(job: LabelJob) -> LabelSummary:
    config = job.config
    first, calls = job.count_planned_calls()
    batches = batch_client(job) if config.batch else None  # refused before anything is written
    with RunLifecycle(job) as life, Store(config.db) as store:
        life.start(store)
        run = LabelRun(job, store, life.run_id)
        batch = BatchRun(run, batches) if batches is not None else None
        status, waiting = "failed", 0
        ctrl_c = _CtrlC(run.stop).install()
        try:
            try:
                with LabelProgress(calls, enabled=config.progress, priced=job.client.price is not None) as progress:
                    run.progress = progress
                    # Other processes (stats, sql, agreement) may open the store while the judge is asked: once
                    # one waits, each batch holds it only while it commits. Held again at the end.
                    with store.shared(wait_s=FINAL_WAIT_S):
                        if batch is not None:
                            status = await batch.label(lambda: job.chunks(PairsRead([])))
                        else:
                            waiting = await collect_ended_batches(run, job)
                            status = await run.label_chunks(job.chunks(PairsRead([])))
            except (KeyboardInterrupt, asyncio.CancelledError):
                status = "interrupted"  # a second Ctrl-C: what was answered is still written below
                raise
            finally:
                ctrl_c.finishing = True
                run.finish_chunk()
                run.counts.planned = calls
                life.finish(store, status, run.counts, pairs=first.count, planned=calls)
                store.checkpoint()  # the answers now live in the file itself, not only in its WAL
                if batches is not None:
                    await batches.aclose()
            if batch is not None:
                fatal, size = batch.fatal, batch.fatal_calls
            else:
                fatal = run.first_batch.fatal if run.first_batch else None
                size = run.first_batch.size if fatal else 0
            summary = label_summary(store, job, life.run_id, status, run.counts, started=life.started,
                                    sending=life.sending,
                                    already=run.budget.already, read=first,
                                    stopped_early=stopped_early_reason(job, fatal, size),
                                    batches=batch.counts() if batch is not None else None, waiting=waiting)
            summary.stopped_by = signal_name(ctrl_c.signum) if status == "interrupted" else None
            return summary
        finally:
            # Last, and on every way out (an interrupted run too): a handler still installed when asyncio closes
            # the loop meets a Ctrl-C after the loop's wake-up pipe is closed, and CPython prints a traceback.
            ctrl_c.remove()


class _CtrlC:
    """Ctrl-C, and SIGTERM and SIGHUP alike (`timeout`, systemd, Kubernetes, Slurm, a closed ssh session). The
    first: stop sending, finish the calls in flight, write everything. The second: stop now (the calls in flight
    are abandoned; everything answered is still written). Signals while the final writes and the summary run are
    ignored, so those finish: they take a moment, and a traceback out of them helps nobody. `signum` is the
    first signal: the exit code says which one it was (130, 143, 129).

    Raising KeyboardInterrupt from a loop callback would leave the main task half-run; cancelling it instead lets
    its `finally` write everything, and `run_label` turns the cancellation into KeyboardInterrupt.
    """

    SIGNALS = (signal.SIGINT, *GRACEFUL)

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.finishing = False
        self.cancelled = False
        self.signum: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> _CtrlC:
        # Only the main thread may set signal handlers, and Windows event loops have none: there the default
        # KeyboardInterrupt still applies, and the store stays consistent because every batch is a transaction.
        if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
            return self
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        for sig in self.SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            self._loop.add_signal_handler(sig, self._on_signal, sig)
        return self

    def _on_signal(self, sig: int) -> None:
        if self.finishing:
            return
        if not self.stop.is_set():
            self.signum = sig
            note(sig)
            self.stop.set()
            return
        self.finishing = self.cancelled = True
        if self._task is not None:
            self._task.cancel()

    def remove(self) -> None:
        """Hand the signals back to the handlers they had (asyncio itself would leave SIGTERM and SIGHUP to
        their default, which ends the process on the spot while the summary prints)."""
        if self._loop is not None:
            for sig, previous in self._previous.items():
                self._loop.remove_signal_handler(sig)
                if previous is not None:
                    signal.signal(sig, previous)
            self._loop = None



def run_label(config: LabelConfig) -> LabelSummary:
    """Synchronous entry point of the asyncio engine. A second Ctrl-C ends in KeyboardInterrupt after everything
    answered is written. Inside a running event loop (Jupyter) the run gets its own loop in a worker thread;
    `await label_async(config)` is the async variant."""
    try:
        return run_coroutine(label_async(config))
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
