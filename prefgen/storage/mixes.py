"""SQL for training mixes: the candidate rows on each side, and the stored manifest and rows of a mix."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from prefgen.errors import PrefgenError
from prefgen.storage.db import Store

MANIFEST_JSON = ("inputs", "filters", "counts", "auto")


def _dicts(store: Store, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    return store.dicts(sql, params)


def unsplit_human_pairs(store: Store) -> int:
    return store.query("SELECT count(*) FROM human_pair_labels WHERE split IS NULL")[1][0][0]


def human_train_pairs(store: Store) -> list[dict[str, Any]]:
    """One consensus label per human-labelled pair on the train side (ties included; the caller counts them)."""
    return _dicts(
        store,
        """SELECT pair_id, prompt_id, winner, confidence, sources
           FROM human_pair_labels WHERE split = 'train' ORDER BY pair_id""",
    )


def ai_kept_pairs(store: Store, *, judge: str | None = None) -> list[dict[str, Any]]:
    """Every kept AI pair preference, with what the mixer needs to exclude it: whether its prompt is held out
    and whether a human labelled the same pair."""
    return _dicts(
        store,
        """WITH heldout AS (SELECT DISTINCT prompt_id FROM human_pair_labels WHERE split = 'heldout')
           SELECT pp.pair_id, p.prompt_id, pp.job_id, pp.chosen, pp.confidence, pp.p_a,
                  p.prompt_id IN (SELECT prompt_id FROM heldout) AS heldout_prompt,
                  pp.pair_id IN (SELECT pair_id FROM human_pair_labels) AS human_labelled
           FROM pair_preferences pp
           JOIN pairs p ON p.id = pp.pair_id
           JOIN label_jobs j ON j.job_id = pp.job_id
           WHERE pp.kept AND pp.chosen IN ('a', 'b') AND ($1 IS NULL OR $1 IN (j.judge_spec, j.job_id))
           ORDER BY pp.pair_id, pp.job_id""",
        [judge],
    )


def principle_counts(store: Store, job_pairs: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Kept per-principle preferences behind the given (job_id, pair_id) AI rows."""
    if not job_pairs:
        return {}
    batch = pa.table({"job_id": [j for j, _ in job_pairs], "pair_id": [p for _, p in job_pairs]})
    store.con.register("_mixed", batch)
    try:
        rows = store.con.execute(
            """SELECT pr.principle_id, count(*) FROM preferences pr JOIN _mixed m USING (job_id, pair_id)
               WHERE pr.kept GROUP BY 1 ORDER BY 1"""
        ).fetchall()
    finally:
        store.con.unregister("_mixed")
    return dict(rows)


def save_mix(store: Store, manifest: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
    """Replace the mix of that name, manifest and rows together."""
    record = {k: json.dumps(v) if k in MANIFEST_JSON else v for k, v in manifest.items()}
    with store.transaction():
        store.con.execute("DELETE FROM mix_rows WHERE mix_name = ?", [manifest["name"]])
        store.insert_rows("mixes", [record], on_conflict="replace")
        store.insert_rows("mix_rows", rows, on_conflict="error")


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
