"""The command line: thin. Each command parses options and calls one library function.

Heavy libraries are imported inside the commands, so `prefgen --help` is instant.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from prefgen.cli_options import config_from_options, option_from_field, options_from_fields
from prefgen.cli_output import JSON_OPTION, SHARED_OPTIONS, emit, reset_output
from prefgen.errors import ExitCode, PrefgenError
from prefgen.pipelines.configs import LabelConfig, MixConfig, QueryOutput, RouteConfig, RouteWeights
from prefgen.redact import redact
from prefgen.train.config import TrainConfig

DB_OPTION = option_from_field(LabelConfig, "db", "--db", type=click.Path(dir_okay=False, path_type=Path))


class PrefgenGroup(click.Group):
    """Turns user errors into one clear line and a non-zero exit code, without a traceback; gives every command
    the shared output options; lists commands with their whole first sentence."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra) -> click.Context:
        reset_output()
        return super().make_context(info_name, args, parent, **extra)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.extend(SHARED_OPTIONS)
        super().add_command(cmd, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click cuts each summary at the terminal's width ("Judge/human agreement (ties excluded and as
        # half, Cohen's..."); the first sentence is wrapped instead.
        rows = [(name, command.get_short_help_str(limit=1000)) for name in self.list_commands(ctx)
                if (command := self.get_command(ctx, name)) is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PrefgenError as exc:
            click.secho(f"error: {redact(str(exc))}", fg="red", err=True)
            sys.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            _interrupted()
        except Exception as exc:
            # DuckDB turns a Ctrl-C during a query into its own InterruptException ("Query interrupted").
            if type(exc).__name__ == "InterruptException" and type(exc).__module__.startswith(("duckdb", "_duckdb")):
                _interrupted()
            raise


def _interrupted() -> None:
    """A Ctrl-C that reached the top: one line, exit 130. Every write is a transaction, so the store is whole."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a further Ctrl-C must not turn the exit into a traceback
    click.secho("interrupted; everything written is kept. Run the same command to resume.", fg="yellow", err=True)
    sys.exit(ExitCode.INTERRUPTED)


@click.group(cls=PrefgenGroup, context_settings={"help_option_names": ["-h", "--help"]},
             params=list(SHARED_OPTIONS))
@click.version_option(package_name="prefgen")
def cli() -> None:
    """prefgen: label response pairs with position-swapped LLM judges under a constitution, keep every
    judgement in DuckDB, mix AI and human preferences, and train reward models with TRL.

    \b
    Exit codes (docs/exit-codes.md): 0 done; 2 bad input; 3 some judge calls
    failed; 4 every call failed, or the run stopped early (key, URL, server);
    5 --max-cost reached; 130 interrupted.
    Shell completion: eval "$(_PREFGEN_COMPLETE=bash_source prefgen)"
    """


@cli.command()
@option_from_field(LabelConfig, "constitution", "--constitution", "-c",
                   type=click.Path(exists=True, dir_okay=False, path_type=Path))
@option_from_field(LabelConfig, "pairs", "--pairs", "-p")
@option_from_field(LabelConfig, "judge", "--judge", "-j")
@DB_OPTION
@option_from_field(LabelConfig, "api_base", "--api-base", multiple=True)
@option_from_field(LabelConfig, "api_key", "--api-key", envvar="PREFGEN_API_KEY")
@option_from_field(LabelConfig, "allow_http_key", "--allow-http-key")
@option_from_field(LabelConfig, "concurrency", "--concurrency")
@option_from_field(LabelConfig, "threshold", "--threshold")
@option_from_field(LabelConfig, "max_cost", "--max-cost")
@option_from_field(LabelConfig, "limit", "--limit")
@option_from_field(LabelConfig, "mode", "--mode")
@option_from_field(LabelConfig, "samples", "--samples")
@option_from_field(LabelConfig, "price_in", "--price-in")
@option_from_field(LabelConfig, "price_out", "--price-out")
@option_from_field(LabelConfig, "max_attempts", "--max-attempts")
@option_from_field(LabelConfig, "timeout_s", "--timeout")
@option_from_field(LabelConfig, "transport", "--transport")
@option_from_field(LabelConfig, "batch_size", "--batch-size")
@option_from_field(LabelConfig, "skip_bad", "--skip-bad")
@option_from_field(LabelConfig, "dry_run", "--dry-run")
@option_from_field(LabelConfig, "progress", "--progress")
@option_from_field(LabelConfig, "chunk_pairs", "--chunk-pairs")
@option_from_field(LabelConfig, "engine", "--engine")
@option_from_field(LabelConfig, "address", "--address")
@option_from_field(LabelConfig, "workers", "--workers")
@option_from_field(LabelConfig, "shards", "--shards")
@JSON_OPTION
def label(as_json: bool, **options) -> None:
    """Judge every pair under principles sampled from a constitution, in both orders, into DuckDB.

    Re-running the same command resumes: answers already stored are not asked for (or paid for) again.
    Exits 3 when some calls failed, 4 when all did, 5 at --max-cost, 130 when interrupted.
    """
    from prefgen.pipelines.labelling import run_label
    from prefgen.pipelines.reporting.output import OUTPUT
    from prefgen.pipelines.reporting.console import print_label_summary, to_json

    if OUTPUT.quiet or as_json:
        options["progress"] = False
    summary = run_label(config_from_options(LabelConfig, **options))
    if as_json:
        click.echo(to_json({**dataclasses.asdict(summary), "exit_code": int(summary.exit_code)}))
    else:
        print_label_summary(summary)
    sys.exit(int(summary.exit_code))


@cli.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@DB_OPTION
@JSON_OPTION
def ingest(shards: tuple[Path, ...], db: Path, as_json: bool) -> None:
    """Merge Parquet shards of judgements (files or directories, from `label --engine ray`) into the store by
    request hash, and derive the preferences of the pairs they answered. Ingesting twice changes nothing."""
    from prefgen.pipelines.labelling.ingest import ingest as ingest_shards

    summary = ingest_shards(db, list(shards))
    emit(summary, as_json, lambda: click.echo(
        f"{summary.files} shard(s), {summary.rows} judgement row(s): {summary.written} new to {db}; "
        f"preferences derived for {summary.pairs} pair(s) ({summary.preferences} pair-principle rows)"))


@cli.command()
@click.argument("query")
@DB_OPTION
@option_from_field(QueryOutput, "format", "--format")
@option_from_field(QueryOutput, "out", "--out", type=click.Path(dir_okay=False, path_type=Path))
def sql(query: str, db: Path, **options) -> None:
    """Run SQL against the store (opened read-only) and print or export the result.

    \b
    Allowed: SELECT (and WITH, DESCRIBE, SHOW, PRAGMA that read) over the store's tables and views, and
    temporary tables or views that vanish with the command.
    Not allowed: any change to the store; reading or writing any other file (read_csv, read_parquet,
    read_text, COPY ... TO, EXPORT DATABASE); ATTACH; INSTALL or LOAD of extensions; SET. Write a result
    to a file with --format and --out instead. prefgen's own views (kept_pairs, drop_reasons, ...) mean
    prefgen's definitions even if the file carries other ones under those names.
    """
    from prefgen.pipelines.reporting.console import write_query_result
    from prefgen.storage.db import Store

    output = config_from_options(QueryOutput, **options)
    with Store(db, read_only=True) as store:
        write_query_result(store.run_sql(query), output.format, output.out)


@cli.command()
@DB_OPTION
@JSON_OPTION
def stats(db: Path, as_json: bool) -> None:
    """Summary of the store: pairs, judgements, kept, drops by reason, position bias, consistency, cost."""
    # Loaded before the store is opened: a label run cannot write while a reader holds the file.
    import prefgen.pipelines.humans.agreement  # noqa: F401
    from prefgen.pipelines.reporting.console import print_tables, stats_tables
    from prefgen.storage.db import Store

    with Store(db, read_only=True) as store:
        tables = stats_tables(store)
    emit(tables, as_json, lambda: print_tables(tables))


# --- human data, agreement, mixes (issue 3) ---


@cli.command("import-human")
@click.argument("file")
@click.option("--format", "fmt", type=click.Choice(["auto", "hh", "trl", "pairwise", "annotators", "label-studio",
                                                    "argilla"]),
              default="auto", show_default=True,
              help="hh: HH-RLHF chosen/rejected transcripts; trl: prompt/chosen/rejected (text or messages); "
                   "pairwise: prompt, two responses, winner; annotators: several annotator* columns; "
                   "label-studio / argilla: those tools' JSON export of a `prefgen route` batch.")
@DB_OPTION
@click.option("--source", default=None,
              help="Name of this import (default: the file's stem). Importing a name again replaces its labels.")
@click.option("--skip-bad", is_flag=True, help="Skip invalid rows (reported) instead of failing with nothing written.")
@click.option("--column", "columns", multiple=True, metavar="OURS=THEIRS",
              help="Read column THEIRS as OURS (prompt, response_a, response_b, winner, chosen, rejected).")
@click.option("--split", "pin", type=click.Choice(["train", "heldout"]), default=None,
              help="Pin every label of this file to that side: `prefgen split` never moves it.")
@click.option("--labels", "labels", default=None, metavar="LABEL_FILE",
              help="FILE holds the pairs and LABEL_FILE their labels (e.g. pool.jsonl + pool_labels.jsonl), "
                   "joined on --on.")
@click.option("--on", default="id", show_default=True, help="--labels: the id column both files share.")
@JSON_OPTION
def import_human(file: str, fmt: str, db: Path, source: str | None, skip_bad: bool, columns: tuple[str, ...],
                 pin: str | None, labels: str | None, on: str, as_json: bool) -> None:
    """Import human preference labels (JSONL, CSV, Parquet, a datasets directory, or FILE.duckdb:TABLE)."""
    from prefgen.pipelines.humans.imports import import_human as run_import
    from prefgen.pipelines.humans.imports import parse_column_map
    from prefgen.storage.db import Store

    with Store(db) as store:
        report = run_import(store, file, fmt=fmt, source=source, skip_bad=skip_bad,
                            columns=parse_column_map(columns), pin=pin, labels=labels, on=on)
    emit(report, as_json, lambda: click.echo("\n".join(report.lines())))


@cli.command()
@DB_OPTION
@click.option("--heldout", type=float, required=True, help="Share of human-labelled prompts to hold out, in [0, 1).")
@click.option("--seed", default=0, show_default=True, help="Seed of the prompt hash that decides each side.")
@JSON_OPTION
def split(db: Path, heldout: float, seed: int, as_json: bool) -> None:
    """Hold out human labels by prompt: no prompt has labels on both sides, and held-out prompts never
    enter a training mix (AI pairs included)."""
    from prefgen.pipelines.humans.split import split_human
    from prefgen.storage.db import Store

    with Store(db) as store:
        report = split_human(store, heldout=heldout, seed=seed)
    emit(report, as_json, lambda: click.echo("\n".join(report.lines())))


@cli.command()
@DB_OPTION
@option_from_field(RouteConfig, "budget", "--budget")
@option_from_field(RouteConfig, "format", "--format")
@option_from_field(RouteConfig, "out", "--out", type=click.Path(dir_okay=False, path_type=Path))
@option_from_field(RouteConfig, "random_share", "--random-share")
@option_from_field(RouteConfig, "seed", "--seed")
@option_from_field(RouteConfig, "judge", "--judge")
@option_from_field(RouteConfig, "reward_model", "--model", type=click.Path(exists=True, file_okay=False, path_type=Path))
@options_from_fields(RouteWeights, lambda name: "--weight-" + name.replace("_", "-"))
@JSON_OPTION
def route(db: Path, as_json: bool, **options) -> None:
    """Send the pairs whose human label changes the training mix most to annotators: AI rows of the mix
    likely wrong (calibrated), then pairs the filters dropped (a label adds a row), with order inconsistency,
    uncertainty, closeness to the threshold, principle and judge disagreement (and a reward-model ensemble's
    spread) as weighted signals; draw a random slice for unbiased measurement, write a Label Studio or
    Argilla batch and store why each pair was picked (route_batches, route_items)."""
    from prefgen.pipelines.mixing.route import route as run_route
    from prefgen.storage.db import Store

    with Store(db) as store:
        report = run_route(store, config_from_options(RouteConfig, **options))
    emit(report, as_json, lambda: click.echo("\n".join(report.lines())))


@cli.command()
@DB_OPTION
@click.option("--judge", default=None, help="Only this judge spec (or label job id).")
@click.option("--split", "split_name", type=click.Choice(["train", "heldout"]), default=None,
              help="Only human labels on this side of the split.")
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap intervals.")
@JSON_OPTION
def agreement(db: Path, judge: str | None, split_name: str | None, seed: int, as_json: bool) -> None:
    """Judge/human agreement (ties excluded and as half, Cohen's kappa, 95% bootstrap interval), per
    principle and confidence bucket, before and after the filter; inter-annotator agreement; and each
    judge's calibration against the human train labels (reliability and ECE before and after)."""
    from prefgen.pipelines.humans.agreement import agreement_report, summary_rows
    from prefgen.pipelines.reporting.console import print_tables
    from prefgen.storage.db import Store

    from prefgen.pipelines.humans.calibration import calibrate, calibration_rows

    with Store(db) as store:
        report = agreement_report(store, judge=judge, split=split_name, seed=seed)
        calibrations = calibrate(store)
    data = {**report.as_dict(), "calibration": [c.record() for c in calibrations.values()]} if as_json else None
    emit(data, as_json, lambda: print_tables({**summary_rows(report), **calibration_rows(calibrations.values())}))


@cli.command()
@DB_OPTION
@option_from_field(MixConfig, "name", "--name")
@option_from_field(MixConfig, "human_ratio", "--human-ratio")
@click.option("--every-row", is_flag=True, help="Use every human and every AI row that passes (no ratio).")
@option_from_field(MixConfig, "labels", "--labels")
@option_from_field(MixConfig, "ai_weight", "--ai-weight")
@option_from_field(MixConfig, "ai_min_confidence", "--ai-min-confidence")
@option_from_field(MixConfig, "max_per_prompt", "--max-per-prompt")
@option_from_field(MixConfig, "weight_by_confidence", "--weight-by-confidence")
@option_from_field(MixConfig, "margin_by_confidence", "--margin-by-confidence")
@option_from_field(MixConfig, "seed", "--seed")
@option_from_field(MixConfig, "judge", "--judge")
@option_from_field(MixConfig, "size", "--size")
@click.option("--auto", is_flag=True,
              help="Choose how AI rows enter by what the human train labels show: labels corrected on the human "
                   "pairs the judge also labelled, unless human-only beats them beyond the noise on validation "
                   "folds; --human-ratio, --every-row, --labels and --ai-weight are searched.")
@click.option("--folds", default=3, show_default=True, type=click.IntRange(min=2),
              help="--auto: folds of the human train split.")
@click.option("--confidence", default=0.95, show_default=True, type=click.FloatRange(0.5, 1.0, min_open=True,
              max_open=True), help="--auto: one-sided confidence that a mix with AI rows beats human-only "
              "before it is chosen (lower takes smaller gains and more risk).")
@option_from_field(TrainConfig, "base", "--base", help="--auto: reward-model base to validate with.")
@option_from_field(TrainConfig, "max_length", "--max-length", help="--auto: tokens per side.")
@JSON_OPTION
def mix(db: Path, every_row: bool, auto: bool, folds: int, confidence: float, base: str | None, max_length: int,
        as_json: bool, **options) -> None:
    """Blend kept AI preferences with human train labels; store rows (with soft labels) and manifest."""
    from prefgen.pipelines.mixing.mix import build_mix
    from prefgen.storage.db import Store

    if every_row:
        options["human_ratio"] = None
    config = config_from_options(MixConfig, **options)
    with Store(db) as store:
        if auto:
            from prefgen.pipelines.mixing.auto import auto_mix

            report = auto_mix(store, config, TrainConfig(base=base, max_length=max_length, seed=config.seed),
                              folds=folds, confidence=confidence)
        else:
            report = build_mix(store, config)
    emit(report, as_json, lambda: click.echo("\n".join(report.lines())))


@cli.command()
@DB_OPTION
@click.option("--mix", "mix_name", default=None, help="The mix to export.")
@click.option("--split", "split_name", type=click.Choice(["heldout"]), default=None,
              help="Export the held-out human set instead of a mix.")
@click.option("--format", "fmt", type=click.Choice(["hf", "parquet", "jsonl"]), default="jsonl", show_default=True,
              help="hf: a datasets directory (save_to_disk); parquet; jsonl.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="File (or directory, for hf) to write.")
@JSON_OPTION
def export(db: Path, mix_name: str | None, split_name: str | None, fmt: str, out: Path, as_json: bool) -> None:
    """Write a mix, or the held-out human set, in TRL's preference format (prompt, chosen, rejected,
    optional margin, source, pair_id); conversational when the prompts are chats."""
    from prefgen.storage.db import Store
    from prefgen.storage.export import export_preferences

    with Store(db) as store:
        report = export_preferences(store, out, fmt=fmt, mix=mix_name, split=split_name)
    emit(report, as_json, lambda: click.echo(f"wrote {report.rows} rows to {report.path} ({report.format}"
                                              f"{', conversational' if report.conversational else ''})"))


# --- reward models (issue 4) ---


@cli.command()
@DB_OPTION
@click.option("--mix", "mix_name", required=True, help="The stored mix to train on (`prefgen mix`).")
@option_from_field(TrainConfig, "out_dir", "--out", required=True, default=None, show_default=False,
                   type=click.Path(file_okay=False, path_type=Path))
@option_from_field(TrainConfig, "base", "--base")
@option_from_field(TrainConfig, "precision", "--precision")
@option_from_field(TrainConfig, "method", "--method")
@option_from_field(TrainConfig, "pooling", "--pooling")
@click.option("--quick", is_flag=True, help="The former default for smoke runs: --method full, 1 epoch at 2e-4.")
@option_from_field(TrainConfig, "loss", "--loss")
@option_from_field(TrainConfig, "curriculum", "--curriculum")
@option_from_field(TrainConfig, "epochs", "--epochs")
@option_from_field(TrainConfig, "max_steps", "--max-steps")
@option_from_field(TrainConfig, "lr", "--lr")
@option_from_field(TrainConfig, "batch_size", "--batch-size")
@option_from_field(TrainConfig, "weight_decay", "--weight-decay")
@option_from_field(TrainConfig, "scheduler", "--scheduler")
@option_from_field(TrainConfig, "warmup_ratio", "--warmup-ratio")
@option_from_field(TrainConfig, "grad_accum", "--grad-accum")
@option_from_field(TrainConfig, "max_length", "--max-length")
@option_from_field(TrainConfig, "use_margin", "--use-margin")
@option_from_field(TrainConfig, "ensemble", "--ensemble")
@option_from_field(TrainConfig, "logging_steps", "--logging-steps")
@option_from_field(TrainConfig, "seed", "--seed")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train data-parallel on this many processes of this machine (GPUs, or CPU with gloo) under "
                   "accelerate; worth it with --method full or lora (the head method gains nothing).")
@click.option("--config-json", hidden=True, default=None, help="The whole config as JSON (used by --processes).")
@JSON_OPTION
def train(db: Path, mix_name: str, quick: bool, processes: int, config_json: str | None, as_json: bool,
          **options) -> None:
    """Train a reward model on a mix with TRL's RewardTrainer (soft Bradley-Terry by default; CUDA+bf16 when
    there is a GPU, CPU fp32 otherwise); the run is recorded in rm_runs."""
    from prefgen.pipelines.training.launch import run_training
    from prefgen.pipelines.reporting.console import train_summary_lines

    if config_json is not None:
        config = TrainConfig.model_validate_json(config_json)
    else:
        config = config_from_options(TrainConfig, **{**options, **({"method": "full", "pooling": "model"}
                                                                    if quick else {})})
    outcome = run_training(db, mix_name, config, processes)
    if outcome is not None:  # None in the launching process and in every process but the first
        emit(outcome, as_json, lambda: click.echo("\n".join(train_summary_lines(outcome))))


@cli.command("eval")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A model (or ensemble) directory written by `prefgen train`, or any reward model.")
@click.option("--db", "db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Store with held-out human labels (results go to rm_evals).")
@click.option("--split", default="heldout", show_default=True, help="Which human labels to evaluate on.")
@click.option("--pairs", default=None, help="Evaluate on a labelled file instead (any import-human format).")
@click.option("--format", "fmt", default="auto", show_default=True,
              type=click.Choice(["auto", "hh", "trl", "pairwise", "annotators"]), help="Format of --pairs.")
@click.option("--skip-bad", is_flag=True, help="Skip invalid rows of --pairs (reported) instead of failing.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for eval.html, eval.json and the plots (default: a new MODEL/evals/<UTC time>).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar while scoring.")
@JSON_OPTION
def eval_(model_dir: Path, db: Path | None, split: str, pairs: str | None, fmt: str, skip_bad: bool,
          batch_size: int, out: Path | None, progress: bool, as_json: bool) -> None:
    """Agreement with held-out human labels (bootstrap 95% interval), calibration, reward distributions,
    length bias, per-source accuracy; writes PNG plots and eval.html into a folder of their own (earlier
    evaluations are kept; the model card lists them all)."""
    from prefgen.pipelines.reporting.console import print_eval
    from prefgen.pipelines.training.stages import evaluate
    from prefgen.storage.db import Store

    if db is None and pairs is None:
        raise click.UsageError("give --db (held-out human labels) or --pairs FILE")
    if db is not None:
        with Store(db) as store:
            report = evaluate(store, model_dir, split=split, pairs=pairs, fmt=fmt, skip_bad=skip_bad,
                              batch_size=batch_size, out=out, progress=progress)
    else:
        report = evaluate(None, model_dir, pairs=pairs, fmt=fmt, skip_bad=skip_bad, batch_size=batch_size,
                          out=out, progress=progress)
    summary = {k: v for k, v in dataclasses.asdict(report).items() if k not in ("r_chosen", "r_rejected")}
    emit(summary, as_json, lambda: print_eval(report))


@cli.command()
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--pairs", "spec", default=None,
              help="Rows with prompt, response_a, response_b (JSONL, CSV, Parquet, datasets dir, FILE.duckdb:TABLE).")
@click.option("--responses", "responses", default=None,
              help="Rows with prompt and `response`, or `responses` (a list of best-of-N candidates).")
@click.option("--out", default=None, help="Output JSONL (default: <input>.scored.jsonl next to the input).")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@JSON_OPTION
def score(model_dir: Path, spec: str | None, responses: str | None, out: str | None, batch_size: int,
          as_json: bool) -> None:
    """Score responses with a reward model (or ensemble: mean, conservative min, disagreement) for
    best-of-N reranking."""
    from prefgen.pipelines.training.stages import score_file

    if (spec is None) == (responses is None):
        raise click.UsageError("give exactly one of --pairs or --responses")
    target, n = score_file(model_dir, spec or responses, out=out, batch_size=batch_size)
    emit({"responses": n, "out": target}, as_json, lambda: click.echo(f"scored {n} responses; wrote {target}"))


# --- reading a store (issue 10) ---


@cli.command()
@DB_OPTION
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write (one self-contained page).")
@JSON_OPTION
def report(db: Path, out: Path, as_json: bool) -> None:
    """One HTML page about the store: jobs, cost, calls/s, position bias, consistency, drops, confidence,
    agreement with humans and calibration, mixes, reward models and their evaluations (plots inlined).
    Reads only, so it works while a label run writes."""
    from prefgen.pipelines.reporting.page import write_report

    page = write_report(db, out)
    empty = f"; no data yet: {', '.join(page.empty)}" if page.empty else ""
    emit(page, as_json,
         lambda: click.echo(f"wrote {page.path} ({len(page.sections)} sections, {page.plots} plots{empty})"))


@cli.command()
@click.argument("judgement_id")
@DB_OPTION
@click.option("--wire", is_flag=True,
              help="Print only the request body as JSON: for openai judges, byte for byte what was posted.")
@JSON_OPTION
def show(judgement_id: str, db: Path, wire: bool, as_json: bool) -> None:
    """The request a judgement sent (system and user messages, sampling), rebuilt from the store and checked
    against its request hash, and the answer it got. JUDGEMENT_ID is a request_hash or a unique prefix."""
    from prefgen.pipelines.reporting.show import judgement_lines, show_judgement
    from prefgen.storage.db import Store

    with Store(db, read_only=True) as store:
        shown = show_judgement(store, judgement_id)
    if not wire:
        emit(shown.record(), as_json, lambda: click.echo("\n".join(judgement_lines(shown))))
        return
    if not shown.verified:
        click.secho("warning: the rebuilt request does not hash to the stored request_hash", fg="yellow", err=True)
    click.echo(shown.wire_bytes())


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
