"""Reward-model stages over the store: train on a mix, evaluate on held-out human labels, score files.

The model work is in `prefgen.train`; this module reads what it needs from DuckDB, records each run in
`rm_runs` and each evaluation in `rm_evals`, and fills the model card with what the store knows (mix, judge
agreement with humans, principles).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from prefgen.errors import PrefgenError
from prefgen.pipelines.labelling.inputs import read_rows
from prefgen.storage import training as db
from prefgen.storage.db import Store
from prefgen.storage.export import heldout_rows, mix_rows_for_training, training_row
from prefgen.storage.mixes import mix_manifest
from prefgen.pipelines.configs import EvalConfig, ScoreConfig, configured
from prefgen.train.config import TrainConfig, resolve_base

log = logging.getLogger("prefgen.train")


@dataclass
class TrainOutcome:
    run_id: str
    out_dir: str
    n_train: int
    members: int
    device: str
    pairs_per_s: float
    duration_s: float
    initial_loss: float | None
    final_loss: float | None
    data_report: dict[str, Any]
    method: str = "head"
    # (step, loss) of the first and the last entry of the loss log, and the optimiser steps taken: a short run
    # may log its first step only, which is then the first and the last entry, not a loss that did not move.
    first_logged: tuple[int, float] | None = None
    last_logged: tuple[int, float] | None = None
    steps: int = 0
    mean_loss: float | None = None  # the trainer's `train_loss`: the mean over every step of the last member


def mean_loss(log_history: list[dict[str, Any]]) -> float | None:
    return next((float(e["train_loss"]) for e in reversed(log_history) if "train_loss" in e), None)


def logged_losses(log_history: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """(step, loss) of each entry of a trainer's log that has a training loss."""
    return [(int(entry.get("step", 0)), float(entry["loss"])) for entry in log_history if "loss" in entry]


def _card_data(store: Store, mix: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the card says about the data: the rows, the mix, and the store facts marked for the card (the same
    `prefgen stats` and the report page show: judge agreement, label jobs and their cost)."""
    from prefgen.pipelines.reporting.facts import card_facts
    from prefgen.train.card import data_summary_from_rows

    return {
        **data_summary_from_rows(rows),
        **card_facts(store),
        "principles": db.principles_for_mix(store, mix),
        "mix": mix_manifest(store, mix),
    }


def with_mix_recipe(store: Store, mix: str, config: TrainConfig, *, say: bool = True) -> TrainConfig:
    """The config to train a mix with: a mix chosen by `prefgen mix --auto` carries the training settings its
    candidates were validated with, and they apply to every setting the config does not choose. A chosen
    setting that differs from them is said in one line (`say`), since that recipe was not validated."""
    recipe = (mix_manifest(store, mix).get("auto") or {}).get("train") or {}
    config, differ = config.with_recipe(recipe)
    if differ and say:
        settings = ", ".join(f"{name} {mine} (validated: {theirs})" for name, (mine, theirs) in differ.items())
        log.warning("mix %r was chosen by mix --auto with other training settings; training with %s, which the "
                    "search did not validate", mix, settings)
    return config


def train_from_mix(store: Store, mix: str, config: TrainConfig) -> TrainOutcome:
    """Train one model (or an ensemble) on a stored mix; the run is a row in `rm_runs` whatever happens.

    A mix chosen by `prefgen mix --auto` carries the training settings it was validated with: they apply to
    what the config does not choose (`with_mix_recipe`).
    """
    from prefgen.train.card import write_model_card
    from prefgen.train.trainer import EnsembleResult, train

    rows = mix_rows_for_training(store, mix)
    if not rows:
        raise PrefgenError(f"mix {mix!r} has no rows")
    manifest = mix_manifest(store, mix)
    config = with_mix_recipe(store, mix, config)
    run_id = f"rm-{uuid.uuid4().hex[:12]}"
    out_dir = Path(config.out_dir).resolve()
    db.start_rm_run(store, run_id=run_id, mix_name=mix, mix_hash=manifest.get("content_hash"),
                    base_model=resolve_base(config.base), config=config.to_dict(), n_members=config.ensemble,
                    checkpoint_path=str(out_dir))
    try:
        with store.released():  # readers get in while the model trains
            result = train(rows, config)
    except BaseException as exc:
        if store.con is not None:  # else the store could not be held again after training (StoreBusy)
            db.finish_rm_run(store, run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    members = result.members if isinstance(result, EnsembleResult) else [result]
    first = members[0]
    outcome = TrainOutcome(
        run_id=run_id, out_dir=str(out_dir), n_train=sum(m.n_train for m in members), members=len(members),
        device=first.device, pairs_per_s=sum(m.pairs_per_s for m in members) / len(members),
        duration_s=sum(m.duration_s for m in members), initial_loss=first.initial_loss,
        final_loss=members[-1].final_loss, data_report=first.data_report, method=config.method,
        first_logged=next(iter(logged_losses(first.log_history)), None),
        last_logged=(logged_losses(members[-1].log_history) or [None])[-1], steps=members[-1].steps,
        mean_loss=mean_loss(members[-1].log_history),
    )
    card_data = _card_data(store, mix, rows)
    db.finish_rm_run(store, run_id, status="finished", data={**outcome.data_report, "card": card_data},
                     n_train=outcome.n_train,
                     device=first.device, dtype=first.dtype, duration_s=outcome.duration_s,
                     pairs_per_s=outcome.pairs_per_s, initial_loss=outcome.initial_loss,
                     final_loss=outcome.final_loss)
    record = dict(first.record)
    if isinstance(result, EnsembleResult):
        record["ensemble"] = result.manifest
    write_model_card(out_dir, train=record, data=card_data)
    return outcome


def rows_from_file(spec: str, fmt: str, *, skip_bad: bool = False) -> list[dict[str, Any]]:
    """Labelled pairs of any human-label format as evaluation rows (ties kept, flagged)."""
    from prefgen.pipelines.humans.imports import read_human

    read = read_human(spec, fmt=fmt, skip_bad=skip_bad)
    consensus = {label.pair_id: label.winner for label in read.labels if label.annotator in ("label", "majority")}
    return [training_row(pair.prompt if isinstance(pair.prompt, str) else [dict(m) for m in pair.prompt],
                         pair.response_a, pair.response_b, consensus[pair.id], source=pair.source, pair_id=pair.id)
            for pair in read.pairs]


def evaluate(store: Store | None, model_dir: str | Path, config: EvalConfig | None = None, **options: Any):
    """Evaluate a model (or ensemble) against held-out human labels (or a labelled file, `pairs`); store the
    metrics. The knobs are `EvalConfig`'s (or its fields as keyword arguments).

    The page, plots and eval.json go to `out` (default: a new `MODEL/evals/<time>` folder), so an evaluation
    never overwrites an earlier one; the model card shows the newest in full and lists them all.
    """
    from prefgen.train.card import write_model_card
    from prefgen.train.common import TRAIN_RECORD
    from prefgen.train.evaluate import evaluate_model, new_eval_dir

    config = configured(EvalConfig, config, options)
    pairs, out = config.pairs, config.out
    if pairs is not None:
        rows, split_name = rows_from_file(pairs, config.fmt, skip_bad=config.skip_bad), Path(pairs).name
    else:
        if store is None:
            raise PrefgenError("evaluating on the held-out split needs --db (or give --pairs FILE)")
        rows, split_name = heldout_rows(store, include_ties=True, import_source=True), config.split
    model_path = str(Path(model_dir).resolve())
    record_path = Path(model_dir) / TRAIN_RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    context = eval_context(store, model_path, record, rows, split_name, evaluated_on=pairs or store.path)
    out_dir = Path(out) if out is not None else new_eval_dir(model_dir)
    from prefgen.pipelines.labelling.progress import ScoringProgress

    with ScoringProgress(len(rows), enabled=config.progress) as bar:
        report = evaluate_model(model_dir, rows, out_dir, batch_size=config.batch_size, context=context,
                                on_progress=bar.update if bar.enabled else None)
    if store is not None:
        run_id = db.rm_run_for_checkpoint(store, model_path)
        db.save_rm_eval(store, eval_id=f"ev-{uuid.uuid4().hex[:12]}", run_id=run_id, model_path=model_path,
                        split=split_name, metrics=sorted(report.flat_metrics().items()), n=report.n_pairs)
    history = record_evaluation(model_dir, report, split_name)
    readme = Path(model_dir) / "README.md"
    if record and readme.is_file():  # add the evaluation to the card prefgen wrote
        write_model_card(model_dir, train=record, data=_card_data_from_existing(store, model_path),
                         evaluation={**report.metrics, "split": split_name}, evaluations=history)
    return report


EVALS_RECORD = "prefgen_evals.json"  # every evaluation of the model, newest first: what the card lists


def record_evaluation(model_dir: str | Path, report: Any, split_name: str) -> list[dict[str, Any]]:
    """Add this evaluation to MODEL/prefgen_evals.json; returns every evaluation, newest first."""
    from datetime import UTC, datetime

    path = Path(model_dir) / EVALS_RECORD
    history = json.loads(path.read_text()) if path.is_file() else []
    entry = {"at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "split": split_name,
             "n_pairs": report.n_pairs, "accuracy": report.metrics.get("accuracy"),
             "ci95": report.metrics.get("accuracy_ci95"), "html": str(Path(report.html_path).resolve())}
    history = [entry, *history]
    path.write_text(json.dumps(history, indent=2, default=str))
    return history


def eval_context(store: Store | None, model_path: str, record: dict[str, Any], rows: list[dict[str, Any]],
                 split_name: str, *, evaluated_on: str) -> dict[str, dict[str, Any]]:
    """What the evaluation page opens with: the model, the data it was trained on, the labels it is judged by."""
    from collections import Counter

    from prefgen.train.eval_report import is_tie

    run = db.rm_run_details(store, model_path) if store is not None else None
    run = run or {}
    config = record.get("config") or {}
    card = _card_data_from_existing(store, model_path) or {}
    from prefgen.train.card import base_display_name

    model = {"path": model_path, "base": base_display_name(record.get("base") or run.get("base_model")),
             "method": config.get("method"), "loss": config.get("loss"), "trained at": record.get("created_at"),
             "training run": run.get("run_id"), "final training loss": run.get("final_loss")}
    if not record and not run:
        model["note"] = "not trained by prefgen (no prefgen_train.json): training details unknown"
    training = {"mix": run.get("mix_name"), "pairs": card.get("n_pairs") or run.get("n_train"),
                "sources": card.get("sources"), "judge agreement with humans": card.get("judge_agreement") or None}
    evaluation = {"labels": f"{split_name} ({evaluated_on})", "pairs": len(rows),
                  "human ties": sum(is_tie(row) for row in rows),
                  "import sources": dict(Counter(str(row.get("source") or "unknown") for row in rows).most_common())}
    return {"model": model, "training data": training, "evaluation set": evaluation}


def _card_data_from_existing(store: Store | None, model_path: str) -> dict[str, Any] | None:
    if store is None:
        return None
    # What the card said about the data when the model was trained: not recomputed (the store may have
    # moved on since), and the judge-vs-human bootstrap is not run again.
    return db.card_data_of_checkpoint(store, model_path)


def score_file(model_dir: str | Path, config: ScoreConfig | None = None, **options: Any) -> tuple[Path, int]:
    """Reward of every response in a file (`pairs` or `responses`), written next to it as JSONL
    (`<name>.scored.jsonl`, or `out`). The knobs are `ScoreConfig`'s (or its fields as keyword arguments).

    Rows with `response_a`/`response_b` get `reward_a`, `reward_b` and `preferred`; rows with `response` get
    `reward`; rows with `responses` (best-of-N candidates) get `rewards` and `best`. Ensembles add the
    conservative (`*_min`) reward and the members' disagreement (`*_std`).
    """
    from prefgen.train.score import load_reward_model, score_texts

    config = configured(ScoreConfig, config, options)
    spec, out, batch_size = config.pairs or config.responses, config.out, config.batch_size
    rows = [row.data for row in read_rows(spec)]
    if not rows:
        raise PrefgenError(f"{spec}: nothing to score")
    prompts, responses, where = [], [], []
    for i, row in enumerate(rows):
        for key, texts in _responses_of(row, spec, i):
            for j, text in enumerate(texts):
                prompts.append(row.get("prompt", ""))
                responses.append(text)
                where.append((i, key, j))
    model = load_reward_model(model_dir)
    scores = score_texts(model, prompts, responses, batch_size)
    ensemble = scores.members.shape[0] > 1
    for k, (i, key, j) in enumerate(where):
        _put(rows[i], key, j, float(scores.mean[k]), float(scores.min[k]) if ensemble else None,
             float(scores.std[k]) if ensemble else None)
    for row in rows:
        if "reward_a" in row:
            row["preferred"] = "a" if row["reward_a"] >= row["reward_b"] else "b"
        if "rewards" in row:
            row["best"] = max(range(len(row["rewards"])), key=row["rewards"].__getitem__)
    target = Path(out) if out else _scored_path(spec)
    target.write_bytes(b"".join(orjson.dumps(row, default=str) + b"\n" for row in rows))
    return target, len(responses)


def _responses_of(row: dict[str, Any], spec: str, index: int) -> list[tuple[str, list[str]]]:
    if "response_a" in row and "response_b" in row:
        return [("reward_a", [row["response_a"]]), ("reward_b", [row["response_b"]])]
    if "responses" in row and isinstance(row["responses"], list):
        return [("rewards", list(row["responses"]))]
    if "response" in row:
        return [("reward", [row["response"]])]
    raise PrefgenError(f"{spec}: row {index + 1} has no response_a/response_b, responses or response column")


def _put(row: dict[str, Any], key: str, j: int, mean: float, low: float | None, std: float | None) -> None:
    if key == "rewards":
        row.setdefault("rewards", []).append(mean)
        if low is not None:
            row.setdefault("rewards_min", []).append(low)
            row.setdefault("rewards_std", []).append(std)
        return
    row[key] = mean
    if low is not None:
        row[f"{key}_min"], row[f"{key}_std"] = low, std


def _scored_path(spec: str) -> Path:
    path = Path(spec)
    return path.with_name(f"{path.stem}.scored.jsonl")
