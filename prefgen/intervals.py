"""The one confidence interval prefgen reports: a seeded percentile bootstrap of a mean.

Judge/human agreement (`pipelines/humans/agreement.py`) and reward-model accuracy (`train/evaluate.py`) both
report it, so both use this function: the same resample count, the same method and the same answer for
an empty set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

N_RESAMPLES = 2000
LEVEL = 0.95
_BATCH = 256  # resamples drawn at once: bounds memory at _BATCH x n values


def mean_interval(values: Sequence[float] | np.ndarray, *, n_resamples: int = N_RESAMPLES, level: float = LEVEL,
                  seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of `values`, seeded so a report is reproducible.

    None for an empty set (there is no mean to bracket). One value is its own interval: every resample
    is that value (scipy refuses samples of one).
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return None
    if data.size == 1:
        return float(data[0]), float(data[0])
    result = stats.bootstrap((data,), np.mean, n_resamples=n_resamples, confidence_level=level,
                             method="percentile", vectorized=True, batch=_BATCH, rng=np.random.default_rng(seed))
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


def interval_name(confidence: float) -> str:
    """The two-sided interval whose low end is the one-sided bound at `confidence` (0.95 -> "90% interval")."""
    return f"{2 * confidence - 1:.0%} interval"
