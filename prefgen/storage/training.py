"""SQL for reward-model runs and their evaluations."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from prefgen.storage.db import Store


def start_rm_run(store: Store, *, run_id: str, mix_name: str | None, mix_hash: str | None, base_model: str,
                 config: dict[str, Any], n_members: int, checkpoint_path: str) -> None:
    store.con.execute(
        """INSERT INTO rm_runs (run_id, mix_name, mix_hash, base_model, config, n_members, checkpoint_path, status)
           VALUES (?, ?, ?, ?, ?, ?, ?, 'running')""",
        [run_id, mix_name, mix_hash, base_model, json.dumps(config, default=str), n_members, checkpoint_path],
    )


def finish_rm_run(store: Store, run_id: str, *, status: str, data: dict[str, Any] | None = None,
                  n_train: int | None = None, device: str | None = None, dtype: str | None = None,
                  duration_s: float | None = None, pairs_per_s: float | None = None,
                  initial_loss: float | None = None, final_loss: float | None = None,
                  error: str | None = None) -> None:
    store.con.execute(
        """UPDATE rm_runs SET status = ?, data = ?, n_train = ?, device = ?, dtype = ?, duration_s = ?,
               pairs_per_s = ?, initial_loss = ?, final_loss = ?, error = ?, finished_at = now()
           WHERE run_id = ?""",
        [status, json.dumps(data, default=str) if data is not None else None, n_train, device, dtype,
         duration_s, pairs_per_s, initial_loss, final_loss, error, run_id],
    )


def rm_run_for_checkpoint(store: Store, checkpoint_path: str) -> str | None:
    row = store.con.execute(
        "SELECT run_id FROM rm_runs WHERE checkpoint_path = ? ORDER BY started_at DESC LIMIT 1", [checkpoint_path]
    ).fetchone()
    return row[0] if row else None


def rm_run_details(store: Store, checkpoint_path: str) -> dict[str, Any] | None:
    """The newest finished training run that wrote this checkpoint: what an evaluation page says of the model."""
    rows = store.dicts(
        """SELECT run_id, mix_name, base_model, n_train, final_loss, device FROM rm_runs
           WHERE checkpoint_path = ? AND status = 'finished' ORDER BY started_at DESC LIMIT 1""",
        [checkpoint_path],
    )
    return rows[0] if rows else None


def save_rm_eval(store: Store, *, eval_id: str, run_id: str | None, model_path: str, split: str,
                 metrics: Sequence[tuple[str, float | None]], n: int) -> None:
    rows = [{"eval_id": eval_id, "run_id": run_id, "model_path": model_path, "split": split,
             "metric": name, "value": value, "n": n} for name, value in metrics]
    with store.transaction():
        store.insert_rows("rm_evals", rows, on_conflict="replace")


def principles_for_mix(store: Store, mix_name: str) -> list[dict[str, Any]]:
    """The principles behind the AI rows of a mix (from the constitutions of their label jobs)."""
    return store.dicts(
        """SELECT DISTINCT pr.principle_id AS name, pr.text, pr.weight, pr.category
           FROM mix_rows m
           JOIN label_jobs j ON j.job_id = m.origin
           JOIN principles pr ON pr.constitution_id = j.constitution_id
           WHERE m.mix_name = ? AND m.source = 'ai'
           ORDER BY name""",
        [mix_name],
    )


def card_data_of_checkpoint(store: Store, checkpoint_path: str) -> dict[str, Any] | None:
    """The data section of the model card written when this checkpoint was trained (newest finished run)."""
    row = store.con.execute(
        "SELECT data FROM rm_runs WHERE checkpoint_path = ? AND status = 'finished' "
        "ORDER BY started_at DESC LIMIT 1", [checkpoint_path]
    ).fetchone()
    return (json.loads(row[0]) or {}).get("card") if row and row[0] else None


def record_world_size(store: Store, run_id: str, world_size: int) -> None:
    store.con.execute("UPDATE rm_runs SET world_size = ? WHERE run_id = ?", [world_size, run_id])
