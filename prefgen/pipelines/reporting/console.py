"""Rendering: the end-of-run summary, `prefgen stats`, and `prefgen sql` output in every format."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import sys

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from prefgen.errors import PrefgenError
from prefgen.pipelines.reporting.output import OUTPUT
from prefgen.storage.db import Store
from prefgen.terminal import inert


# A cell longer than this is cut before rendering: a table cell is for reading, `--format` for the full text.
_MAX_CELL = 200
# Text up to this long (ids, judge specs, "8 / 0 / 8", "unknown") is never cut; longer prose (a prompt, a
# response) is cut with an ellipsis only as far as the screen needs: a table cell is for reading, `sql --format`
# for the full text.
_WHOLE_TEXT = 48
_LEAST_PROSE = 24  # what such prose keeps when the screen is narrow


def make_console(stderr: bool = False) -> Console:
    """A console that respects --max-width."""
    return Console(width=OUTPUT.max_width, stderr=stderr)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Decimal):  # DuckDB's DECIMAL literals: read as the numbers they are
        value = float(value)
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.2e}"  # 0.0003 is not 0.000
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"
    text = str(value)
    if len(text) > _MAX_CELL:
        text = text[: _MAX_CELL - 1] + "…"
    return inert(" ".join(text.split()) if "\n" in text or "\t" in text else text)


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float, Decimal)) and not isinstance(value, bool))


@dataclass(frozen=True)
class _Column:
    name: str
    numeric: bool
    width: int  # at most: the header and every value whole (up to _MAX_CELL)
    least: int  # at least: `width`, except for prose, which may be cut further to fit the screen


def _columns(rows: list[dict[str, Any]], cells: list[list[str]]) -> list[_Column]:
    columns = []
    for i, name in enumerate(rows[0] if rows else []):
        numeric = all(_is_number(row[name]) for row in rows)
        widest = max(len(c[i]) for c in cells)
        # Numbers, ids, specs and words stay whole; only prose longer than _WHOLE_TEXT (a prompt) is cut, and
        # only as far as the screen needs (`_widths`).
        prose = not numeric and widest > _WHOLE_TEXT
        width = max(widest, len(name))
        columns.append(_Column(name, numeric, width, max(_LEAST_PROSE, len(name)) if prose else width))
    return columns


def _groups(columns: list[_Column], width: int | None) -> list[list[int]]:
    """Column indexes in tables that each fit `width`; every table after the first repeats the first column,
    which names the row. A column wider than the screen still gets a table of its own (the terminal wraps)."""
    if width is None or not columns:
        return [list(range(len(columns)))]
    cost = [c.least + 3 for c in columns]  # padding and border
    groups, current, used = [], [0], 1 + cost[0]
    for i in range(1, len(columns)):
        if used + cost[i] > width and len(current) > 1:
            groups.append(current)
            current, used = [0], 1 + cost[0]
        current.append(i)
        used += cost[i]
    groups.append(current)
    return groups


def _widths(columns: list[_Column], indexes: list[int], width: int | None) -> dict[int, int]:
    """The width of each column of one table: whole columns get theirs, prose shares what is left (at least
    `least`, at most `width`). Rich never narrows a no-wrap column itself, so the sharing is done here."""
    prose = [i for i in indexes if columns[i].least < columns[i].width]
    widths = {i: columns[i].width for i in indexes}
    if width is None or not prose:
        return widths
    room = width - 1 - sum(widths[i] + 3 for i in indexes if i not in prose) - 3 * len(prose)
    for i in prose:
        widths[i] = max(columns[i].least, min(columns[i].width, room // len(prose)))
    return widths


def _table(columns: list[_Column], cells: list[list[str]], indexes: list[int], width: int | None) -> Table:
    table = Table()
    widths = _widths(columns, indexes, width)
    for i in indexes:
        column = columns[i]
        # Text, not str: rich reads markup in strings, and `[link=...]` in a cell would print an OSC 8 link.
        table.add_column(Text(inert(column.name, one_line=True)), no_wrap=True, overflow="ellipsis",
                         justify="right" if column.numeric else "left", min_width=widths[i], max_width=widths[i])
    for row in cells:
        table.add_row(*(Text(row[i]) for i in indexes))
    return table


def table_of(rows: list[dict[str, Any]], width: int | None = None) -> tuple[Table, list[str]]:
    """One table within `width`, and the columns left out to keep it there (for `sql`, which can print every
    column with --format). Headers, numbers and short text are never cut; prose past _WHOLE_TEXT may be."""
    cells = [[_fmt(v) for v in row.values()] for row in rows]
    columns = _columns(rows, cells)
    first = _groups(columns, width)[0] if columns else []
    return _table(columns, cells, first, width), [c.name for i, c in enumerate(columns) if i not in first]


def tables_of(rows: list[dict[str, Any]], width: int | None = None) -> list[Table]:
    """Every column, in as many tables as `width` needs: what a summary (stats, agreement) prints, since
    those commands have no other way to show a column."""
    cells = [[_fmt(v) for v in row.values()] for row in rows]
    columns = _columns(rows, cells)
    return [_table(columns, cells, indexes, width) for indexes in _groups(columns, width)]


def print_table(console: Console, rows: list[dict[str, Any]], title: str | None = None, *,
                every_column: bool = True) -> None:
    """A titled table; the title is a line of its own, wrapped at the console's width, not the table's. With
    `every_column` (summaries) a table too wide for the screen continues in further tables; without it (`sql`)
    the columns that do not fit are named, with the options that print them."""
    if title:
        console.print(inert(title), style="bold", markup=False, highlight=False)
    if every_column:
        for table in tables_of(rows, console.width):
            console.print(table)
        return
    table, left_out = table_of(rows, console.width)
    console.print(table)
    if left_out:
        names = inert(", ".join(left_out), one_line=True)
        console.print(f"{len(left_out)} more column(s) not shown: {names} (widen with --max-width, "
                      "or print them with --format csv / json)", style="dim", markup=False, highlight=False)


def _money(value: float | None, priced: bool) -> str:
    """A cost, or "unknown" when the model has no price: $0 would claim nothing was spent."""
    if not priced or value is None:
        return "unknown (no price; see --price-in)"
    return f"${value:.4f}"


def print_label_summary(summary: Any, console: Console | None = None) -> None:
    console = console or make_console()
    _print_skipped(summary, console)
    if summary.estimated is not None:
        est = summary.estimated
        rows = [
            {"": "pairs", "value": summary.pairs},
            {"": "calls planned", "value": summary.calls_planned},
            {"": "already stored (free)", "value": summary.calls_cached},
            {"": "calls to send", "value": est["calls"]},
            {"": "input tokens (est.)", "value": est["tokens_in"]},
            {"": "output tokens (max)", "value": est["tokens_out"]},
            {"": "cost (est.)", "value": _money(est["cost"], est["priced"])},
        ]
        if est.get("cost_max") is not None:
            rows.append({"": "cost (at most; what --max-cost reserves)", "value": f"${est['cost_max']:.4f}"})
        print_table(console, rows, "dry run: nothing was sent")
        _print_warnings(summary, console)
        return
    share = summary.first_slot_share
    rows = [
        {"": "status", "value": summary.status},
        {"": "pairs", "value": summary.pairs},
        {"": "calls planned / stored / sent", "value":
            f"{summary.calls_planned} / {summary.calls_cached} / {summary.calls_sent}"},
        {"": "judge errors / parse errors", "value": f"{summary.judge_errors} / {summary.parse_errors}"},
        {"": "calls/s", "value": f"{summary.calls_per_s:.1f}" if summary.calls_sent else "- (none sent)"},
        {"": "kept pairs", "value": f"{summary.kept_pairs} of {summary.pairs}"},
        {"": "kept (pair, principle)", "value": f"{summary.kept_preferences} of {summary.preferences}"},
        {"": "first-slot share (position bias)", "value": f"{share:.1%}" if share is not None else "-"},
        {"": "consistency across orders", "value":
            f"{summary.consistency_rate:.1%}" if summary.consistency_rate is not None else "-"},
        {"": "tokens in / out", "value": f"{summary.tokens_in} / {summary.tokens_out}"},
        {"": "cost (this run)", "value": _money(summary.cost, summary.priced)},
    ]
    if summary.job_cost or summary.max_cost is not None:
        budget = f" of --max-cost ${summary.max_cost:.4f}" if summary.max_cost is not None else ""
        rows.append({"": "cost (job, all runs)", "value": _money(summary.job_cost, summary.priced) + budget})
    batches = getattr(summary, "batches", None)
    if batches is not None:
        rows.append({"": "provider batches submitted / collected / still running", "value":
                     f"{batches['submitted']} / {batches['collected']} / {batches['open']}"})
    rows += [{"": f"dropped: {reason}", "value": n} for reason, n in summary.drop_reasons.items() if reason != "kept"]
    print_table(console, rows, f"label run {summary.run_id} (job {summary.job_id})")
    _print_failures(summary, console)
    if share is not None and share >= 0.8 and summary.calls_planned:
        _note(console, f"The judge named the first slot in {share:.0%} of its answers: it is position-biased. "
              "Position swapping caught it: its inconsistent verdicts were dropped, not kept as labels.")
    _print_warnings(summary, console)
    if summary.status == "budget_stopped":
        _note(console, f"Stopped before passing --max-cost ${summary.max_cost:.4f}: the job (every run of it) has "
              f"spent ${summary.job_cost:.4f}. To go on, run the same command with a larger --max-cost (it "
              "counts what the job spent already, so give the new total).")
    if batches and batches["open"]:
        _note(console, f"{batches['open']} provider batch(es) still running: their ids are stored, so running the "
              "same command again polls and collects them (nothing is sent or paid twice).")
    elif summary.status == "interrupted":
        stopped_by = getattr(summary, "stopped_by", None)
        what = "Interrupted" if stopped_by in (None, "SIGINT") else f"Stopped by {stopped_by}"
        _note(console, f"{what}; everything answered is stored. Run the same command to resume.")
    elif not summary.calls_sent and summary.calls_cached and summary.status == "finished":
        _note(console, f"Nothing to send: all {summary.calls_cached} planned calls were answered by earlier runs "
              "(nothing was paid twice).")


def _note(console: Console, text: str) -> None:
    if not OUTPUT.quiet:
        console.print(inert(text), style="yellow", markup=False, highlight=False)


def _print_warnings(summary: Any, console: Console) -> None:
    for warning in summary.warnings:
        _note(console, f"warning: {warning}")


def _print_failures(summary: Any, console: Console) -> None:
    """The run's top failure reasons with their counts; an early stop says why and what to check. Printed
    even with -q: a failed call is never silent."""
    if summary.stopped_early:
        console.print(inert(f"error: {summary.stopped_early}"), style="red", markup=False, highlight=False)
    if not summary.failures:
        return
    failed = summary.judge_errors + summary.parse_errors
    console.print(f"{failed} of {summary.calls_sent} calls failed; top reasons:", style="red", highlight=False)
    for failure in summary.failures:
        console.print(inert(f"  {failure['calls']:>6}  {failure['status']}: {failure['error']}", one_line=True),
                      markup=False, highlight=False)
    if summary.judge_errors and not summary.stopped_early:
        console.print("Judge errors are asked again when the same command runs again.", highlight=False)


def _loss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _loss_text(outcome: Any) -> str:
    """First and last logged loss with their steps; a log of one entry is said to be one, not shown twice."""
    first, last = outcome.first_logged, outcome.last_logged
    if first is None or last is None:
        return f"training loss {_loss(outcome.initial_loss)} -> {_loss(outcome.final_loss)}"
    if first == last:
        mean = f"mean over the run {outcome.mean_loss:.3f}; " if outcome.mean_loss is not None else ""
        return (f"training loss {first[1]:.3f} at step {first[0]}, the only step logged of {outcome.steps} "
                f"({mean}--logging-steps N logs more)")
    return f"training loss {first[1]:.3f} (step {first[0]}) -> {last[1]:.3f} (step {last[0]} of {outcome.steps})"


def train_summary_lines(outcome: Any) -> list[str]:
    """The end-of-training lines of `prefgen train`, from a `TrainOutcome` and its data report."""
    report = outcome.data_report
    return [
        f"trained {outcome.members} model(s) ({outcome.method}) on {outcome.n_train} pairs on {outcome.device} "
        f"in {outcome.duration_s:.0f} s; {_loss_text(outcome)} (ln 2 = 0.693 is a model that knows nothing)",
        f"truncated {report.get('n_truncated', 0)}, dropped {report.get('n_dropped_identical', 0)} "
        f"(both sides identical) of {report.get('n_in', outcome.n_train)} pairs; run {outcome.run_id}; "
        f"saved to {outcome.out_dir}",
    ]


def _print_skipped(summary: Any, console: Console, show: int = 10) -> None:
    """--skip-bad drops rows: say how many and why (the first few), and how many rows were repeats."""
    skipped = getattr(summary, "skipped", None) or []
    if skipped:
        console.print(f"[yellow]Skipped {len(skipped)} bad row(s) (--skip-bad):[/yellow]", highlight=False)
        for line in skipped[:show]:
            console.print(inert(f"  {line}", one_line=True), markup=False, highlight=False)
        if len(skipped) > show:
            console.print(f"  ... and {len(skipped) - show} more", highlight=False)
    if getattr(summary, "duplicates", 0):
        console.print(f"{summary.duplicates} row(s) repeated an earlier pair and were judged once.", highlight=False)


def stats_tables(store: Store) -> dict[str, list[dict[str, Any]]]:
    """What `prefgen stats` shows, as titled rows (printed as tables, or as JSON with --json): the store facts
    marked for it (`prefgen.pipelines.reporting.facts`), the same the page and the model card show."""
    from prefgen.pipelines.reporting.facts import STATS, tables_for

    return tables_for(store, STATS)


def print_notes(notes: Sequence[str], console: Console | None = None) -> None:
    """Lines that explain the tables (or their absence), wrapped to the terminal, never cut."""
    from rich.text import Text

    console = console or make_console()
    for note in notes:
        console.print(Text.assemble(("note: ", "yellow"), note), highlight=False)


def print_tables(tables: dict[str, list[dict[str, Any]]], console: Console | None = None) -> None:
    """Titled tables, skipping the empty ones."""
    console = console or make_console()
    shown = [(title, rows) for title, rows in tables.items() if rows]
    for title, rows in shown:
        print_table(console, rows, title)
    if not shown:
        console.print("nothing to show (0 rows)")


def _flat_for_csv(table: Any) -> Any:
    """CSV has no lists or structs: such columns are written as JSON text."""
    import pyarrow as pa

    for i, column in enumerate(table.columns):
        if pa.types.is_nested(column.type):
            text = [None if v is None else orjson.dumps(v, default=str).decode() for v in column.to_pylist()]
            table = table.set_column(i, table.field(i).name, pa.array(text, pa.string()))
    return table


def write_query_result(table: Any, fmt: str, out: Path | None, console: Console | None = None) -> None:
    """Print or save a query result (a pyarrow Table)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if out is None:
            raise PrefgenError("--format parquet needs --out FILE")
        pq.write_table(table, out)
        return
    if fmt == "csv":
        import pyarrow.csv as pacsv

        table = _flat_for_csv(table)

        if out is None:
            pacsv.write_csv(table, sys.stdout.buffer)
            return
        pacsv.write_csv(table, out)
        return
    if fmt in ("json", "jsonl"):
        rows = table.to_pylist()
        if fmt == "json":  # one JSON array, what json.load reads
            data = to_json(rows).encode() + b"\n"
        else:  # one object a line (NDJSON)
            data = b"".join(orjson.dumps(row, default=_json_default) + b"\n" for row in rows)
        if out is None:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            Path(out).write_bytes(data)
        return
    console = console or make_console()
    if table.num_rows:
        print_table(console, table.to_pylist(), every_column=False)
    else:  # no table at all, so that no rows cannot be mistaken for a row of NULLs
        console.print(inert(f"columns: {', '.join(table.column_names)}", one_line=True), markup=False,
                      highlight=False)
    console.print(f"{table.num_rows} row{'' if table.num_rows == 1 else 's'}", style="dim", highlight=False)


def print_eval(report: Any, console: Console | None = None) -> None:
    """The headline numbers of a reward-model evaluation, named as on its page, and where the page is."""
    from prefgen.train.eval_page import summary_rows

    console = console or make_console()
    rows = [{"": "pairs", "value": report.n_pairs}]
    rows += [{"": "agreement with held-out humans" if label == "agreement with humans" else label, "value": value}
             for label, value in summary_rows(report.metrics) if not label.startswith("pairs")]
    print_table(console, rows, f"reward model {report.model_dir}")
    console.print(inert(f"full report: {report.html_path}"), markup=False, highlight=False)


def _json_default(value: Any) -> Any:
    """What orjson cannot write itself: DECIMAL columns as numbers, anything else (paths, times) as text."""
    return float(value) if isinstance(value, Decimal) else str(value)


def to_json(value: Any) -> str:
    """Any result (dataclasses, dicts, lists; paths and numpy values included) as indented JSON text."""
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
                        | orjson.OPT_SERIALIZE_NUMPY).decode()
