"""The Python API: one call per command, each taking the command's config model or its fields as keyword
arguments (the same names, defaults and ranges as the command's options). `prefgen.<name>` is the same function,
loaded on first use; the command line calls these too.

    import prefgen

    prefgen.label(constitution="constitution.yaml", pairs="pairs.jsonl", judge="openai:gpt-4o-mini",
                  db="prefs.duckdb")
    prefgen.import_human("prefs.duckdb", "human.jsonl", fmt="pairwise")
    prefgen.split("prefs.duckdb", heldout=0.3)
    prefgen.mix("prefs.duckdb", name="m1", auto=True)
    prefgen.train("prefs.duckdb", "m1", out_dir="rm-m1")
    report = prefgen.evaluate("rm-m1", db="prefs.duckdb")

Errors a user can fix raise `prefgen.errors.PrefgenError` (its `exit_code` is what the command exits with); a
config given values outside its ranges raises pydantic's `ValidationError`, naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefgen.pipelines.configs import (AgreementConfig, AutoMixConfig, EvalConfig, ExportConfig, ImportConfig,
                                       LabelConfig, MixConfig, RouteConfig, ScoreConfig, SplitConfig, configured)
from prefgen.train.config import TrainConfig

if TYPE_CHECKING:  # what the calls return; imported for the reader, not at run time
    from prefgen.pipelines.humans.agreement import AgreementReport
    from prefgen.pipelines.humans.calibration import Calibration
    from prefgen.pipelines.humans.split import SplitReport
    from prefgen.pipelines.humans.votes import ImportReport
    from prefgen.pipelines.labelling.ingest import IngestSummary
    from prefgen.pipelines.labelling.run import LabelSummary
    from prefgen.pipelines.mixing.auto import AutoMixReport
    from prefgen.pipelines.mixing.mix import MixReport
    from prefgen.pipelines.mixing.route import RouteReport
    from prefgen.pipelines.reporting.page import ReportPage
    from prefgen.pipelines.training.stages import TrainOutcome
    from prefgen.storage.export import ExportReport
    from prefgen.train.eval_report import EvalReport

__all__ = ["Agreement", "agreement", "evaluate", "export", "import_human", "ingest", "label", "mix", "report",
           "route", "score", "split", "stats", "train"]


def label(config: LabelConfig | None = None, /, **options: Any) -> LabelSummary:
    """`prefgen label`: judge every pair under principles sampled from a constitution, in both orders, into the
    store (`LabelConfig`: constitution, pairs, judge, db...). Re-running resumes; nothing is paid twice. Works
    inside a running event loop (a notebook cell) too."""
    from prefgen.pipelines.labelling import run_label

    return run_label(configured(LabelConfig, config, options))


def ingest(db: str | Path, shards: list[str | Path]) -> IngestSummary:
    """`prefgen ingest`: merge Parquet shards of judgements (from `label --engine ray`) into the store."""
    from prefgen.pipelines.labelling.ingest import ingest as ingest_shards

    return ingest_shards(Path(db), [Path(s) for s in shards])


def import_human(db: str | Path, file: str | Path, config: ImportConfig | None = None, /,
                 **options: Any) -> ImportReport:
    """`prefgen import-human`: import a file of human labels (`ImportConfig`: fmt, source, skip_bad, columns,
    pin, labels, on); importing a source again replaces its labels."""
    from prefgen.pipelines.humans.imports import import_human as run_import
    from prefgen.storage.db import Store

    with Store(db) as store:
        return run_import(store, file, configured(ImportConfig, config, options))


def split(db: str | Path, config: SplitConfig | None = None, /, **options: Any) -> SplitReport:
    """`prefgen split`: hold out a share of the human-labelled prompts (`SplitConfig`: heldout, seed)."""
    from prefgen.pipelines.humans.split import split_human
    from prefgen.storage.db import Store

    with Store(db) as store:
        return split_human(store, configured(SplitConfig, config, options))


@dataclass
class Agreement:
    """What `prefgen agreement` shows: judge/human and inter-annotator agreement, and each judge's calibration
    against the human train labels (fitted to be shown, not stored)."""

    report: AgreementReport
    calibrations: list[Calibration]
    notes: list[str]  # what the tables cannot say: no overlap to measure, calibrations that could not be fitted


def agreement(db: str | Path, config: AgreementConfig | None = None, /, **options: Any) -> Agreement:
    """`prefgen agreement` (`AgreementConfig`: judge, split, seed). Reads only: the store is opened read-only."""
    from prefgen.pipelines.humans.agreement import agreement_report, store_notes
    from prefgen.pipelines.humans.calibration import calibrate, calibration_notes
    from prefgen.storage.db import Store

    config = configured(AgreementConfig, config, options)
    with Store(db, read_only=True) as store:
        report = agreement_report(store, config)
        calibrations = list(calibrate(store, save=False).values())
        return Agreement(report, calibrations, store_notes(store, report) + calibration_notes(calibrations))


def route(db: str | Path, config: RouteConfig | None = None, /, **options: Any) -> RouteReport:
    """`prefgen route`: write the pairs whose human label is worth most as an annotation batch (`RouteConfig`)."""
    from prefgen.pipelines.mixing.route import route as run_route
    from prefgen.storage.db import Store

    with Store(db) as store:
        return run_route(store, configured(RouteConfig, config, options))


def mix(db: str | Path, config: MixConfig | None = None, /, *, auto: AutoMixConfig | bool = False,
        **options: Any) -> MixReport | AutoMixReport:
    """`prefgen mix`: blend kept AI preferences with the human train labels into a named mix (`MixConfig`).
    `auto` (True, or an `AutoMixConfig` with its folds, confidence and training settings) chooses how AI rows
    enter by validation on human train folds, as `mix --auto` does."""
    from prefgen.storage.db import Store

    config = configured(MixConfig, config, options)
    with Store(db) as store:
        if auto is False:
            from prefgen.pipelines.mixing.mix import build_mix

            return build_mix(store, config)
        from prefgen.pipelines.mixing.auto import auto_mix

        return auto_mix(store, config, AutoMixConfig() if auto is True else auto)


def export(db: str | Path, config: ExportConfig | None = None, /, **options: Any) -> ExportReport:
    """`prefgen export`: write a mix, or the held-out human set, in TRL's preference format (`ExportConfig`)."""
    from prefgen.storage.db import Store
    from prefgen.storage.export import export_preferences

    config = configured(ExportConfig, config, options)
    with Store(db) as store:
        return export_preferences(store, config.out, fmt=config.fmt, mix=config.mix, split=config.split)


def train(db: str | Path, mix: str, config: TrainConfig | None = None, /, **options: Any) -> TrainOutcome | None:
    """`prefgen train`: train a reward model on a stored mix (`TrainConfig`: out_dir, base, method, ...). On a
    mix chosen by `mix --auto`, the settings it validated apply to every field not given. With `processes` > 1
    it launches that many processes and returns None."""
    from prefgen.pipelines.training.launch import run_training

    return run_training(Path(db), mix, configured(TrainConfig, config, options))


def evaluate(model: str | Path, config: EvalConfig | None = None, /, *, db: str | Path | None = None,
             **options: Any) -> EvalReport:
    """`prefgen eval`: agreement of a reward model with the held-out human labels of `db` (or with a labelled
    file, `pairs=`), calibration, length bias...; the page and plots go to a folder of their own
    (`EvalConfig`)."""
    from prefgen.errors import PrefgenError
    from prefgen.pipelines.training.stages import evaluate as run_evaluate
    from prefgen.storage.db import Store

    config = configured(EvalConfig, config, options)
    if db is None:
        if config.pairs is None:
            raise PrefgenError("give db (held-out human labels) or pairs=FILE")
        return run_evaluate(None, model, config)
    with Store(db) as store:
        return run_evaluate(store, model, config)


def score(model: str | Path, config: ScoreConfig | None = None, /, **options: Any) -> tuple[Path, int]:
    """`prefgen score`: reward of every response of a file (`ScoreConfig`: pairs or responses, out); returns the
    file written and the number of responses."""
    from prefgen.pipelines.training.stages import score_file

    return score_file(model, configured(ScoreConfig, config, options))


def stats(db: str | Path) -> dict[str, Any]:
    """`prefgen stats`: the store's facts by key (`overview`, `jobs`, `drop_reasons`, `position_bias`, ...: see
    `prefgen.pipelines.reporting.facts.FACTS`); the store is opened read-only."""
    # Loaded before the store is opened: a label run cannot write while a reader holds the file.
    from prefgen.pipelines.reporting.facts import STATS, keyed_facts
    from prefgen.storage.db import Store

    with Store(db, read_only=True) as store:
        return keyed_facts(store, STATS)


def report(db: str | Path, out: str | Path) -> ReportPage:
    """`prefgen report`: one self-contained HTML page about the store (read only)."""
    from prefgen.pipelines.reporting.page import write_report

    return write_report(Path(db), Path(out))
