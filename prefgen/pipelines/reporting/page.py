"""`prefgen report`: one self-contained HTML page about a store.

Jobs and runs (cost, calls/s, latency, errors), position bias and consistency per judge and principle, drop
reasons, the confidence histogram, judge-vs-human agreement and each judge's calibration, the training mixes
(with `mix --auto` decisions and trials), and the reward models with their evaluations. Plots are PNGs inlined
as base64, so the page is one file that opens anywhere; nothing is fetched and no script runs (the page's
Content-Security-Policy allows only inline images and styles). Every text from the store is escaped: a store
is a file someone may hand you.

The store is opened read-only, so a report can be made while a label run writes (see storage/db.py). A
section with nothing in the store says "no data yet".
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefgen import plots
from prefgen.intervals import interval_name
from prefgen.pipelines.reporting.facts import MISSING, PAGE, Fact, as_tables, facts_for, read_facts
from prefgen.storage.db import Store

NO_DATA = '<p class="empty">no data yet</p>'
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:80em;padding:0 1em;color:#222}"
    "h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}"
    "table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}"
    "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}"
    "td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}"
    "th{background:#f4f4f4}.empty{color:#888;font-style:italic}.note{color:#555}"
    "img{display:block;margin:.6em 0;max-width:100%}nav a{margin-right:1em}"
    ".wide{overflow-x:auto;max-width:100%}"
)
# Nothing but inline styles and data: images may load; no script, no request leaves the page.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass
class Section:
    anchor: str
    title: str
    body: str


@dataclass
class ReportPage:
    """What `write_report` wrote: the file, its sections and how many plots it holds."""

    path: Path
    sections: list[str] = field(default_factory=list)
    plots: int = 0
    empty: list[str] = field(default_factory=list)  # sections with no data yet


# -- formatting -----------------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    """A cell: four significant digits for floats (0.0003 stays 0.0003), '-' for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return ", ".join(fmt(v) for v in value)  # per-fold scores: "0.6, 0.58, 0.64", not a raw float list
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An HTML table of dict rows, every cell escaped; numbers right-aligned and never wrapped."""
    if not rows:
        return NO_DATA
    columns = list(columns or rows[0].keys())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            cells.append(f'<td{" class=num" if numeric else ""}>{html.escape(fmt(value))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    # A table wider than the page scrolls sideways in its own box rather than being clipped.
    return f'<div class="wide"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def image(png_bytes: bytes, alt: str) -> str:
    return f'<img class="plot" alt="{html.escape(alt)}" src="{plots.data_uri(png_bytes)}">'


def _judge(row: dict[str, Any]) -> str:
    return f"{row['backend']}:{row['model']}"


# -- sections -------------------------------------------------------------------------------------------


def jobs_section(d: dict[str, Any]) -> str:
    jobs, runs = d["jobs"], d["runs"]
    if not jobs and not runs:
        return NO_DATA
    parts = ["<h3>Label jobs and cost</h3>", table(jobs), "<h3>Runs</h3>", table(runs)]
    # A run that sent nothing (a resumed job with every call stored) has no speed to draw.
    timed = [r for r in runs if r["calls_per_s"] is not None and r["n_calls_sent"]]
    if timed:
        chart = plots.count_bars([f"{r['run_id']} ({r['status']})" for r in timed], [r["calls_per_s"] for r in timed],
                                 notes=[f"{r['calls_per_s']:.3g}/s (n={r['n_calls_sent']})" for r in timed],
                                 title="Judge calls per second, per label run",
                                 xlabel="calls/s (n = calls sent in the run)")
        parts.append(image(chart, "calls per second per run"))
    parts += ["<h3>Judge calls: latency, retries, errors</h3>", table(d["judge_latency"])]
    errors = d["error_reasons"]
    if errors:
        parts += ["<h3>Most frequent call failures</h3>", table(errors)]
    return "".join(parts)


def position_bias_section(d: dict[str, Any]) -> str:
    rows = d["position_bias"]
    if not rows:
        return NO_DATA
    labels = [f"{_judge(r)} / {r['principle_id']}" for r in rows]
    chart = plots.share_bars(labels, [r["first_slot_share"] for r in rows], [r["judgements"] for r in rows],
                             title="Position bias: share of verdicts naming the first slot",
                             xlabel="first-slot share (0.5 = no bias; n = answered calls)", reference=0.5)
    return ('<p class="note">Per judge and principle, over answered calls. Both orders are asked, so an unbiased '
            "judge names the first slot half the time.</p>" + image(chart, "position bias") + table(rows))


def consistency_section(d: dict[str, Any]) -> str:
    rows = d["consistency"]
    if not rows:
        return NO_DATA
    labels = [f"{_judge(r)} / {r['principle_id']}" for r in rows]
    chart = plots.share_bars(labels, [r["consistency_rate"] for r in rows], [r["judged"] for r in rows],
                             title="Consistency: both orders chose the same response",
                             xlabel="share consistent (n = judged (pair, principle))")
    return image(chart, "consistency across orders") + table(rows)


def drops_section(d: dict[str, Any]) -> str:
    rows = d["drop_reasons"]
    if not rows:
        return NO_DATA
    several = len({r["job_id"] for r in rows}) > 1
    labels = [f"{r['job_id']} / {r['reason']}" if several else r["reason"] for r in rows]
    chart = plots.count_bars(labels, [r["preferences"] for r in rows],
                             title="Preferences kept and dropped, by reason", xlabel="(pair, principle) preferences")
    return image(chart, "drop reasons") + table(rows)


def confidence_section(d: dict[str, Any]) -> str:
    rows = d["confidence_histogram"]
    if not rows:
        return NO_DATA
    parts = []
    for job_id in dict.fromkeys(r["job_id"] for r in rows):
        mine = [r for r in rows if r["job_id"] == job_id]
        chart = plots.histogram_bars([r["bucket"] for r in mine], [r["preferences"] for r in mine],
                                     [r["kept"] for r in mine], title=f"Confidence |2 P(a) - 1|, job {job_id}",
                                     xlabel="confidence bucket (counts on the bars)")
        parts.append(image(chart, f"confidence histogram of job {job_id}"))
    return "".join(parts) + table(rows)


def agreement_section(d: dict[str, Any]) -> str:
    humans = d["human_overview"]
    if not humans:
        return NO_DATA
    parts = ["<h3>Human labels</h3>", table(humans)]
    summary = d["agreement"] or {}
    for title, rows in summary.items():
        if rows:
            parts += [f"<h3>{html.escape(title)}</h3>", table(rows)]
    if not any(summary.values()):
        parts.append('<p class="empty">no pair has both a judge verdict and a human label yet</p>')
    parts.append("<h3>Calibration (judge P to how often humans agree, human train split)</h3>")
    calibrations = d["calibrations"]
    if not calibrations:
        parts.append('<p class="empty">no calibration stored yet (`prefgen mix` and `prefgen route` fit and store one; `prefgen agreement` shows it)</p>')
    for c in calibrations:
        if c["reliability"]:
            parts.append(image(plots.reliability(
                c["reliability"], x="judge_p", y="human_agreement", after="calibrated_p", n="pairs",
                title=plots.text(f"{c['judge_spec']} ({c['method']}, n={c['n_pairs']})"),
                xlabel="judge P(its side), mean per bin", ylabel="share of pairs where humans agree"),
                f"calibration of {c['judge_spec']}"))
    parts.append(table([{k: v for k, v in c.items() if k != "reliability"} for c in calibrations])
                 if calibrations else "")
    return "".join(parts)


def mixes_section(d: dict[str, Any]) -> str:
    mixes = d["mixes"]
    if not mixes:
        return NO_DATA
    parts = [table(mixes, ["name", "n_rows", "human_rows", "ai_rows", "human_ratio", "realised_ratio", "seed",
                           "created_at"])]
    trials = d["mix_trials"]
    for mix in mixes:
        auto = mix.get("auto")
        if not auto:
            continue
        parts.append(f"<h3>mix --auto: {html.escape(mix['name'])}</h3><p>chose <b>{html.escape(str(auto['chosen']))}"
                     f"</b>: {html.escape(str(auto['reason']))}</p>")
        candidates = auto.get("candidates") or []
        if candidates:
            parts.append(table(candidates, ["name", "accuracy", "delta", "low", "high", "n_ai", "per_fold"]))
            parts.append(image(auto_plot(mix["name"], auto), f"mix --auto candidates of {mix['name']}"))
        mine = [t for t in trials if t["search_id"] == auto.get("search_id")]
        if mine:
            parts += ["<h4>trials (candidate x fold)</h4>", table(mine)]
    return "".join(parts)


def auto_plot(name: str, auto: dict[str, Any]) -> bytes:
    """Each candidate's difference to human-only on the same validation pairs, with its interval: what the
    decision reads (0.537 and 0.550 on a 0-1 axis look equal; +0.013 with an interval of +-0.03 does not)."""
    candidates = [c for c in auto["candidates"] if c["name"] != "human-only"]
    confidence = auto.get("confidence", 0.95)
    return plots.interval_points(
        [c["name"] for c in candidates], [c["delta"] for c in candidates], [c["low"] for c in candidates],
        [c["high"] for c in candidates], [auto.get("n_val")] * len(candidates),
        title=plots.text(f"mix --auto {name}: agreement minus human-only's, paired ({interval_name(confidence)})"),
        xlabel="difference in validation agreement (n = validation pairs)", reference=0.0, span=None)


def reward_models_section(d: dict[str, Any]) -> str:
    runs, evals = d["rm_runs"], d["rm_evals"]
    if not runs and not evals:
        return NO_DATA
    parts = ["<h3>Training runs</h3>", table(runs), "<h3>Evaluations (newest first)</h3>", table(evals)]
    scored = [e for e in evals if e["accuracy"] is not None]
    if scored:
        parts.append(image(plots.interval_points(
            [f"{e['eval_id']} ({e['split']})" for e in scored], [e["accuracy"] for e in scored],
            [e["ci_low"] for e in scored], [e["ci_high"] for e in scored], [e["pairs"] for e in scored],
            title="Reward models: agreement with human labels (95% CI)",
            xlabel="agreement (n = pairs evaluated)", reference=0.5), "reward model agreement"))
    return "".join(parts)


# Everything the page shows is a store fact (`facts.py`), read in one go: the store is held only while they
# are read, not while plots are drawn.
SECTIONS: tuple[tuple[str, str, tuple[str, ...], Callable[[dict[str, Any]], str]], ...] = (
    ("jobs", "Jobs, runs and cost", ("jobs", "runs", "judge_latency", "error_reasons"), jobs_section),
    ("position-bias", "Position bias per judge and principle", ("position_bias",), position_bias_section),
    ("consistency", "Consistency across orders", ("consistency",), consistency_section),
    ("drops", "Drop reasons", ("drop_reasons",), drops_section),
    ("confidence", "Confidence histogram", ("confidence_histogram",), confidence_section),
    ("agreement", "Judge vs human agreement and calibration", ("human_overview", "agreement", "calibrations"),
     agreement_section),
    ("mixes", "Training mixes", ("mixes", "mix_trials"), mixes_section),
    ("reward-models", "Reward models and evaluations", ("rm_runs", "rm_evals"), reward_models_section),
)


def collect(store: Store) -> dict[str, Any]:
    """Every fact the page shows; a table a store does not have yet is marked missing, not an error."""
    return read_facts(store, PAGE)


def _section(anchor: str, title: str, needs: tuple[str, ...], build: Callable[[dict[str, Any]], str],
             data: dict[str, Any]) -> Section:
    if any(data[name] is MISSING for name in needs):
        body = ('<p class="empty">not in this store (written by an older prefgen: open it once with a writing '
                "command, e.g. prefgen split, to upgrade it)</p>")
    else:
        body = build(data)
    return Section(anchor, title, body)


def _fact_tables(fact: Fact) -> Callable[[dict[str, Any]], str]:
    """The body of a fact's section when no builder draws more: its table(s)."""

    def build(data: dict[str, Any]) -> str:
        tables = as_tables(fact, data[fact.key])
        if not any(tables.values()):
            return NO_DATA
        if len(tables) == 1:
            return table(next(iter(tables.values())))
        return "".join(f"<h3>{html.escape(title)}</h3>{table(rows)}" for title, rows in tables.items() if rows)

    return build


def build_sections(data: dict[str, Any]) -> list[Section]:
    """The sections of `SECTIONS`, then one for every other fact shown on the page (its table)."""
    sections = [_section(*spec, data) for spec in SECTIONS]
    drawn = {"overview", *(name for _, _, needs, _ in SECTIONS for name in needs)}
    sections += [_section(fact.key.replace("_", "-"), fact.title[:1].upper() + fact.title[1:], (fact.key,),
                          _fact_tables(fact), data)
                 for fact in facts_for(PAGE) if fact.key not in drawn]
    return sections


def render(db_label: str, overview: dict[str, Any], sections: Sequence[Section]) -> str:
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>{s.body}</section>' for s in sections)
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"prefgen report: {db_label}"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='note'>generated {generated}</p>"
        f"<nav>{nav}</nav><h2>Store</h2>{table([{'': k, 'value': v} for k, v in overview.items()])}"
        f"{body}</body></html>"
    )


def write_report(db: Path, out: Path) -> ReportPage:
    """Write the page for store `db` to `out`; the store is only read."""
    with Store(db, read_only=True) as store:
        data = collect(store)
    sections = build_sections(data)  # plots are drawn after the store is let go of
    text = render(Path(db).name, data["overview"], sections)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return ReportPage(out, [s.title for s in sections], text.count('<img class="plot"'),
                      [s.title for s in sections if s.body == NO_DATA])
