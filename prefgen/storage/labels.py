"""SQL for the labelling stage: constitutions, pairs, jobs, runs, judgements and preferences."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from prefgen.records import Answer, Judgement, Pair, PairPreference, Preference
from prefgen.redact import redact_value
from prefgen.storage.db import Store, registered, rows_to_arrow
from prefgen.storage.names import quote_name


def save_constitution(store: Store, *, cid: str, name: str, version: str | None, source: str,
                      body: dict[str, Any], principles: Sequence[dict[str, Any]]) -> None:
    with store.transaction():
        store.con.execute(
            "INSERT OR IGNORE INTO constitutions (id, name, version, source, body) VALUES (?, ?, ?, ?, ?)",
            [cid, name, version, source, json.dumps(body)],
        )
        store.insert_rows(
            "principles",
            [{"constitution_id": cid, **p, "position": i} for i, p in enumerate(principles)],
            on_conflict="ignore",
        )


def pair_row(pair: Pair) -> dict[str, Any]:
    prompt = pair.prompt if isinstance(pair.prompt, str) else json.dumps([dict(m) for m in pair.prompt])
    return {
        "id": pair.id,
        "prompt_id": pair.prompt_id,
        "prompt": prompt,
        "is_chat": pair.is_chat,
        "response_a": pair.response_a,
        "response_b": pair.response_b,
        "source": pair.source,
        "source_id": pair.source_id,
        "metadata": json.dumps(pair.metadata) if pair.metadata else None,
        "input_swapped": pair.input_swapped,
    }


def save_pairs(store: Store, pairs: Iterable[Pair]) -> int:
    """Pairs are content-addressed: a pair already stored (from any source) is kept as it is."""
    return store.insert_rows("pairs", [pair_row(p) for p in pairs], on_conflict="ignore")


def save_job(store: Store, job: dict[str, Any]) -> None:
    encoded = {key: json.dumps(job[key]) for key in ("sampling", "template") if key in job}
    store.insert_rows("label_jobs", [{**job, **encoded}], on_conflict="ignore")


def start_run(store: Store, *, run_id: str, job_id: str | None, command: str, args: dict[str, Any]) -> None:
    store.con.execute(
        "INSERT INTO runs (run_id, job_id, command, status, args) VALUES (?, ?, ?, 'running', ?)",
        [run_id, job_id, command, json.dumps(redact_value(args), default=str)],
    )


def finish_run(store: Store, run_id: str, *, status: str, n_pairs: int, n_calls_planned: int,
               n_calls_cached: int, n_calls_sent: int, cost: float) -> None:
    store.con.execute(
        """UPDATE runs SET status = ?, finished_at = now(), n_pairs = ?, n_calls_planned = ?,
               n_calls_cached = ?, n_calls_sent = ?, cost = ? WHERE run_id = ?""",
        [status, n_pairs, n_calls_planned, n_calls_cached, n_calls_sent, cost, run_id],
    )


def mark_interrupted_runs(store: Store) -> int:
    """Runs left 'running' were killed: DuckDB lets one process write a file, and we hold it. Marked so."""
    rows = store.con.execute(
        "UPDATE runs SET status = 'interrupted', finished_at = coalesce(finished_at, now()) "
        "WHERE status = 'running' RETURNING run_id"
    ).fetchall()
    return len(rows)


def job_spend(store: Store, job_id: str) -> float:
    """What a job's runs spent so far, killed ones included (their row is updated as batches commit); a run
    from before that has no cost on record counts the costs of its stored judgements."""
    row = store.con.execute(
        """SELECT coalesce(sum(coalesce(r.cost, (SELECT sum(j.cost) FROM judgements j WHERE j.run_id = r.run_id))),
                           0)
           FROM runs r WHERE r.job_id = ?""",
        [job_id],
    ).fetchall()[0]
    return float(row[0] or 0.0)


def _record_progress(store: Store, run: tuple[str, int, float] | None) -> None:
    if run is not None:
        run_id, sent, cost = run
        store.con.execute("UPDATE runs SET n_calls_sent = ?, cost = ? WHERE run_id = ?", [sent, cost, run_id])


def _hash_table(hashes: Sequence[str]) -> pa.Table:
    return pa.table({"request_hash": pa.array(hashes, pa.string())})


def stored_answers(store: Store, hashes: Sequence[str]) -> dict[str, Answer]:
    """The stored judgements among `hashes`, judge errors included (the caller decides what to retry)."""
    with registered(store.con, "_wanted", _hash_table(hashes)):
        rows = store.con.execute(
            """SELECT j.request_hash, j.status, j.p_first, j.confidence_source
               FROM judgements j JOIN _wanted w USING (request_hash)"""
        ).fetchall()
    return {h: Answer(status, p, src) for h, status, p, src in rows}


def stored_judge_errors(store: Store, hashes: Sequence[str]) -> dict[str, Answer]:
    """The stored judge errors among `hashes` (what a chunk's preferences count as failed, not pending)."""
    with registered(store.con, "_wanted", _hash_table(hashes)):
        rows = store.con.execute(
            """SELECT j.request_hash FROM judgements j JOIN _wanted w USING (request_hash)
               WHERE j.status = 'judge_error'"""
        ).fetchall()
    return {h: Answer("judge_error", None, None) for (h,) in rows}


def save_judgements(store: Store, rows: Sequence[Judgement], *, run: tuple[str, int, float] | None = None) -> int:
    """One batch, one transaction: a crash mid-run loses at most the batch in flight, never half of one.

    A stored answer is replaced only by a newer call for the same request, which the pipeline makes only
    when the stored row is a judge error.

    The batch is tried as a plain INSERT first: DuckDB's INSERT OR REPLACE costs about twice as much per row
    even when nothing conflicts, and conflicts are rare (re-asked judge errors). If any request is stored
    already, that transaction rolls back whole and the batch is written again with INSERT OR REPLACE, so the
    result is the same as replacing from the start.

    `run` = (run_id, calls sent, cost so far) updates the run's row in the same transaction.
    """
    if not rows:
        return 0
    if _insert_new_judgements(store, rows, run):
        return len(rows)
    with store.transaction():
        written = store.insert_rows("judgements", rows, on_conflict="replace")
        _record_progress(store, run)
        return written


def _insert_new_judgements(store: Store, rows: Sequence[Judgement], run: tuple[str, int, float] | None) -> bool:
    """One plain INSERT of the batch in its own transaction; False (and nothing written) on any stored key.

    Not `Store.insert_rows`: the batch must be unregistered after the ROLLBACK, since DuckDB refuses any
    statement, unregister included, inside a transaction that a failed INSERT aborted.
    """
    batch = rows_to_arrow(rows)
    columns = ", ".join(quote_name(c) for c in batch.column_names)
    try:
        with registered(store.con, "_prefgen_judgements", batch), store.transaction():
            store.con.execute(f"INSERT INTO judgements ({columns}) SELECT {columns} FROM _prefgen_judgements")
            _record_progress(store, run)
    except duckdb.ConstraintException:
        return False
    return True


def save_preferences(store: Store, prefs: Sequence[Preference], pair_prefs: Sequence[PairPreference]) -> None:
    with store.transaction():
        store.insert_rows("preferences", prefs, on_conflict="replace")
        store.insert_rows("pair_preferences", pair_prefs, on_conflict="replace")


def job_summary(store: Store, job_id: str) -> dict[str, Any]:
    """Counts for the end-of-run table, read back from the store rather than kept on the side."""
    row = store.con.execute(
        """SELECT
             (SELECT count(*) FROM pair_preferences WHERE job_id = $1),
             (SELECT count(*) FROM pair_preferences WHERE job_id = $1 AND kept),
             (SELECT count(*) FROM preferences WHERE job_id = $1),
             (SELECT count(*) FROM preferences WHERE job_id = $1 AND kept)""",
        [job_id],
    ).fetchone()
    reasons = dict(
        store.con.execute(
            "SELECT reason, preferences FROM drop_reasons WHERE job_id = $1 ORDER BY preferences DESC", [job_id]
        ).fetchall()
    )
    return {
        "pairs": row[0], "kept_pairs": row[1], "preferences": row[2], "kept_preferences": row[3],
        "reasons": reasons,
    }


def job_position_stats(store: Store, job_id: str) -> dict[str, float | None]:
    """Share of first-slot verdicts among answered calls, and the consistency rate of decided preferences."""
    first, consistent = store.con.execute(
        """SELECT
             (SELECT avg(CASE WHEN verdict = 'A' THEN 1.0 ELSE 0.0 END) FROM judgements
               WHERE job_id = $1 AND status = 'ok'),
             (SELECT avg(CASE WHEN consistent THEN 1.0 ELSE 0.0 END) FROM preferences
               WHERE job_id = $1 AND drop_reason IS DISTINCT FROM 'pending'
                 AND coalesce(drop_reason, '') NOT IN ('parse_error', 'judge_error'))""",
        [job_id],
    ).fetchone()
    return {"first_slot_share": first, "consistency_rate": consistent}


def run_failures(store: Store, run_id: str, limit: int = 5) -> list[dict[str, Any]]:
    """A run's most frequent failure reasons (judge and parse errors), with how many calls each."""
    return store.dicts(
        """SELECT status, error, count(*) AS calls FROM judgements
           WHERE run_id = ? AND status <> 'ok' GROUP BY status, error ORDER BY calls DESC, error LIMIT ?""",
        [run_id, limit],
    )


def run_confidence_sources(store: Store, run_id: str) -> dict[str, int]:
    """How many of a run's answers took their confidence from each source (logprobs, verdict, ...)."""
    return dict(store.con.execute(
        "SELECT confidence_source, count(*) FROM judgements WHERE run_id = ? AND status = 'ok' GROUP BY 1",
        [run_id],
    ).fetchall())


def job_threshold(store: Store, job_id: str) -> float | None:
    """The --threshold of the job's latest label run (its stored arguments), or None."""
    rows = store.con.execute(
        """SELECT TRY_CAST(json_extract_string(args, '$.threshold') AS DOUBLE) FROM runs
           WHERE job_id = ? AND command = 'label' ORDER BY started_at DESC LIMIT 1""",
        [job_id],
    ).fetchall()
    return rows[0][0] if rows else None


def job_pair_answers(store: Store, job_id: str, pair_ids: Sequence[str]) -> list[tuple[str, str, str, float, Answer]]:
    """(pair, principle, order, principle weight, answer) of every stored judgement of the job for these pairs."""
    with registered(store.con, "_wanted_pairs", pa.table({"pair_id": pa.array(pair_ids, pa.string())})):
        rows = store.con.execute(
            """SELECT j.pair_id, j.principle_id, j.ordering, p.weight, j.status, j.p_first, j.confidence_source
               FROM judgements j JOIN _wanted_pairs USING (pair_id)
               JOIN principles p ON p.constitution_id = j.constitution_id AND p.principle_id = j.principle_id
               WHERE j.job_id = ?""",
            [job_id],
        ).fetchall()
    return [(pair, principle, order, weight, Answer(status, p, src))
            for pair, principle, order, weight, status, p, src in rows]
