"""Queries behind `prefgen report` that `prefgen stats` does not already make (those live in storage/stats.py).

Every query reads only: the report opens the store read-only, so it can run while a label run writes.
"""

from __future__ import annotations

import json
from typing import Any

from prefgen.storage.db import Store
from prefgen.storage.mixes import MANIFEST_JSON


def runs(store: Store) -> list[dict[str, Any]]:
    """Every label run: when, how long, how many calls it sent and how fast, what it spent and how it ended."""
    return store.dicts(
        """SELECT run_id, job_id, status, started_at,
                  epoch(finished_at - started_at) AS duration_s,
                  n_pairs, n_calls_planned, n_calls_cached, n_calls_sent, cost,
                  CASE WHEN epoch(finished_at - started_at) > 0
                       THEN n_calls_sent / epoch(finished_at - started_at) END AS calls_per_s
           FROM runs WHERE command = 'label' ORDER BY started_at"""
    )


def judge_latency(store: Store) -> list[dict[str, Any]]:
    """Per judge: calls, median and 95th-percentile latency, retries, errors (what calls/s is made of)."""
    return store.dicts(
        """SELECT backend, model, count(*) AS calls,
                  quantile_cont(latency_s, 0.5) AS latency_p50_s,
                  quantile_cont(latency_s, 0.95) AS latency_p95_s,
                  sum(greatest(coalesce(attempts, 1) - 1, 0)) AS retries,
                  sum(CASE WHEN status = 'judge_error' THEN 1 ELSE 0 END) AS judge_errors,
                  sum(CASE WHEN status = 'parse_error' THEN 1 ELSE 0 END) AS parse_errors
           FROM judgements GROUP BY ALL ORDER BY ALL"""
    )


def error_reasons(store: Store, limit: int = 10) -> list[dict[str, Any]]:
    """The most frequent failure messages of judge calls (judge and parse errors)."""
    return store.dicts(
        """SELECT status, left(error, 160) AS error, count(*) AS calls
           FROM judgements WHERE status <> 'ok' AND error IS NOT NULL
           GROUP BY ALL ORDER BY calls DESC, error LIMIT ?""",
        [limit],
    )


def human_overview(store: Store) -> list[dict[str, Any]]:
    """Human labels per import and side of the split (consensus rows only: one per pair and import)."""
    return store.dicts(
        """SELECT source, coalesce(split, 'unsplit') AS split, count(*) AS pairs,
                  sum(CASE WHEN winner = 'tie' THEN 1 ELSE 0 END) AS ties
           FROM human_labels WHERE annotator IN ('label', 'majority')
           GROUP BY ALL ORDER BY ALL"""
    )


def calibrations(store: Store) -> list[dict[str, Any]]:
    """The stored calibration of each judge (as `mix` or `route` last fitted it), reliability bins decoded."""
    rows = store.dicts(
        """SELECT judge_spec, template_version, method, n_pairs, agreement, ece_before, ece_after, reliability,
                  fitted_at FROM calibrations ORDER BY judge_spec, template_version"""
    )
    return [{**r, "reliability": json.loads(r["reliability"]) if r["reliability"] else []} for r in rows]


def mixes(store: Store) -> list[dict[str, Any]]:
    """Every mix's manifest, JSON fields decoded, newest first."""
    rows = store.dicts(
        """SELECT name, n_rows, human_ratio, realised_ratio, seed, inputs, filters, counts, auto, created_at,
                  (SELECT count(*) FROM mix_rows r WHERE r.mix_name = m.name AND r.source = 'human') AS human_rows,
                  (SELECT count(*) FROM mix_rows r WHERE r.mix_name = m.name AND r.source = 'ai') AS ai_rows
           FROM mixes m ORDER BY created_at DESC, name"""
    )
    return [{k: json.loads(v) if k in MANIFEST_JSON and v is not None else v for k, v in r.items()} for r in rows]


def mix_trials(store: Store) -> list[dict[str, Any]]:
    """Every `mix --auto` trial (candidate x fold) with its validation accuracy."""
    return store.dicts(
        """SELECT search_id, mix_name, candidate, fold, n_train, n_ai, n_val, accuracy
           FROM mix_trials ORDER BY created_at, search_id, candidate, fold"""
    )


def rm_runs(store: Store) -> list[dict[str, Any]]:
    return store.dicts(
        """SELECT run_id, mix_name, base_model, status, n_train, n_members, device, duration_s, pairs_per_s,
                  initial_loss, final_loss, checkpoint_path, error, started_at
           FROM rm_runs ORDER BY started_at DESC"""
    )


def rm_evals(store: Store) -> list[dict[str, Any]]:
    """One row per evaluation with its headline metrics (the full set stays in rm_evals), newest first."""
    return store.dicts(
        """SELECT eval_id, any_value(run_id) AS run_id, any_value(model_path) AS model_path,
                  any_value(split) AS split, max(n) AS pairs,
                  max(CASE WHEN metric = 'accuracy' THEN value END) AS accuracy,
                  max(CASE WHEN metric = 'accuracy_ci95.lo' THEN value END) AS ci_low,
                  max(CASE WHEN metric = 'accuracy_ci95.hi' THEN value END) AS ci_high,
                  max(CASE WHEN metric = 'calibration.ece' THEN value END) AS ece,
                  max(CASE WHEN metric = 'mean_margin' THEN value END) AS mean_margin,
                  min(created_at) AS created_at
           FROM rm_evals GROUP BY eval_id ORDER BY min(created_at) DESC"""
    )
