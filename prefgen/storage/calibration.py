"""SQL for judge calibration: the pairs a calibration is fitted on, and the stored maps."""

from __future__ import annotations

import json
from typing import Any

from prefgen.storage.db import Store

CALIBRATION_JSON = ("params", "reliability")


def calibration_pairs(store: Store) -> list[dict[str, Any]]:
    """Per judge key (judge, template, constitution) and human *train* pair: the judge's unfiltered P(a better)
    (principle-weighted over every answered principle, every job of that key), the humans' winner, the
    pair's weight in the fit, and the covariates of a calibration with covariates: the share of answered
    principles whose two orders disagreed (`inconsistency`) and the responses' lengths in characters.

    Only the train split: the held-out labels judge the reward model and must not shape its training data.
    Weights: a pair of a `prefgen route` batch counts (budget / candidates) / its inclusion probability (stored
    in `route_items`), so a batch weighs as much in all as the same number of pairs drawn at random, and the
    pairs routed for looking wrong stand only for their share of the pool (Horvitz-Thompson). Every other
    labelled pair counts 1. Items routed before inclusion probabilities were stored count 0 when routed by rank
    (a biased sample) and 1 when drawn at random. Pairs of weight 0 are left out.
    """
    return store.dicts(
        """WITH weighted AS (
               SELECT j.judge_spec, j.template_version, j.constitution_id, pr.pair_id,
                      sum(pr.p_a * coalesce(w.weight, 1.0)) / sum(coalesce(w.weight, 1.0)) AS p_a,
                      avg(CASE WHEN pr.consistent THEN 0.0 ELSE 1.0 END) AS inconsistency
               FROM preferences pr
               JOIN label_jobs j USING (job_id)
               LEFT JOIN principles w ON w.constitution_id = j.constitution_id AND w.principle_id = pr.principle_id
               WHERE pr.p_a IS NOT NULL
               GROUP BY ALL
           ),
           design AS (
               SELECT pair_id, min(coalesce(calibration_weight, CASE WHEN selection = 'routed' THEN 0.0 ELSE 1.0 END))
                      AS weight
               FROM route_items GROUP BY pair_id
           )
           SELECT wt.judge_spec, wt.template_version, wt.constitution_id, wt.pair_id, wt.p_a, h.winner AS human,
                  coalesce(d.weight, 1.0) AS weight, wt.inconsistency,
                  length(p.response_a) AS len_a, length(p.response_b) AS len_b
           FROM weighted wt JOIN human_pair_labels h ON h.pair_id = wt.pair_id
           JOIN pairs p ON p.id = wt.pair_id
           LEFT JOIN design d ON d.pair_id = wt.pair_id
           WHERE h.split = 'train' AND coalesce(d.weight, 1.0) > 0
           ORDER BY wt.judge_spec, wt.template_version, wt.constitution_id, wt.pair_id""",
    )


def judge_length_leans(store: Store) -> list[dict[str, Any]]:
    """Per judge key: over every pair it judged whose responses differ in length and on which it leaned one way
    (unfiltered P(a better), principle-weighted, as for `calibration_pairs`), how many there are and the
    share where it preferred the longer response. No human label is read."""
    return store.dicts(
        """WITH weighted AS (
               SELECT j.judge_spec, j.template_version, j.constitution_id, pr.pair_id,
                      sum(pr.p_a * coalesce(w.weight, 1.0)) / sum(coalesce(w.weight, 1.0)) AS p_a
               FROM preferences pr
               JOIN label_jobs j USING (job_id)
               LEFT JOIN principles w ON w.constitution_id = j.constitution_id AND w.principle_id = pr.principle_id
               WHERE pr.p_a IS NOT NULL
               GROUP BY ALL
           )
           SELECT wt.judge_spec, wt.template_version, wt.constitution_id, count(*) AS pairs,
                  avg(CASE WHEN (wt.p_a > 0.5) = (length(p.response_a) > length(p.response_b)) THEN 1.0 ELSE 0.0 END)
                      AS longer
           FROM weighted wt JOIN pairs p ON p.id = wt.pair_id
           WHERE wt.p_a <> 0.5 AND length(p.response_a) <> length(p.response_b)
           GROUP BY ALL ORDER BY ALL""",
    )


def judge_keys(store: Store) -> list[dict[str, Any]]:
    """Every (judge, template, constitution) that labelled pairs, with its label jobs."""
    return store.dicts(
        """SELECT judge_spec, template_version, constitution_id, list(job_id ORDER BY job_id) AS job_ids
           FROM label_jobs GROUP BY ALL ORDER BY ALL""",
    )


def save_calibrations(store: Store, records: list[dict[str, Any]]) -> None:
    rows = [{k: json.dumps(v) if k in CALIBRATION_JSON else v for k, v in r.items()} for r in records]
    if rows:
        with store.transaction():
            store.insert_rows("calibrations", rows, on_conflict="replace")


def calibrations(store: Store) -> list[dict[str, Any]]:
    rows = store.dicts("SELECT * EXCLUDE (fitted_at) FROM calibrations ORDER BY judge_spec, calibration_id")
    return [{k: json.loads(v) if k in CALIBRATION_JSON else v for k, v in r.items()} for r in rows]
