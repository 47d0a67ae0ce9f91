"""Small-sample statistics for comparing methods across seeds: t confidence intervals and paired tests."""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
from scipy import stats as st

NAN = float("nan")


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean and two-sided Student-t confidence interval of ``values`` (NaNs dropped).

    Returns ``{"mean", "low", "high", "n", "sd"}`` with ``sd`` the sample SD (ddof=1). With one value the interval
    collapses to the value (``sd`` NaN); with none every number is NaN.
    """
    x = np.asarray(values, dtype=float).ravel()
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n == 0:
        return {"mean": NAN, "low": NAN, "high": NAN, "n": 0, "sd": NAN}
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "low": mean, "high": mean, "n": 1, "sd": NAN}
    sd = float(x.std(ddof=1))
    half = float(st.t.ppf(0.5 + confidence / 2, df=n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n, "sd": sd}


def paired_test(a: Sequence[float], b: Sequence[float]) -> dict:
    """Paired t test and Wilcoxon signed-rank test of ``a - b`` (e.g. loss of two methods on the same seeds).

    Returns ``{"n", "mean_diff", "t", "p_value_t", "wilcoxon_stat", "p_value_wilcoxon"}``; pairs with a NaN are
    dropped. Degenerate cases never raise: with fewer than 2 pairs the statistics and p-values are NaN; when every
    difference is zero there is no evidence of a difference, so t = W = 0 and both p-values are 1.0. (Constant
    non-zero differences give t = +-inf and p = 0, scipy's limit.) ``wilcoxon_stat`` is scipy's two-sided
    statistic, min(W+, W-); small samples use its exact distribution.
    """
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired_test needs equal lengths, got {a.size} and {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    d = a[keep] - b[keep]
    n = int(d.size)
    out = {"n": n, "mean_diff": float(d.mean()) if n else NAN, "t": NAN, "p_value_t": NAN,
           "wilcoxon_stat": NAN, "p_value_wilcoxon": NAN}
    if n < 2:
        return out
    if np.all(d == 0):
        return {**out, "t": 0.0, "p_value_t": 1.0, "wilcoxon_stat": 0.0, "p_value_wilcoxon": 1.0}
    with warnings.catch_warnings():  # constant differences: scipy warns about precision loss, the limit is right
        warnings.simplefilter("ignore", RuntimeWarning)
        t = st.ttest_rel(a[keep], b[keep])
        w = st.wilcoxon(d)
    return {**out, "t": float(t.statistic), "p_value_t": float(t.pvalue),
            "wilcoxon_stat": float(w.statistic), "p_value_wilcoxon": float(w.pvalue)}
