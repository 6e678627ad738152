"""The evaluation page (eval.html) and its plots: what a reader needs to judge one evaluation.

The page opens with its context (which model, trained on what, evaluated on which labels), then the headline
metrics, the reward distributions, agreement per group (the human labels' import source, the principle
category) and three plots, each labelled and counted (n per reliability bin, n per side). Plots are written
as PNG files next to the page and inlined into it, so eval.html is one self-contained file.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prefgen import plots as figures
from prefgen.train.eval_report import PLOT_FILES, EvalReport, response_length


def write_plots(
    out: Path, r_chosen: np.ndarray, r_rejected: np.ndarray, calib: dict[str, Any], rows: Sequence[dict[str, Any]]
) -> dict[str, str]:
    """Reliability curve, reward histograms (chosen vs rejected), and length vs reward."""
    paths = {name: out / filename for name, filename in PLOT_FILES.items()}
    filled = [b for b in calib["bins"] if b["n"]]
    paths["reliability"].write_bytes(figures.reliability(
        filled, x="confidence", y="accuracy", n="n", title=f"Reliability (ECE {_fmt(calib['ece'])}, "
        f"n={sum(b['n'] for b in filled)} pairs)", xlabel="model confidence max(p, 1-p), mean per bin",
        ylabel="share of pairs where the model agrees with humans"))
    paths["rewards"].write_bytes(_rewards(r_chosen, r_rejected))
    lengths = ([response_length(row["chosen"]) for row in rows], [response_length(row["rejected"]) for row in rows])
    paths["length"].write_bytes(_length(*lengths, r_chosen, r_rejected))
    return {name: str(path) for name, path in paths.items()}


def _rewards(r_chosen: np.ndarray, r_rejected: np.ndarray) -> bytes:
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    bins = np.histogram_bin_edges(np.concatenate([r_chosen, r_rejected]), bins=30)
    ax.hist(r_chosen, bins=bins, alpha=0.6, label=f"human-chosen (n={len(r_chosen)})")
    ax.hist(r_rejected, bins=bins, alpha=0.6, label=f"human-rejected (n={len(r_rejected)})")
    ax.set(xlabel="reward", ylabel="responses per bin", title="Rewards: human-chosen vs rejected")
    ax.legend(fontsize=8)
    return figures.png(fig)


def _length(len_c: list[int], len_r: list[int], r_chosen: np.ndarray, r_rejected: np.ndarray) -> bytes:
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.scatter(len_c, r_chosen, s=8, alpha=0.6, label=f"chosen (n={len(len_c)})")
    ax.scatter(len_r, r_rejected, s=8, alpha=0.6, label=f"rejected (n={len(len_r)})")
    ax.set(xlabel="response length (characters)", ylabel="reward", title="Length vs reward")
    ax.legend(fontsize=8)
    return figures.png(fig)


def _fmt(value: Any) -> str:
    """Three decimals, or three significant digits below 0.01 (a mean margin of 0.0003 is not 0.000)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}" if value and abs(value) < 0.01 else f"{value:.3f}"
    return html.escape(str(value))


def summary_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The headline metrics as (label, value) rows, shared by eval.html, the model card and `prefgen eval`."""
    lo, hi = metrics["accuracy_ci95"]
    rows = [
        ("pairs (scored / total)", f"{metrics['n_scored']} / {metrics['n_pairs']}"),
        ("agreement with humans", f"{_fmt(metrics['accuracy'])} (95% CI {_fmt(lo)}-{_fmt(hi)})"),
        ("mean margin r(chosen) - r(rejected)", _fmt(metrics["mean_margin"])),
        ("expected calibration error", _fmt(metrics["calibration"]["ece"])),
        ("human ties", _fmt(metrics["ties"]["n_ties"])),
        (f"ties rated within {metrics['ties']['tie_margin']}", _fmt(metrics["ties"]["share_within_margin"])),
    ]
    bias = metrics.get("length_bias")
    if bias:
        rows += [
            ("corr(reward, length)", _fmt(bias["pearson_reward_length"])),
            ("longer response wins: model", _fmt(bias["longer_wins_model"])),
            ("longer response wins: humans", _fmt(bias["longer_wins_human"])),
        ]
    ensemble = metrics.get("ensemble")
    if ensemble:
        rows += [
            ("ensemble members", _fmt(ensemble["n_members"])),
            ("agreement, conservative (min) reward", _fmt(ensemble["accuracy_min_reward"])),
            ("mean disagreement (std)", _fmt(ensemble["mean_std"])),
        ]
    return rows


def context_value(value: Any) -> str:
    """A context entry as text: counts per name as `name (n), ...`."""
    if isinstance(value, Mapping):  # its numbers as every other number here (0.984, not 0.9836065573770492)
        return ", ".join(f"{k} ({_fmt(v) if isinstance(v, float) else v})" for k, v in value.items()) or "-"
    return _fmt(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(path: Path, report: EvalReport) -> Path:
    """One self-contained page: context, metrics tables and the plots embedded as base64 PNGs."""
    metrics = report.metrics
    sections = [f"<h1>Reward model evaluation</h1><p>{html.escape(report.model_dir)}</p>"]
    for title, entries in report.context.items():
        shown = [(html.escape(k), html.escape(context_value(v))) for k, v in entries.items() if v not in (None, "")]
        if shown:
            sections.append(f"<h2>{html.escape(title.capitalize())}</h2>" + _table(["", ""], shown))
    sections += ["<h2>Metrics</h2>",
                 _table(["metric", "value"], [(html.escape(k), v) for k, v in summary_rows(metrics)])]
    dist = metrics["rewards"]
    sections.append("<h2>Reward distributions</h2>" + _table(
        ["side", *dist["chosen"].keys()], [(side, *map(_fmt, stats.values())) for side, stats in dist.items()]))
    for name, groups in metrics["groups"].items():
        label = "import source of the human labels" if name == "source" else name
        cells = [(html.escape(g), _fmt(v["n"]), _fmt(v["accuracy"])) for g, v in groups.items()]
        sections.append(f"<h2>Agreement per {html.escape(label)}</h2>" + _table([name, "pairs", "agreement"], cells))
    images = "".join(f'<img alt="{name}" src="{figures.data_uri(Path(p).read_bytes())}">'
                     for name, p in report.plots.items())
    sections.append(f"<h2>Plots</h2><div>{images}</div>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:72em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}img{margin:.5em;max-width:30em}")
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>Reward model evaluation</title>"
                    f"<style>{style}</style></head><body>{''.join(sections)}</body></html>")
    return path
