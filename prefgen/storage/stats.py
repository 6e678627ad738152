"""Queries behind `prefgen stats`: views over judgements, never a second set of books."""

from __future__ import annotations

from typing import Any

import duckdb

from prefgen.storage.db import Store


def overview(store: Store) -> dict[str, Any]:
    (row,) = store.dicts(
        """SELECT
             (SELECT count(*) FROM pairs) AS pairs,
             (SELECT count(*) FROM judgements) AS judgements,
             (SELECT count(*) FROM judgements WHERE status = 'ok') AS answered,
             (SELECT count(*) FROM judgements WHERE status = 'parse_error') AS parse_errors,
             (SELECT count(*) FROM judgements WHERE status = 'judge_error') AS judge_errors,
             (SELECT coalesce(sum(tokens_in), 0) FROM judgements) AS tokens_in,
             (SELECT coalesce(sum(tokens_out), 0) FROM judgements) AS tokens_out,
             (SELECT coalesce(sum(cost), 0) FROM judgements) AS cost"""
    )
    return row


def jobs(store: Store) -> list[dict[str, Any]]:
    """Per label job: pairs kept, cost per kept pair, and the share of its input tokens the provider's prompt
    cache served and of its calls answered in provider batches (None for a store from before they were kept)."""
    rows = store.dicts(
        """SELECT j.job_id, j.judge_spec, j.template_version, j.confidence_mode,
                  count(pp.pair_id) AS pairs,
                  sum(CASE WHEN pp.kept THEN 1 ELSE 0 END) AS kept_pairs,
                  c.cost, c.cost_per_kept_pair, c.tokens_per_kept_pair
           FROM label_jobs j
           LEFT JOIN pair_preferences pp USING (job_id)
           LEFT JOIN cost_per_kept_pair c USING (job_id)
           GROUP BY ALL ORDER BY min(j.created_at)""",
    )
    shares = cache_and_batch_shares(store)
    for row in rows:
        row["cached_input_share"], row["batched_share"] = shares.get(row["job_id"], (None, None))
    return rows


def cache_and_batch_shares(store: Store) -> dict[str, tuple[float | None, float | None]]:
    """job id -> (share of input tokens served from the prompt cache, share of calls answered in batches)."""
    try:
        rows = store.con.execute(
            """SELECT job_id, sum(coalesce(tokens_cached, 0)) / nullif(sum(tokens_in), 0),
                      avg(CASE WHEN batch_id IS NOT NULL THEN 1.0 ELSE 0.0 END)
               FROM judgements GROUP BY job_id"""
        ).fetchall()
    except duckdb.BinderException:  # a store from before m014, opened read-only
        return {}
    return {job_id: (cached, batched) for job_id, cached, batched in rows}


def drop_reasons(store: Store) -> list[dict[str, Any]]:
    return store.dicts("SELECT * FROM drop_reasons ORDER BY job_id, preferences DESC")


def position_bias(store: Store) -> list[dict[str, Any]]:
    return store.dicts("SELECT * FROM position_bias ORDER BY backend, model, principle_id")


def consistency(store: Store) -> list[dict[str, Any]]:
    return store.dicts("SELECT * FROM consistency ORDER BY backend, model, principle_id")


def confidence_histogram(store: Store) -> list[dict[str, Any]]:
    return store.dicts("SELECT * FROM confidence_histogram ORDER BY job_id, bucket")


def job_pricing(store: Store) -> list[dict[str, Any]]:
    """Per label job: its backend and model, and the --price-in / --price-out of its latest run (NULL when not
    given), from which the caller tells a priced job from one whose cost is unknown."""
    return store.dicts(
        """SELECT j.job_id, j.backend, j.model,
                  TRY_CAST(json_extract_string(r.args, '$.price_in') AS DOUBLE) AS price_in,
                  TRY_CAST(json_extract_string(r.args, '$.price_out') AS DOUBLE) AS price_out
           FROM label_jobs j
           LEFT JOIN (SELECT job_id, arg_max(args, started_at) AS args FROM runs GROUP BY job_id) r USING (job_id)"""
    )
