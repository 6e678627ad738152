"""`prefgen ingest SHARDS`: merge Parquet shards of judgements (from `label --engine ray`) into the store.

The merge is by request hash (`storage.shards.ingest_shards`): ingesting the same shards twice, or shards
whose answers are stored already, changes nothing. The preferences of every pair the shards touched are then
derived from the stored answers with the function a label run uses (`preferences_from_answers`), under the
threshold of the job's latest label run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefgen.errors import PrefgenError
from prefgen.judge.swap import DEFAULT_THRESHOLD, preferences_from_answers
from prefgen.records import Answer
from prefgen.storage import labels as labels_sql
from prefgen.storage.db import Store
from prefgen.storage.shards import ingest_shards, shard_job_pairs, shard_paths

_PAIRS_AT_A_TIME = 2048


@dataclass
class IngestSummary:
    files: int
    rows: int
    written: int
    pairs: int
    preferences: int


def ingest(db: Path, sources: list[Path]) -> IngestSummary:
    paths = shard_paths(sources)
    if not paths:
        raise PrefgenError(f"no shards (*.parquet) in {', '.join(map(str, sources))}")
    with Store(db) as store:
        count = ingest_shards(store, paths)
        pairs = preferences = 0
        for job_id, pair_ids in shard_job_pairs(paths).items():
            threshold = labels_sql.job_threshold(store, job_id)
            ordered = sorted(pair_ids)
            for start in range(0, len(ordered), _PAIRS_AT_A_TIME):
                preferences += derive_from_store(store, job_id, ordered[start:start + _PAIRS_AT_A_TIME],
                                                 DEFAULT_THRESHOLD if threshold is None else threshold)
            pairs += len(pair_ids)
    return IngestSummary(count.files, count.rows, count.written, pairs, preferences)


def derive_from_store(store: Store, job_id: str, pair_ids: list[str], threshold: float) -> int:
    """Preferences of these pairs from the job's stored answers; an order never answered is pending."""
    orders: dict[tuple[str, str], dict[str, Answer]] = {}
    weights: dict[str, float] = {}
    for pair_id, principle_id, ordering, weight, answer in labels_sql.job_pair_answers(store, job_id, pair_ids):
        orders.setdefault((pair_id, principle_id), {})[ordering] = answer
        weights[principle_id] = weight
    prefs, pair_prefs = preferences_from_answers(
        job_id, {key: (answers.get("ab"), answers.get("ba")) for key, answers in orders.items()},
        weights.__getitem__, threshold)
    labels_sql.save_preferences(store, prefs, pair_prefs)
    return len(prefs)
