"""The one bootstrap interval: seeded, close to the normal approximation, defined at the edges."""

from __future__ import annotations

import numpy as np
import pytest

from prefgen.intervals import mean_interval


def test_interval_is_seeded_and_close_to_the_normal_approximation():
    scores = np.array([1.0] * 300 + [0.0] * 100)
    low, high = mean_interval(scores, seed=5)
    assert mean_interval(scores, seed=5) == (low, high)
    half_width = 1.96 * np.sqrt(0.75 * 0.25 / 400)
    assert low == pytest.approx(0.75 - half_width, abs=0.01)
    assert high == pytest.approx(0.75 + half_width, abs=0.01)


def test_constant_scores_have_a_zero_width_interval():
    assert mean_interval(np.ones(10)) == (1.0, 1.0)
    assert mean_interval([0.0]) == (0.0, 0.0)


def test_empty_set_has_no_interval():
    assert mean_interval([]) is None


def test_higher_level_gives_a_wider_interval():
    scores = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    narrow, wide = mean_interval(scores, level=0.5), mean_interval(scores, level=0.99)
    assert wide[0] <= narrow[0] <= narrow[1] <= wide[1]
