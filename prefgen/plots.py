"""Matplotlib figures for the HTML pages (`prefgen report`, eval.html), each returned as PNG bytes.

Every plot has a title and labelled axes, and says how many items each bar or point stands for: a share of
3 calls and a share of 3,000 look the same otherwise. matplotlib is imported inside the functions (it is
heavy, and `prefgen --help` must stay instant) and always with the file-only Agg backend.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

_WIDTH, _ROW_HEIGHT, _BASE_HEIGHT = 6.4, 0.32, 1.9


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window, works without a display
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    plt = pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def data_uri(png_bytes: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def share_bars(labels: Sequence[str], shares: Sequence[float | None], counts: Sequence[int], *, title: str,
               xlabel: str, reference: float | None = None) -> bytes:
    """Horizontal bars of a share in [0, 1] per label, each annotated with its share and n."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(_WIDTH, _BASE_HEIGHT + _ROW_HEIGHT * len(labels)))
    values = [s if s is not None else 0.0 for s in shares]
    ax.barh(range(len(labels)), values, color="#4c72b0")
    for i, (share, n) in enumerate(zip(shares, counts)):
        text = f"{share:.0%}  (n={n})" if share is not None else f"n/a  (n={n})"
        ax.text(min(values[i] + 0.01, 0.75), i, text, va="center", fontsize=8)
    if reference is not None:
        ax.axvline(reference, linestyle="--", color="grey", linewidth=1)
    ax.set_yticks(range(len(labels)), labels=[_short(label) for label in labels], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel=xlabel, title=title)
    return png(fig)


def count_bars(labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str,
               notes: Sequence[str] | None = None) -> bytes:
    """Horizontal bars of a count (or rate) per label, each annotated with its value or its note."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(_WIDTH, _BASE_HEIGHT + _ROW_HEIGHT * len(labels)))
    ax.barh(range(len(labels)), values, color="#55a868")
    top = max(values, default=0) or 1
    for i, value in enumerate(values):
        ax.text(value + top * 0.01, i, notes[i] if notes else f"{value:g}", va="center", fontsize=8)
    ax.set_yticks(range(len(labels)), labels=[_short(label) for label in labels], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, top * 1.3), xlabel=xlabel, title=title)
    return png(fig)


def histogram_bars(buckets: Sequence[float], totals: Sequence[int], kept: Sequence[int], *, title: str,
                   xlabel: str, width: float = 0.1) -> bytes:
    """Bars per bucket (left edge), all and kept side by side, each bar annotated with its count."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(_WIDTH, 3.6))
    half = width * 0.4
    left = [b + width / 2 - half / 2 for b in buckets]
    right = [b + width / 2 + half / 2 for b in buckets]
    ax.bar(left, totals, width=half, label="all", color="#4c72b0")
    ax.bar(right, kept, width=half, label="kept", color="#55a868")
    for x, n in (*zip(left, totals), *zip(right, kept)):
        ax.text(x, n, str(n), ha="center", va="bottom", fontsize=7)
    ax.set(xlim=(0, 1), xlabel=xlabel, ylabel="preferences (pair, principle)", title=title)
    ax.legend()
    return png(fig)


def reliability(bins: Sequence[dict[str, Any]], *, title: str, x: str, y: str, after: str | None = None,
                n: str = "n", xlabel: str, ylabel: str, low: float = 0.5) -> bytes:
    """A reliability curve: predicted probability per bin against the observed rate, each point labelled with
    its n; `after` adds the calibrated curve."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.plot([low, 1], [low, 1], linestyle="--", color="grey", label="perfect")
    ax.plot([b[x] for b in bins], [b[y] for b in bins], marker="o", label="before" if after else "model")
    if after:
        ax.plot([b[after] for b in bins], [b[y] for b in bins], marker="s", label="calibrated")
    for b in bins:
        ax.annotate(f"n={b[n]}", (b[x], b[y]), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(low - 0.02, 1.02), ylim=(0, 1.05), title=title)
    ax.legend(loc="lower right", fontsize=8)
    return png(fig)


def interval_points(labels: Sequence[str], values: Sequence[float | None], lows: Sequence[float | None],
                    highs: Sequence[float | None], counts: Sequence[int | None], *, title: str, xlabel: str,
                    reference: float | None = None, span: tuple[float, float] | None = (0.0, 1.0)) -> bytes:
    """One point per label with its interval (where known) and n. `span`: the x range (None: fitted to the
    intervals, for differences around 0)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(_WIDTH, _BASE_HEIGHT + _ROW_HEIGHT * len(labels)))
    for i, (value, lo, hi, n) in enumerate(zip(values, lows, highs, counts)):
        if value is None:
            continue
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [i, i], color="#4c72b0", linewidth=2)
        ax.plot([value], [i], marker="o", color="#4c72b0")
        ax.text(value, i - 0.25, f"{value:+.3f} (n={n})" if span is None else f"{value:.3f} (n={n})", ha="center",
                fontsize=7)
    if reference is not None:
        ax.axvline(reference, linestyle="--", color="grey", linewidth=1)
    ax.set_yticks(range(len(labels)), labels=[_short(label) for label in labels], fontsize=8)
    if span is None:
        ends = [v for v in (*values, *lows, *highs, reference) if v is not None]
        pad = max(0.01, (max(ends) - min(ends)) * 0.15) if ends else 0.05
        span = (min(ends, default=-0.05) - pad, max(ends, default=0.05) + pad)
    ax.set(xlim=span, ylim=(len(labels) - 0.5, -0.7), xlabel=xlabel, title=title)  # top down, room for notes
    return png(fig)


def text(label: str) -> str:
    """Store text as matplotlib shows it literally: a `$` would otherwise start mathtext, and a principle id
    such as `$\\frac$` would fail the whole page at draw time."""
    return label.replace("$", r"\$")


def _short(label: str, most: int = 48) -> str:
    return text(label if len(label) <= most else label[: most - 1] + "\u2026")
