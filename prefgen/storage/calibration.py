"""SQL for judge calibration: the pairs a calibration is fitted on, and the stored maps."""

from __future__ import annotations

import json
from typing import Any

from prefgen.storage.db import Store
from prefgen.storage.human import selection_filter

CALIBRATION_JSON = ("params", "reliability")


def calibration_pairs(store: Store) -> list[dict[str, Any]]:
    """Per judge key (judge, template, constitution) and human *train* pair: the judge's unfiltered P(a better)
    (principle-weighted over every answered principle, every job of that key) and the humans' winner.

    Only the train split: the held-out labels judge the reward model and must not shape its training data.
    Pairs routed to annotators by rank are left out: they were picked for looking wrong, and a map fitted on
    them would under-trust the judge on every other pair (the random slice of each batch is kept).
    """
    return store.dicts(
        f"""WITH weighted AS (
               SELECT j.judge_spec, j.template_version, j.constitution_id, pr.pair_id,
                      sum(pr.p_a * coalesce(w.weight, 1.0)) / sum(coalesce(w.weight, 1.0)) AS p_a
               FROM preferences pr
               JOIN label_jobs j USING (job_id)
               LEFT JOIN principles w ON w.constitution_id = j.constitution_id AND w.principle_id = pr.principle_id
               WHERE pr.p_a IS NOT NULL
               GROUP BY ALL
           )
           SELECT wt.judge_spec, wt.template_version, wt.constitution_id, wt.pair_id, wt.p_a, h.winner AS human
           FROM weighted wt JOIN human_pair_labels h ON h.pair_id = wt.pair_id
           WHERE h.split = 'train' AND ({selection_filter(store, 'h.pair_id')})
           ORDER BY wt.judge_spec, wt.template_version, wt.constitution_id, wt.pair_id""",
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
