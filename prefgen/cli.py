"""The command line: thin. Each command parses options and calls one library function.

Heavy libraries are imported inside the commands, so `prefgen --help` is instant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

import click

from prefgen import signals
from prefgen.cli_examples import epilog
from prefgen.cli_options import config_from_options, given_flags, option_from_field, options_from_fields
from prefgen.cli_output import JSON_OPTION, SHARED_OPTIONS, emit, reset_output, say
from prefgen.errors import PrefgenError
from prefgen.pipelines.configs import (AgreementConfig, AutoMixConfig, EvalConfig, ExportConfig, ImportConfig,
                                       LabelConfig, MixConfig, QueryOutput, RouteConfig, RouteWeights, ScoreConfig,
                                       SplitConfig)
from prefgen.redact import redact
from prefgen.terminal import inert
from prefgen.train.config import TrainConfig

# One store for a session without repeating --db: `export PREFGEN_DB=prefs.duckdb` (llm keeps a default log too).
DB_ENVVAR = "PREFGEN_DB"
DB_OPTION = option_from_field(LabelConfig, "db", "--db", type=click.Path(dir_okay=False, path_type=Path),
                              envvar=DB_ENVVAR, show_envvar=True)


class PrefgenGroup(click.Group):
    """Turns user errors into one clear line and a non-zero exit code, without a traceback; gives every command
    the shared output options; lists commands with their whole first sentence."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra) -> click.Context:
        reset_output()
        signals.reset()
        return super().make_context(info_name, args, parent, **extra)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.extend(SHARED_OPTIONS)
        cmd.epilog = cmd.epilog or epilog(name or cmd.name or "")
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
            with signals.graceful_signals():  # SIGTERM and SIGHUP end every command as Ctrl-C does
                return super().invoke(ctx)
        except PrefgenError as exc:
            if signals.received() is None:
                click.secho(f"error: {inert(redact(str(exc)))}", fg="red", err=True)
                sys.exit(int(exc.exit_code))
            _interrupted()  # an error raised while the command was being stopped
        except KeyboardInterrupt:
            _interrupted()
        except Exception as exc:
            # DuckDB turns a Ctrl-C during a query into its own InterruptException ("Query interrupted"), and a
            # SIGTERM handler's exception into a RuntimeError of the same words.
            if signals.received() is not None or (type(exc).__name__ == "InterruptException"
                                                  and type(exc).__module__.startswith(("duckdb", "_duckdb"))):
                _interrupted()
            raise


def _interrupted() -> None:
    """Ctrl-C, SIGTERM or SIGHUP reached the top: one line, exit 128 + the signal (130, 143, 129). Every write is
    a transaction, so the store is whole."""
    import signal

    for sig in (signal.SIGINT, *signals.GRACEFUL):  # a further signal must not turn the exit into a traceback
        with contextlib.suppress(ValueError):  # not the main thread: it cannot set handlers, nor get signals
            signal.signal(sig, signal.SIG_IGN)
    received = signals.received()
    what = "interrupted" if received in (None, signal.SIGINT) else f"stopped by {signals.signal_name(received)}"
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
        click.secho(f"{what}; everything written is kept. Run the same command to resume.", fg="yellow", err=True)
    sys.exit(signals.exit_code(received))


@click.group(cls=PrefgenGroup, context_settings={"help_option_names": ["-h", "--help"]},
             params=list(SHARED_OPTIONS))
@click.version_option(package_name="prefgen")
def cli() -> None:
    """prefgen: label response pairs with position-swapped LLM judges under a constitution, keep every
    judgement in DuckDB, mix AI and human preferences, and train reward models with TRL.

    \b
    Exit codes (docs/exit-codes.md): 0 done; 2 bad input; 3 some judge calls
    failed; 4 every call failed, or the run stopped early (key, URL, server);
    5 --max-cost reached; 130 interrupted (Ctrl-C), 143 SIGTERM, 129 SIGHUP.
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
@option_from_field(LabelConfig, "batch", "--batch")
@option_from_field(LabelConfig, "batch_poll_s", "--batch-poll")
@option_from_field(LabelConfig, "batch_max_requests", "--batch-max-requests")
@option_from_field(LabelConfig, "adaptive_concurrency", "--adaptive-concurrency")
@JSON_OPTION
def label(as_json: bool, **options) -> None:
    """Judge every pair under principles sampled from a constitution, in both orders, into DuckDB.

    Re-running the same command resumes: answers already stored are not asked for (or paid for) again.
    Exits 3 when some calls failed, 4 when all did, 5 at --max-cost, 130 / 143 / 129 when stopped by Ctrl-C,
    SIGTERM or SIGHUP (every answer got is written first).
    """
    from prefgen import api
    from prefgen.pipelines.reporting.output import OUTPUT
    from prefgen.pipelines.reporting.console import print_label_summary, to_json

    if OUTPUT.quiet or as_json:
        options["progress"] = False
    summary = api.label(config_from_options(LabelConfig, **options))
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
    from prefgen import api

    summary = api.ingest(db, list(shards))
    emit(summary, as_json, lambda: say(
        f"{summary.files} shard(s), {summary.rows} judgement row(s): {summary.written} new to {db}; "
        f"preferences derived for {summary.pairs} pair(s) ({summary.preferences} pair-principle rows)"))


@cli.command()
@click.argument("query")
@DB_OPTION
@option_from_field(QueryOutput, "format", "--format")
@option_from_field(QueryOutput, "out", "--out", type=click.Path(dir_okay=False, path_type=Path))
@JSON_OPTION
def sql(query: str, db: Path, as_json: bool, **options) -> None:
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

    if as_json:  # as every other command spells it: --format json
        options["format"] = "json"
    output = config_from_options(QueryOutput, **options)
    with Store(db, read_only=True) as store:
        write_query_result(store.run_sql(query), output.format, output.out)


@cli.command()
@DB_OPTION
@JSON_OPTION
def stats(db: Path, as_json: bool) -> None:
    """Summary of the store: pairs, judgements, kept, drops by reason, position bias, consistency, cost."""
    from prefgen import api
    from prefgen.pipelines.reporting.console import print_tables
    from prefgen.pipelines.reporting.facts import titled_tables

    data = api.stats(db)  # --json: by key (overview, jobs, drop_reasons...); the terminal: titled tables
    emit(data, as_json, lambda: print_tables(titled_tables(data)))


# --- human data, agreement, mixes (issue 3) ---


@cli.command("import-human")
@click.argument("file")
@option_from_field(ImportConfig, "fmt", "--format")
@DB_OPTION
@option_from_field(ImportConfig, "source", "--source")
@option_from_field(ImportConfig, "skip_bad", "--skip-bad")
@option_from_field(ImportConfig, "columns", "--column", multiple=True, metavar="OURS=THEIRS")
@option_from_field(ImportConfig, "pin", "--split")
@option_from_field(ImportConfig, "labels", "--labels", metavar="LABEL_FILE")
@option_from_field(ImportConfig, "on", "--on")
@JSON_OPTION
def import_human(file: str, db: Path, as_json: bool, **options) -> None:
    """Import human preference labels (JSONL, CSV, Parquet, a datasets directory, or FILE.duckdb:TABLE)."""
    from prefgen import api

    report = api.import_human(db, file, config_from_options(ImportConfig, **options))
    emit(report, as_json, lambda: say("\n".join(report.lines())))


@cli.command()
@DB_OPTION
@option_from_field(SplitConfig, "heldout", "--heldout")
@option_from_field(SplitConfig, "seed", "--seed")
@JSON_OPTION
def split(db: Path, as_json: bool, **options) -> None:
    """Hold out human labels by prompt: no prompt has labels on both sides, and held-out prompts never
    enter a training mix (AI pairs included)."""
    from prefgen import api

    report = api.split(db, config_from_options(SplitConfig, **options))
    emit(report, as_json, lambda: say("\n".join(report.lines())))


@cli.command()
@DB_OPTION
@option_from_field(RouteConfig, "budget", "--budget")
@option_from_field(RouteConfig, "format", "--format")
@option_from_field(RouteConfig, "out", "--out", type=click.Path(dir_okay=False, path_type=Path))
@option_from_field(RouteConfig, "random_share", "--random-share")
@option_from_field(RouteConfig, "seed", "--seed")
@option_from_field(RouteConfig, "judge", "--judge")
@option_from_field(RouteConfig, "reward_model", "--model", type=click.Path(exists=True, file_okay=False, path_type=Path))
@option_from_field(RouteConfig, "cross_check", "--cross-check")
@option_from_field(RouteConfig, "base", "--base")
@options_from_fields(RouteWeights, lambda name: "--weight-" + name.replace("_", "-"))
@JSON_OPTION
def route(db: Path, as_json: bool, **options) -> None:
    """Send the pairs whose human label changes the training mix most to annotators: AI rows of the mix
    likely wrong (calibrated; with --cross-check, doubted by reward models that never saw them too), then
    pairs the filters dropped (a label adds a row), with order inconsistency, uncertainty, closeness to the
    threshold, principle and judge disagreement (and a reward-model ensemble's spread) as weighted signals;
    draw a random slice for unbiased measurement, write a Label Studio or Argilla batch and store why each
    pair was picked (route_batches, route_items)."""
    from prefgen import api

    report = api.route(db, config_from_options(RouteConfig, **options))
    emit(report, as_json, lambda: say("\n".join(report.lines())))


@cli.command()
@DB_OPTION
@option_from_field(AgreementConfig, "judge", "--judge")
@option_from_field(AgreementConfig, "split", "--split")
@option_from_field(AgreementConfig, "seed", "--seed")
@JSON_OPTION
def agreement(db: Path, as_json: bool, **options) -> None:
    """Judge/human agreement (ties excluded and as half, Cohen's kappa, 95% bootstrap interval), per
    principle and confidence bucket, before and after the filter; inter-annotator agreement; and each
    judge's calibration against the human train labels (reliability and ECE before and after). Reads only:
    the calibrations are fitted to be shown; `mix` and `route`, which use them, store theirs."""
    from prefgen import api
    from prefgen.pipelines.humans.agreement import summary_rows
    from prefgen.pipelines.humans.calibration import calibration_rows
    from prefgen.pipelines.reporting.console import print_notes, print_tables

    shown = api.agreement(db, config_from_options(AgreementConfig, **options))
    data = ({**shown.report.as_dict(), "calibration": [c.record() for c in shown.calibrations], "notes": shown.notes}
            if as_json else None)

    def show() -> None:
        tables = {**summary_rows(shown.report), **calibration_rows(shown.calibrations)} if shown.report.jobs else {}
        if tables or not shown.notes:
            print_tables(tables)
        print_notes(shown.notes)

    emit(data, as_json, show)


AUTO_ONLY = ("folds", "confidence", "base", "max_length")  # mix options that only --auto reads
AUTO_SEARCHED = ("human_ratio", "every_row", "labels", "ai_weight")  # mix options --auto's grid sets itself


@cli.command()
@DB_OPTION
@option_from_field(MixConfig, "name", "--name")
@option_from_field(MixConfig, "human_ratio", "--human-ratio")
@click.option("--every-row", is_flag=True, help="Every human and every AI row that passes: the default, spelled out "
              "(--human-ratio sub-samples instead).")
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
                   "folds; it sets --human-ratio, --every-row, --labels and --ai-weight itself.")
@option_from_field(AutoMixConfig, "folds", "--folds")
@option_from_field(AutoMixConfig, "confidence", "--confidence")
@option_from_field(TrainConfig, "base", "--base", help="--auto: reward-model base to validate with.")
@option_from_field(TrainConfig, "max_length", "--max-length", help="--auto: tokens per side.")
@JSON_OPTION
def mix(db: Path, every_row: bool, auto: bool, folds: int, confidence: float, base: str | None, max_length: int,
        as_json: bool, **options) -> None:
    """Blend kept AI preferences with human train labels; store rows (with soft labels) and manifest."""
    from prefgen import api

    _refuse_options_that_cannot_apply(click.get_current_context(), auto)
    if every_row:
        options["human_ratio"] = None
    config = config_from_options(MixConfig, **options)
    search: AutoMixConfig | bool = False
    if auto:
        search = config_from_options(AutoMixConfig, folds=folds, confidence=confidence,
                                     train=config_from_options(TrainConfig, base=base, max_length=max_length))
    report = api.mix(db, config, auto=search)
    emit(report, as_json, lambda: say("\n".join(report.lines())))


def _refuse_options_that_cannot_apply(ctx: click.Context, auto: bool) -> None:
    """`mix` options that the chosen mode would ignore are usage errors, never silently dropped."""
    if auto:
        searched = given_flags(ctx, *AUTO_SEARCHED)
        if searched:
            raise click.UsageError(f"mix --auto chooses {', '.join(searched)} itself (each candidate of its grid "
                                   "sets them): leave them out, or build that mix without --auto")
        return
    auto_only = given_flags(ctx, *AUTO_ONLY)
    if auto_only:
        raise click.UsageError(f"{', '.join(auto_only)} only apply to mix --auto (the search's folds and the "
                               "model it validates with): add --auto, or leave them out")
    if given_flags(ctx, "every_row") and given_flags(ctx, "human_ratio"):
        raise click.UsageError("--every-row takes every row of both sides: leave out --human-ratio")


@cli.command()
@DB_OPTION
@option_from_field(ExportConfig, "mix", "--mix")
@option_from_field(ExportConfig, "split", "--split")
@option_from_field(ExportConfig, "fmt", "--format")
@option_from_field(ExportConfig, "out", "--out", type=click.Path(path_type=Path))
@JSON_OPTION
def export(db: Path, as_json: bool, **options) -> None:
    """Write a mix, or the held-out human set, in TRL's preference format (prompt, chosen, rejected,
    optional margin, source, pair_id); conversational when the prompts are chats."""
    from prefgen import api

    report = api.export(db, config_from_options(ExportConfig, **options))
    emit(report, as_json, lambda: say(f"wrote {report.rows} rows to {report.path} ({report.format}"
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
@option_from_field(TrainConfig, "quick", "--quick")
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
@option_from_field(TrainConfig, "processes", "--processes")
@click.option("--config-json", hidden=True, default=None, help="The chosen settings as JSON (used by --processes).")
@JSON_OPTION
def train(db: Path, mix_name: str, config_json: str | None, as_json: bool, **options) -> None:
    """Train a reward model on a mix with TRL's RewardTrainer (soft Bradley-Terry by default; CUDA+bf16 when
    there is a GPU, CPU fp32 otherwise); the run is recorded in rm_runs. On a mix chosen by `mix --auto`, the
    training settings it was validated with apply to every option not given."""
    from prefgen import api
    from prefgen.pipelines.reporting.console import train_summary_lines

    if config_json is not None:
        config = TrainConfig.model_validate_json(config_json)
    else:
        config = config_from_options(TrainConfig, **options)
    outcome = api.train(db, mix_name, config)
    if outcome is not None:  # None in the launching process and in every process but the first
        emit(outcome, as_json, lambda: say("\n".join(train_summary_lines(outcome))))


@cli.command("eval")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A model (or ensemble) directory written by `prefgen train`, or any reward model.")
@click.option("--db", "db", type=click.Path(dir_okay=False, path_type=Path), default=None, envvar=DB_ENVVAR,
              show_envvar=True, help="Store with held-out human labels (results go to rm_evals).")
@option_from_field(EvalConfig, "split", "--split")
@option_from_field(EvalConfig, "pairs", "--pairs")
@option_from_field(EvalConfig, "fmt", "--format")
@option_from_field(EvalConfig, "skip_bad", "--skip-bad")
@option_from_field(EvalConfig, "batch_size", "--batch-size")
@option_from_field(EvalConfig, "out", "--out", type=click.Path(file_okay=False, path_type=Path))
@option_from_field(EvalConfig, "progress", "--progress")
@JSON_OPTION
def eval_(model_dir: Path, db: Path | None, as_json: bool, **options) -> None:
    """Agreement with held-out human labels (bootstrap 95% interval), calibration, reward distributions,
    length bias, per-source accuracy; writes PNG plots and eval.html into a folder of their own (earlier
    evaluations are kept; the model card lists them all)."""
    from prefgen import api
    from prefgen.pipelines.reporting.console import print_eval

    config = config_from_options(EvalConfig, **options)
    if db is None and config.pairs is None:
        raise click.UsageError("give --db (held-out human labels) or --pairs FILE")
    report = api.evaluate(model_dir, config, db=db)
    summary = {k: v for k, v in dataclasses.asdict(report).items() if k not in ("r_chosen", "r_rejected")}
    emit(summary, as_json, lambda: print_eval(report))


@cli.command()
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A model (or ensemble) directory written by `prefgen train`, or any reward model.")
@option_from_field(ScoreConfig, "pairs", "--pairs")
@option_from_field(ScoreConfig, "responses", "--responses")
@option_from_field(ScoreConfig, "out", "--out")
@option_from_field(ScoreConfig, "batch_size", "--batch-size")
@JSON_OPTION
def score(model_dir: Path, as_json: bool, **options) -> None:
    """Score responses with a reward model (or ensemble: mean, conservative min, disagreement) for
    best-of-N reranking."""
    from prefgen import api

    target, n = api.score(model_dir, config_from_options(ScoreConfig, **options))
    emit({"responses": n, "out": target}, as_json, lambda: say(f"scored {n} responses; wrote {target}"))


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
    from prefgen import api

    page = api.report(db, out)
    empty = f"; no data yet: {', '.join(page.empty)}" if page.empty else ""
    emit(page, as_json,
         lambda: say(f"wrote {page.path} ({len(page.sections)} sections, {page.plots} plots{empty})"))


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
        emit(shown.record(), as_json, lambda: say("\n".join(judgement_lines(shown))))
        return
    if not shown.verified:
        click.secho("warning: the rebuilt request does not hash to the stored request_hash", fg="yellow", err=True)
    click.echo(shown.wire_bytes())


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
