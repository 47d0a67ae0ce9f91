"""Confidence intervals and paired tests against hand-computed values."""
from __future__ import annotations

import math

import pytest

from culturealign.stats import mean_ci, paired_test


def test_mean_ci_known_sample():
    # mean 3, sd sqrt(2.5) = 1.5811, t_{0.975,4} = 2.776445: half-width 2.776445 * 1.5811 / sqrt(5) = 1.9632
    ci = mean_ci([1, 2, 3, 4, 5])
    assert ci["mean"] == 3.0 and ci["n"] == 5
    assert ci["sd"] == pytest.approx(1.5811388, abs=1e-6)
    assert ci["low"] == pytest.approx(1.0367568, abs=1e-6) and ci["high"] == pytest.approx(4.9632432, abs=1e-6)
    wider = mean_ci([1, 2, 3, 4, 5], confidence=0.99)  # t_{0.995,4} = 4.604095
    assert wider["high"] - 3 == pytest.approx(4.604095 * 1.5811388 / math.sqrt(5), abs=1e-5)


def test_mean_ci_small_samples():
    one = mean_ci([7.5])
    assert (one["mean"], one["low"], one["high"], one["n"]) == (7.5, 7.5, 7.5, 1) and math.isnan(one["sd"])
    none = mean_ci([])
    assert none["n"] == 0 and all(math.isnan(none[k]) for k in ("mean", "low", "high", "sd"))
    assert mean_ci([2.0, float("nan"), 4.0])["n"] == 2  # NaNs are dropped, not propagated


def test_paired_test_hand_example():
    # differences 2,3,4,5: mean 3.5, sd 1.290994, t = 3.5 / (1.290994 / 2) = 5.422177 with 3 df;
    # all four differences positive: W- = 0 and the exact two-sided p is 2 / 2^4 = 0.125
    r = paired_test([3, 5, 7, 9], [1, 2, 3, 4])
    assert r["n"] == 4 and r["mean_diff"] == 3.5
    assert r["t"] == pytest.approx(5.422177, abs=1e-5)
    assert r["p_value_t"] == pytest.approx(0.012308, abs=1e-5)
    assert r["wilcoxon_stat"] == 0.0 and r["p_value_wilcoxon"] == pytest.approx(0.125)
    flipped = paired_test([1, 2, 3, 4], [3, 5, 7, 9])
    assert flipped["t"] == pytest.approx(-r["t"]) and flipped["p_value_t"] == pytest.approx(r["p_value_t"])


def test_paired_test_degenerate_cases():
    same = paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same["t"] == 0.0 and same["p_value_t"] == 1.0 and same["p_value_wilcoxon"] == 1.0
    single = paired_test([1.0], [0.0])
    assert single["n"] == 1 and single["mean_diff"] == 1.0
    assert math.isnan(single["p_value_t"]) and math.isnan(single["p_value_wilcoxon"])
    empty = paired_test([], [])
    assert empty["n"] == 0 and math.isnan(empty["mean_diff"])
    with pytest.raises(ValueError):
        paired_test([1, 2], [1, 2, 3])
