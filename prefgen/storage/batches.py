"""SQL for provider batch jobs (`label --batch`): the batches a job handed to a provider and the calls in each.

A batch is recorded with its calls before it is submitted ('submitting'), gets the provider's id once accepted
('submitted'), and is 'collected' once its answers are stored as judgements. A run that finds batches of its job
not collected polls them instead of asking their calls again; a sync run leaves their calls out.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from prefgen.storage.db import Store, registered

OPEN = ("submitting", "submitted", "ended")  # not collected yet: their calls are at the provider (or may be)


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One call of a batch: what a judgement row needs besides the answer."""

    request_hash: str
    pair_id: str
    principle_id: str
    ordering: str
    bound_in: int  # the call's upper bound on input and output tokens (JudgeClient.upper_bound_tokens)
    bound_out: int


def record_batch(store: Store, *, batch_key: str, job_id: str, run_id: str, backend: str, model: str,
                 items: Sequence[BatchItem], reserved: float) -> None:
    """The batch and its calls, before the provider sees it: a kill after the submit leaves a row to look for."""
    table = pa.table({
        "batch_key": pa.array([batch_key] * len(items), pa.string()),
        "request_hash": [i.request_hash for i in items], "pair_id": [i.pair_id for i in items],
        "principle_id": [i.principle_id for i in items], "ordering": [i.ordering for i in items],
        "bound_in": pa.array([i.bound_in for i in items], pa.int32()),
        "bound_out": pa.array([i.bound_out for i in items], pa.int32()),
    })
    with store.transaction(), registered(store.con, "_prefgen_items", table):
        store.con.execute(
            """INSERT INTO label_batches (batch_key, job_id, run_id, backend, model, status, n_requests, reserved,
                                          submitted_s, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, 'submitting', ?, ?, ?, now(), now())""",
            [batch_key, job_id, run_id, backend, model, len(items), reserved, time.time()],
        )
        store.con.execute("INSERT OR IGNORE INTO label_batch_items BY NAME SELECT * FROM _prefgen_items")


def mark_submitted(store: Store, batch_key: str, provider_batch_id: str) -> None:
    store.con.execute(
        """UPDATE label_batches SET provider_batch_id = ?, status = 'submitted', updated_at = now()
           WHERE batch_key = ?""",
        [provider_batch_id, batch_key],
    )


def update_status(store: Store, batch_key: str, *, status: str, provider_status: str | None,
                  completed: int | None = None, failed: int | None = None, error: str | None = None,
                  cost: float | None = None) -> None:
    store.con.execute(
        """UPDATE label_batches SET status = ?, provider_status = coalesce(?, provider_status),
               n_completed = coalesce(?, n_completed), n_failed = coalesce(?, n_failed), error = coalesce(?, error),
               cost = coalesce(?, cost), updated_at = now()
           WHERE batch_key = ?""",
        [status, provider_status, completed, failed, error, cost, batch_key],
    )


def forget_unsubmitted(store: Store, batch_key: str, error: str) -> None:
    """A batch the provider never accepted: its calls are free to be asked again."""
    with store.transaction():
        store.con.execute("DELETE FROM label_batch_items WHERE batch_key = ?", [batch_key])
        store.con.execute(
            "UPDATE label_batches SET status = 'failed', error = ?, updated_at = now() WHERE batch_key = ?",
            [error, batch_key],
        )


def open_batches(store: Store, job_id: str) -> list[dict[str, Any]]:
    """The job's batches not collected yet, oldest first."""
    return store.dicts(
        f"""SELECT batch_key, provider_batch_id, status, provider_status, n_requests, reserved, run_id,
                   submitted_s AS created_s
            FROM label_batches WHERE job_id = ? AND status IN {OPEN} ORDER BY created_at, batch_key""",
        [job_id],
    )


def known_provider_ids(store: Store) -> set[str]:
    return {row[0] for row in store.con.execute(
        "SELECT provider_batch_id FROM label_batches WHERE provider_batch_id IS NOT NULL").fetchall()}


def batch_items(store: Store, batch_key: str) -> list[BatchItem]:
    rows = store.con.execute(
        """SELECT request_hash, pair_id, principle_id, ordering, bound_in, bound_out
           FROM label_batch_items WHERE batch_key = ?""",
        [batch_key],
    ).fetchall()
    return [BatchItem(*row) for row in rows]


def in_open_batches(store: Store, job_id: str, hashes: Sequence[str]) -> set[str]:
    """Which of `hashes` wait in a batch of the job that is not collected yet."""
    with registered(store.con, "_wanted", pa.table({"request_hash": pa.array(hashes, pa.string())})):
        rows = store.con.execute(
            f"""SELECT DISTINCT i.request_hash FROM label_batch_items i JOIN _wanted USING (request_hash)
                JOIN label_batches b USING (batch_key) WHERE b.job_id = ? AND b.status IN {OPEN}""",
            [job_id],
        ).fetchall()
    return {row[0] for row in rows}


def job_batches(store: Store) -> list[dict[str, Any]]:
    """Every batch with its state, newest first (`prefgen stats`)."""
    return store.dicts(
        """SELECT job_id, provider_batch_id, backend, model, status, provider_status, n_requests, n_completed,
                  n_failed, reserved, cost, error, created_at, updated_at
           FROM label_batches ORDER BY created_at DESC"""
    )
