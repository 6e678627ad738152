"""One label run's life on its store, whichever engine sends the calls (`local`: asyncio in this process;
`ray`: Ray workers writing shards).

`RunLifecycle` takes the run lock (one label run per store: a lock file beside it), records the job's inputs,
marks the runs a killed process left 'running' as interrupted (safe only while holding that lock), starts the
run's row, and at the end finishes it and builds the summary from a `RunCounts`. Both engines drive it, so a
run started by either one behaves the same towards a run of the other.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from prefgen.errors import ExitCode, PrefgenError
from prefgen.judge.base import SOURCE_VERDICT
from prefgen.judge.diagnose import failure_kind, what_to_check
from prefgen.pipelines.configs import LabelConfig
from prefgen.pipelines.labelling.inputs import PairsRead
from prefgen.pipelines.labelling.job import LabelJob
from prefgen.redact import redact
from prefgen.storage import labels as labels_sql
from prefgen.storage.db import Store


@dataclass
class RunCounts:
    """What a run did, added up: by one `LabelRun`, or over the chunks of every Ray worker."""

    pairs: int = 0
    planned: int = 0
    cached: int = 0
    sent: int = 0
    errors: int = 0  # judge errors (stored, asked again next run)
    parse_errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    spent: float = 0.0
    in_batches: int = 0  # calls left out because they wait in a provider batch of the job (`label --batch`)

    def add(self, other: RunCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


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
    elapsed_s: float  # store open to summary: everything the run did in this process but read its input
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
    batches: dict[str, int] | None = None  # --batch: provider batches submitted, collected and still open
    calls_in_batches: int = 0  # calls left out because they wait in a provider batch of the job
    stopped_by: str | None = None  # the signal that interrupted the run: SIGINT (Ctrl-C), SIGTERM or SIGHUP
    sending_s: float | None = None  # the run row's start to its finish (see `calls_per_s`)

    @property
    def calls_per_s(self) -> float:
        """Calls sent per second of the run's span on record (its row's start to finish, as the report page
        reads it), or of the whole elapsed time when there is none (a dry run)."""
        span = self.sending_s if self.sending_s is not None else self.elapsed_s
        return self.calls_sent / span if span > 0 else 0.0

    @property
    def exit_code(self) -> ExitCode:
        """What `prefgen label` exits with (docs/exit-codes.md): the stop reason first, then failed calls."""
        if self.status == "interrupted":
            return ExitCode.for_signal(self.stopped_by)
        if self.status == "budget_stopped":
            return ExitCode.BUDGET_REACHED
        if self.stopped_early:  # the first calls all failed the same way, or a --batch could not be sent or polled
            return ExitCode.ALL_CALLS_FAILED
        if self.calls_sent and self.judge_errors + self.parse_errors >= self.calls_sent:
            return ExitCode.ALL_CALLS_FAILED
        if self.judge_errors:
            return ExitCode.CALLS_FAILED
        return ExitCode.OK


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


def release_run_lock(lock: Any) -> None:
    """Let go of the run lock and leave no `DB.label.lock` file beside the store. The file is removed while
    the lock is still held: every run tries the lock without waiting, so none can be queued on this file, and a
    run that starts after the removal locks a new one."""
    with contextlib.suppress(OSError):
        Path(lock.lock_file).unlink()
    lock.release()


class RunLifecycle:
    """The run lock from `__enter__` to `__exit__`; `start` and `finish` write the run's row on a store the
    engine holds at that moment (the Ray engine closes it in between, while its workers read it)."""

    def __init__(self, job: LabelJob) -> None:
        self.job = job
        self.run_id = f"run-{uuid.uuid4().hex[:12]}"
        self.started = time.perf_counter()
        # Between the run row's start and its finish: what the summary's calls/s and the report page's (the row's
        # finished_at - started_at) both divide by, so that they give the same figure for the same run.
        self.sending: tuple[float, float | None] | None = None
        self._lock: Any = None

    def __enter__(self) -> RunLifecycle:
        self._lock = hold_run_lock(self.job.config.db)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            release_run_lock(self._lock)
            self._lock = None

    def start(self, store: Store) -> None:
        """Record the inputs, mark runs a killed process left 'running' (we hold the run lock, so none of them
        is alive), and start this run's row."""
        job = self.job
        job.save_inputs(store)
        labels_sql.mark_interrupted_runs(store)
        labels_sql.start_run(store, run_id=self.run_id, job_id=job.job_id, command="label",
                             args=job.config.model_dump(mode="json", exclude={"api_key"}))
        self.sending = (time.perf_counter(), None)

    def finish(self, store: Store, status: str, counts: RunCounts, *, pairs: int, planned: int) -> None:
        labels_sql.finish_run(store, self.run_id, status=status, n_pairs=pairs, n_calls_planned=planned,
                              n_calls_cached=counts.cached, n_calls_sent=counts.sent, cost=counts.spent)
        if self.sending is not None:
            self.sending = (self.sending[0], time.perf_counter())


def label_summary(store: Store, job: LabelJob, run_id: str, status: str, counts: RunCounts, *, started: float,
                  already: float, sending: tuple[float, float | None] | None = None, read: PairsRead | None = None, stopped_early: str | None = None,
                  estimated: dict[str, Any] | None = None, batches: dict[str, int] | None = None,
                  waiting: int = 0) -> LabelSummary:
    """The summary a run prints: its counts, and what the store says of the job now (kept pairs, drop reasons,
    position bias, this run's failures). A dry run (`estimated`) reads nothing of the store's answers."""
    config = job.config
    real = estimated is None
    outcome = labels_sql.job_summary(store, job.job_id) if real else {}
    bias = labels_sql.job_position_stats(store, job.job_id) if real else {}
    failures = labels_sql.run_failures(store, run_id) if real else []
    sources = labels_sql.run_confidence_sources(store, run_id) if real else {}
    return LabelSummary(
        run_id=run_id, job_id=job.job_id, status=status, pairs=read.count if read else counts.pairs,
        calls_planned=counts.planned, calls_cached=counts.cached, calls_sent=counts.sent,
        judge_errors=counts.errors, tokens_in=counts.tokens_in, tokens_out=counts.tokens_out, cost=counts.spent,
        elapsed_s=time.perf_counter() - started,
        sending_s=(sending[1] or time.perf_counter()) - sending[0] if sending else None,
        kept_pairs=outcome.get("kept_pairs", 0),
        kept_preferences=outcome.get("kept_preferences", 0), preferences=outcome.get("preferences", 0),
        drop_reasons=outcome.get("reasons", {}), first_slot_share=bias.get("first_slot_share"),
        consistency_rate=bias.get("consistency_rate"), estimated=estimated, job_cost=already + counts.spent,
        skipped=list(read.skipped) if read else [], duplicates=read.duplicates if read else 0,
        max_cost=config.max_cost, priced=job.client.price is not None, parse_errors=counts.parse_errors,
        failures=failures, stopped_early=stopped_early,
        # What the answers showed, or what was said at the start when no answer came.
        warnings=(outcome_warnings(config, job.mode, sources, counts.parse_errors, failures) or job.start_warnings())
        + batch_warnings(counts, waiting),
        batches=batches, calls_in_batches=counts.in_batches,
    )


def batch_warnings(counts: RunCounts, waiting: int) -> list[str]:
    """A run asked directly that left out calls waiting in a provider batch of the job."""
    if not counts.in_batches:
        return []
    return [f"{counts.in_batches} calls wait in provider batches of this job ({waiting} calls in all) and were "
            "not asked again; run the same command with --batch to wait for them, or run it again later: ended "
            "batches are collected first."]


def stopped_early_reason(job: LabelJob, fatal: str | None, calls: int) -> str | None:
    """Why the run stopped after its first `calls` calls (`fatal`: the first one's error), in the provider's
    words, and what to check."""
    if fatal is None:
        return None
    backend = job.client.backend
    api_base = job.config.api_base
    hint = what_to_check(failure_kind(fatal), backend.name, provider=getattr(backend, "provider", None),
                         api_base=redact(api_base) if api_base else None)
    return f"stopped after the first {calls} calls, which all failed: {fatal.rstrip('.')}. What to check: {hint}."


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
