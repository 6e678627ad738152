"""Rendering: the end-of-run summary, `prefgen stats`, and `prefgen sql` output in every format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from prefgen.errors import PrefgenError
from prefgen.storage import stats as st
from prefgen.storage.db import Store


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"
    return str(value)


def table_of(rows: list[dict[str, Any]], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold")
    for column in rows[0] if rows else []:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row.values()))
    return table


def print_label_summary(summary: Any, console: Console | None = None) -> None:
    console = console or Console()
    _print_skipped(summary, console)
    if summary.estimated is not None:
        est = summary.estimated
        cost = f"${est['cost']:.4f}" if est["priced"] else "unknown (no price for this model; see --price-in)"
        rows = [
            {"": "pairs", "value": summary.pairs},
            {"": "calls planned", "value": summary.calls_planned},
            {"": "already stored (free)", "value": summary.calls_cached},
            {"": "calls to send", "value": est["calls"]},
            {"": "input tokens (est.)", "value": est["tokens_in"]},
            {"": "output tokens (max)", "value": est["tokens_out"]},
            {"": "cost (est.)", "value": cost},
        ]
        if est.get("cost_max") is not None:
            rows.append({"": "cost (at most; what --max-cost reserves)", "value": f"${est['cost_max']:.4f}"})
        console.print(table_of(rows, "dry run: nothing was sent"))
        return
    share = summary.first_slot_share
    rows = [
        {"": "status", "value": summary.status},
        {"": "pairs", "value": summary.pairs},
        {"": "calls planned / stored / sent", "value":
            f"{summary.calls_planned} / {summary.calls_cached} / {summary.calls_sent}"},
        {"": "judge errors", "value": summary.judge_errors},
        {"": "calls/s", "value": f"{summary.calls_per_s:.1f}"},
        {"": "kept pairs", "value": f"{summary.kept_pairs} of {summary.pairs}"},
        {"": "kept (pair, principle)", "value": f"{summary.kept_preferences} of {summary.preferences}"},
        {"": "first-slot share (position bias)", "value": f"{share:.1%}" if share is not None else "-"},
        {"": "consistency across orders", "value":
            f"{summary.consistency_rate:.1%}" if summary.consistency_rate is not None else "-"},
        {"": "tokens in / out", "value": f"{summary.tokens_in} / {summary.tokens_out}"},
        {"": "cost (this run)", "value": f"${summary.cost:.4f}"},
    ]
    if summary.job_cost:
        rows.append({"": "cost (job, all runs)", "value": f"${summary.job_cost:.4f}"})
    rows += [{"": f"dropped: {reason}", "value": n} for reason, n in summary.drop_reasons.items() if reason != "kept"]
    console.print(table_of(rows, f"label run {summary.run_id} (job {summary.job_id})"))
    if share is not None and share >= 0.8 and summary.calls_planned:
        console.print(
            f"[yellow]The judge named the first slot in {share:.0%} of its answers: it is position-biased. "
            "Position swapping caught it: its inconsistent verdicts were dropped, not kept as labels.[/yellow]"
        )
    if summary.status == "budget_stopped":
        console.print("[yellow]Stopped before passing --max-cost (it counts every run of this job); "
                      "run again with a larger budget to go on.[/yellow]")
    if summary.status == "interrupted":
        console.print("[yellow]Interrupted; everything answered is stored. Run the same command to resume.[/yellow]")


def _loss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def train_summary_lines(outcome: Any) -> list[str]:
    """The end-of-training lines of `prefgen train`, from a `TrainOutcome` and its data report."""
    report = outcome.data_report
    return [
        f"trained {outcome.members} model(s) ({outcome.method}) on {outcome.n_train} pairs on {outcome.device} "
        f"in {outcome.duration_s:.0f} s; training loss {_loss(outcome.initial_loss)} -> "
        f"{_loss(outcome.final_loss)} (ln 2 = 0.693 is a model that knows nothing)",
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
            console.print(f"  {line}", markup=False, highlight=False)
        if len(skipped) > show:
            console.print(f"  ... and {len(skipped) - show} more", highlight=False)
    if getattr(summary, "duplicates", 0):
        console.print(f"{summary.duplicates} row(s) repeated an earlier pair and were judged once.", highlight=False)


def print_stats(store: Store, console: Console | None = None) -> None:
    from prefgen.pipelines.agreement import agreement_summary

    console = console or Console()
    agreement = agreement_summary(store) or {}
    console.print(table_of([{"": k, "value": v} for k, v in st.overview(store).items()], "store"))
    for title, rows in (
        ("label jobs", st.jobs(store)),
        ("drops by reason", st.drop_reasons(store)),
        ("position bias: share of first-slot verdicts per judge and principle", st.position_bias(store)),
        ("consistency across orders per judge and principle", st.consistency(store)),
        ("confidence histogram", st.confidence_histogram(store)),
        *((f"agreement with human labels: {title}", rows) for title, rows in agreement.items()),
    ):
        if rows:
            console.print(table_of(rows, title))


def print_tables(tables: dict[str, list[dict[str, Any]]], console: Console | None = None) -> None:
    """Titled tables, skipping the empty ones."""
    console = console or Console()
    shown = [(title, rows) for title, rows in tables.items() if rows]
    for title, rows in shown:
        console.print(table_of(rows, title))
    if not shown:
        console.print("nothing to show")


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
            import sys

            pacsv.write_csv(table, sys.stdout.buffer)
            return
        pacsv.write_csv(table, out)
        return
    if fmt == "json":
        data = b"\n".join(orjson.dumps(row, default=str) for row in table.to_pylist())
        if out is None:
            print(data.decode())
        else:
            Path(out).write_bytes(data + b"\n")
        return
    rendered = table_of(table.to_pylist()) if table.num_rows else table_of([dict.fromkeys(table.column_names)])
    (console or Console()).print(rendered)


def print_eval(report: Any, console: Console | None = None) -> None:
    """The headline numbers of a reward-model evaluation, and where the full report is."""
    console = console or Console()
    m = report.metrics
    accuracy = m.get("accuracy")
    low, high = (m.get("accuracy_ci95") or [None, None])[:2]
    rows = [
        {"": "pairs", "value": report.n_pairs},
        {"": "agreement with held-out humans", "value":
            f"{accuracy:.3f} (95% CI {low:.3f}-{high:.3f})" if accuracy is not None and low is not None
            else _fmt(accuracy)},
    ]
    rows += [{"": name, "value": _fmt(value)} for name, value in report.flat_metrics().items()
             if name.split(".")[0] in ("ties", "mean_margin", "calibration", "length_bias")
             and not name.startswith("calibration.bins")]
    console.print(table_of(rows, f"reward model {report.model_dir}"))
    console.print(f"full report: {report.html_path}")
