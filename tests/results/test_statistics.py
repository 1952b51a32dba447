"""The interval of every accuracy (study.results.statistics.binomial_ci): exact, and it covers."""

from __future__ import annotations

import numpy as np
import pytest

from study.results.statistics import accuracy_ci, binomial_ci


def test_one_correct_of_fourteen_matches_the_published_clopper_pearson_interval() -> None:
    """The case the percentile bootstrap got wrong (0.000-0.214): Clopper-Pearson's 0.002-0.339."""
    low, high = binomial_ci(1, 14)
    assert low == pytest.approx(0.0018, abs=5e-4) and high == pytest.approx(0.3387, abs=5e-4)
    acc, low2, high2 = accuracy_ci(np.r_[1, np.zeros(13)])
    assert acc == pytest.approx(1 / 14) and (low2, high2) == (low, high)


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_it_is_scipy_stats_exact_interval(level: float) -> None:
    """The interval from scipy.special's beta quantiles equals binomtest's "exact" one (the
    definition), for every count of small test splits."""
    from scipy.stats import binomtest

    for n in (1, 2, 14, 54, 90):
        for k in range(n + 1):
            ci = binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
            assert binomial_ci(k, n, level) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_the_ends_are_not_points() -> None:
    """All right or all wrong still leaves an interval (the bootstrap gave 1.0-1.0)."""
    assert binomial_ci(0, 20)[0] == 0.0 and 0.1 < binomial_ci(0, 20)[1] < 0.2
    assert binomial_ci(20, 20)[1] == 1.0 and 0.8 < binomial_ci(20, 20)[0] < 0.9
    assert binomial_ci(5, 10, level=0.99)[0] < binomial_ci(5, 10)[0]  # wider at 99 %


def test_coverage_of_simulated_test_splits() -> None:
    """2,000 test splits of 54 images (manga's) from a model that is right with p = 0.4: the 95 %
    interval holds p in at least 94 % of them."""
    n, p = 54, 0.4
    draws = np.random.default_rng(0).binomial(n, p, size=2000)
    # each count's interval once (the draws take few distinct values)
    covers = {k: binomial_ci(k, n)[0] <= p <= binomial_ci(k, n)[1] for k in set(draws.tolist())}
    coverage = np.mean([covers[k] for k in draws.tolist()])
    assert coverage >= 0.94, coverage


@pytest.mark.parametrize(("k", "n"), [(-1, 5), (6, 5), (0, 0)])
def test_bad_counts_are_refused(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="binomial_ci needs"):
        binomial_ci(k, n)
    with pytest.raises(ValueError, match="at least one"):
        accuracy_ci(np.array([]))
