"""SQL for routing pairs to annotators: the verdicts a batch is ranked on, and the stored batches."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from prefgen.storage.db import Store, registered

BATCH_JSON = ("label_jobs", "weights", "counts", "calibration", "cross_check")


def candidate_verdicts(store: Store, *, judge: str | None = None) -> list[dict[str, Any]]:
    """Per (label job, pair, principle) with a swap-averaged answer: what the routing signals are computed
    from. Only pairs worth asking about: no human label yet, prompt not held out, not in an earlier batch."""
    return store.dicts(
        """WITH heldout AS (SELECT DISTINCT prompt_id FROM human_pair_labels WHERE split = 'heldout')
           SELECT pr.job_id, pr.pair_id, p.prompt_id, pr.principle_id, pr.p_a, pr.consistent, pr.threshold,
                  coalesce(w.weight, 1.0) AS weight
           FROM preferences pr
           JOIN label_jobs j USING (job_id)
           JOIN pairs p ON p.id = pr.pair_id
           LEFT JOIN principles w ON w.constitution_id = j.constitution_id AND w.principle_id = pr.principle_id
           WHERE pr.p_a IS NOT NULL AND ($1 IS NULL OR $1 IN (j.judge_spec, j.job_id))
             AND pr.pair_id NOT IN (SELECT pair_id FROM human_labels)
             AND pr.pair_id NOT IN (SELECT pair_id FROM route_items)
             AND p.prompt_id NOT IN (SELECT prompt_id FROM heldout)
           ORDER BY pr.pair_id, pr.job_id, pr.principle_id""",
        [judge],
    )


def pair_texts(store: Store, pair_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """id -> prompt (JSON text for chats), is_chat, response_a, response_b."""
    return {r["id"]: r for r in _with_ids(
        store, pair_ids, "SELECT p.id, p.prompt, p.is_chat, p.response_a, p.response_b FROM pairs p "
                         "JOIN _ids USING (id)")}


def pair_prompts(store: Store, pair_ids: Sequence[str]) -> dict[str, str]:
    """pair id -> prompt id, for the ids the store has."""
    return {r["id"]: r["prompt_id"] for r in _with_ids(
        store, pair_ids, "SELECT p.id, p.prompt_id FROM pairs p JOIN _ids USING (id)")}


def _with_ids(store: Store, ids: Sequence[str], sql: str) -> list[dict[str, Any]]:
    with registered(store.con, "_ids", pa.table({"id": pa.array(list(ids), pa.string())})):
        return store.dicts(sql)


def save_batch(store: Store, batch: dict[str, Any], items: Sequence[dict[str, Any]]) -> None:
    record = {k: json.dumps(v) if k in BATCH_JSON and v is not None else v for k, v in batch.items()}
    with store.transaction():
        store.insert_rows("route_batches", [record], on_conflict="error")
        store.insert_rows("route_items", items, on_conflict="error")
