"""SQL for training mixes: the candidate rows on each side, and the stored manifest and rows of a mix."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prefgen.errors import PrefgenError
from prefgen.storage.db import Store, cleanup
from prefgen.storage.names import quote_name

MANIFEST_JSON = ("inputs", "filters", "counts", "auto")


def _dicts(store: Store, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    return store.dicts(sql, params)


def unsplit_human_pairs(store: Store) -> int:
    return store.query("SELECT count(*) FROM human_pair_labels WHERE split IS NULL")[1][0][0]


# The candidates of a mix are staged in temporary tables (DuckDB's memory, spilled to disk as it needs), so
# that choosing the rows of a mix of millions of pairs holds none of them in Python.
_AI_ROWS, _CANDIDATES, _SELECTED = "_mix_ai_rows", "_mix_candidates", "_mix_selected"
# len_a, len_b, inconsistency: what a calibration with covariates reads (AI rows; NULL on human rows).
_CANDIDATE_COLUMNS = ("pair_id, prompt_id, source, origin, chosen, confidence, p_a, stated_confidence, len_a, len_b, "
                      "inconsistency")


@dataclass(frozen=True)
class CandidateCounts:
    """What the candidates of a mix are made of, before the ratio is applied."""

    human_available: int  # train-side human pairs, ties included
    human_ties: int
    ai_available: int  # kept AI pair preferences (a pair kept by two jobs counts twice)
    ai_left_out: dict[str, int]  # reason -> AI rows, in the order the rows (by pair, then job) first meet it
    human_after_cap: int
    ai_after_cap: int
    capped: int  # candidates over the per-prompt cap


class MixCandidates:
    """The rows a mix chooses from, staged in temporary tables: `stage` the candidates, `select` the mix's
    rows, read them a batch at a time (`selected`), then `drop`.

    Rules (see `prefgen.pipelines.mixing.mix`): human pairs are the train-side consensus labels without ties. AI pairs
    are kept pair preferences (of one judge, if given) whose prompt is not held out and which no human labelled
    (the held-out test comes first, then the human label, then the confidence floor); a pair kept by several
    jobs enters once, from the most confident job, then the lowest job id. `max_per_prompt` keeps human pairs
    first, then the more confident, then by order key. The order key of a pair is SHA-256 of
    "mix\0{seed}\0{pair_id}" in hex, whose order is the order of its bytes.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def stage(self, *, seed: int, judge: str | None, min_confidence: float | None,
              max_per_prompt: int | None) -> CandidateCounts:
        con = self.store.con
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {_AI_ROWS} AS
                WITH heldout AS (SELECT DISTINCT prompt_id FROM human_pair_labels WHERE split = 'heldout'),
                rows AS (
                    SELECT pp.pair_id, p.prompt_id, pp.job_id, pp.chosen, coalesce(pp.confidence, 1.0) AS confidence,
                           pp.confidence AS stated_confidence, pp.p_a,
                           length(p.response_a) AS len_a, length(p.response_b) AS len_b,
                           (SELECT avg(CASE WHEN x.consistent THEN 0.0 ELSE 1.0 END) FROM preferences x
                            WHERE x.job_id = pp.job_id AND x.pair_id = pp.pair_id AND x.p_a IS NOT NULL)
                               AS inconsistency,
                           CASE WHEN p.prompt_id IN (SELECT prompt_id FROM heldout) THEN 'heldout_prompt'
                                WHEN pp.pair_id IN (SELECT pair_id FROM human_pair_labels) THEN 'human_labelled'
                                WHEN coalesce(pp.confidence, 1.0) < $min_confidence THEN 'below_min_confidence'
                           END AS dropped
                    FROM pair_preferences pp
                    JOIN pairs p ON p.id = pp.pair_id
                    JOIN label_jobs j ON j.job_id = pp.job_id
                    WHERE pp.kept AND pp.chosen IN ('a', 'b') AND ($judge IS NULL OR $judge IN (j.judge_spec, j.job_id))
                )
                SELECT *,
                       row_number() OVER (PARTITION BY pair_id, dropped IS NULL ORDER BY job_id) AS arrival,
                       row_number() OVER (PARTITION BY pair_id, dropped IS NULL ORDER BY confidence DESC, job_id)
                           AS best
                FROM rows""",
            {"min_confidence": min_confidence, "judge": judge},
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {_CANDIDATES} AS
                WITH sides AS (
                    SELECT pair_id, prompt_id, 'human' AS source, sources AS origin, winner AS chosen,
                           coalesce(confidence, 1.0) AS confidence, NULL::DOUBLE AS p_a,
                           confidence AS stated_confidence, NULL::BIGINT AS len_a, NULL::BIGINT AS len_b,
                           NULL::DOUBLE AS inconsistency
                    FROM human_pair_labels WHERE split = 'train' AND winner <> 'tie'
                    UNION ALL
                    SELECT pair_id, prompt_id, 'ai', job_id, chosen, confidence, p_a, stated_confidence, len_a, len_b,
                           inconsistency
                    FROM {_AI_ROWS} WHERE dropped IS NULL AND best = 1
                ),
                keyed AS (SELECT *, sha256('mix' || chr(0) || $seed::VARCHAR || chr(0) || pair_id) AS order_key
                          FROM sides)
                SELECT *, $cap IS NULL OR row_number() OVER (
                              PARTITION BY prompt_id ORDER BY source <> 'human', confidence DESC, order_key) <= $cap
                          AS within_cap
                FROM keyed""",
            {"seed": seed, "cap": max_per_prompt},
        )
        return self._counts()

    def _counts(self) -> CandidateCounts:
        con = self.store.con
        # Every result is fetched whole: DuckDB refuses other work on a connection with a result left open.
        human, ties = con.execute(
            "SELECT count(*), count(*) FILTER (winner = 'tie') FROM human_pair_labels WHERE split = 'train'"
        ).fetchall()[0]
        ai = con.execute(f"SELECT count(*) FROM {_AI_ROWS}").fetchall()[0][0]
        left_out = con.execute(
            f"""WITH events AS (
                    SELECT dropped AS reason, pair_id, job_id FROM {_AI_ROWS} WHERE dropped IS NOT NULL
                    UNION ALL
                    SELECT 'duplicate', pair_id, job_id FROM {_AI_ROWS} WHERE dropped IS NULL AND arrival > 1
                )
                SELECT reason, count(*) FROM events GROUP BY reason ORDER BY min([pair_id, job_id])"""
        ).fetchall()
        human_capped, ai_capped, over = con.execute(
            f"""SELECT count(*) FILTER (source = 'human' AND within_cap), count(*) FILTER (source = 'ai' AND within_cap),
                       count(*) FILTER (NOT within_cap)
                FROM {_CANDIDATES}"""
        ).fetchall()[0]
        return CandidateCounts(human, ties, ai, dict(left_out), human_capped, ai_capped, over)

    def select(self, n_human: int, n_ai: int) -> tuple[int, int]:
        """The mix's rows: the first `n_human` human and `n_ai` AI candidates within the cap by order key, all
        in order-key order (`position`). Returns how many of each side there were."""
        self.store.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {_SELECTED} AS
                SELECT row_number() OVER (ORDER BY order_key) - 1 AS position, {_CANDIDATE_COLUMNS}
                FROM (SELECT *, row_number() OVER (PARTITION BY source ORDER BY order_key) AS side_rank
                      FROM {_CANDIDATES} WHERE within_cap)
                WHERE side_rank <= CASE source WHEN 'human' THEN $n_human ELSE $n_ai END
                ORDER BY position""",
            {"n_human": n_human, "n_ai": n_ai},
        )
        return self.store.con.execute(
            f"SELECT count(*) FILTER (source = 'human'), count(*) FILTER (source = 'ai') FROM {_SELECTED}"
        ).fetchall()[0]

    def selected(self, batch: int) -> Iterator[list[dict[str, Any]]]:
        """The selected rows in position order, `batch` at a time (read by position range: the connection is
        free to write between batches)."""
        start = 0
        while True:
            rows = self.store.dicts(
                f"""SELECT position, {_CANDIDATE_COLUMNS} FROM {_SELECTED}
                    WHERE position >= ? AND position < ? ORDER BY position""", [start, start + batch])
            if not rows:
                return
            yield rows
            start += batch

    def summary(self) -> dict[str, Any]:
        """Of the selected rows: human rows per import (sources joined by '+'), the label jobs and import
        names behind them, and the kept per-principle preferences behind the AI rows."""
        con = self.store.con
        per_source = con.execute(
            f"SELECT origin, count(*) FROM {_SELECTED} WHERE source = 'human' GROUP BY origin ORDER BY origin"
        ).fetchall()
        jobs = con.execute(f"SELECT DISTINCT origin FROM {_SELECTED} WHERE source = 'ai' ORDER BY 1").fetchall()
        principles = con.execute(
            f"""SELECT pr.principle_id, count(*) FROM preferences pr
                JOIN {_SELECTED} m ON m.source = 'ai' AND m.origin = pr.job_id AND m.pair_id = pr.pair_id
                WHERE pr.kept GROUP BY 1 ORDER BY 1"""
        ).fetchall()
        return {"per_source": dict(per_source), "label_jobs": [job for (job,) in jobs],
                "per_principle": dict(principles)}

    def drop(self) -> None:
        for table in (_SELECTED, _CANDIDATES, _AI_ROWS):
            self.store.con.execute(f"DROP TABLE IF EXISTS {quote_name(table)}")


@contextmanager
def mix_candidates(store: Store) -> Iterator[MixCandidates]:
    candidates = MixCandidates(store)
    with cleanup(candidates.drop):
        yield candidates


@contextmanager
def saving_mix(store: Store, name: str) -> Iterator[Callable[[Sequence[dict[str, Any]]], None]]:
    """Replace the mix of that name: its rows are saved a batch at a time through the function given to the
    block, and the manifest (`save_manifest`) last, in one transaction."""
    with store.transaction():
        store.con.execute("DELETE FROM mix_rows WHERE mix_name = ?", [name])
        yield lambda rows: store.insert_rows("mix_rows", rows, on_conflict="error")


def save_manifest(store: Store, manifest: dict[str, Any]) -> None:
    record = {k: json.dumps(v) if k in MANIFEST_JSON else v for k, v in manifest.items()}
    store.insert_rows("mixes", [record], on_conflict="replace")


def mix_manifest(store: Store, name: str) -> dict[str, Any]:
    rows = _dicts(store, "SELECT * FROM mixes WHERE name = ?", [name])
    if not rows:
        known = [r[0] for r in store.query("SELECT name FROM mixes ORDER BY name")[1]]
        raise PrefgenError(f"{store.path}: no mix named {name!r} (known: {', '.join(known) or 'none'})")
    return {k: json.loads(v) if k in MANIFEST_JSON and v is not None else v for k, v in rows[0].items()}


def mix_rows(store: Store, name: str) -> list[dict[str, Any]]:
    return _dicts(
        store,
        """SELECT position, pair_id, source, origin, chosen, confidence, margin, weight, p_chosen
           FROM mix_rows WHERE mix_name = ? ORDER BY position""",
        [name],
    )


def save_mix_trials(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    """The trials of one mix search (candidate x fold), with their validation scores."""
    records = [{**r, "settings": json.dumps(r["settings"])} for r in rows]
    with store.transaction():
        store.insert_rows("mix_trials", records, on_conflict="replace")


def mix_trials(store: Store, search_id: str) -> list[dict[str, Any]]:
    return _dicts(store, "SELECT * EXCLUDE (created_at) FROM mix_trials WHERE search_id = ? ORDER BY candidate, fold",
                  [search_id])
