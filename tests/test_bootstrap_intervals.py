"""complexity.bootstrap_means and percentile_interval: the one bootstrap of a mean over trials (bon_lift uses it)."""

import numpy as np
import pytest

from sharpsim.complexity import bootstrap_means, percentile_interval


def test_bootstrap_means_resample_whole_trials_reproducibly():
    # Catches: resampling cells instead of whole trials (the pairing of a trial's columns is lost), or a seed that
    # is ignored (two quantities of one set of trials would then not be paired replicate by replicate).
    x = np.arange(12.0).reshape(6, 2)
    x[:, 1] = 10 * x[:, 0]  # column 1 is exactly 10 x column 0 in every trial
    reps = bootstrap_means(x, n_boot=200, seed=3)
    assert reps.shape == (200, 2)
    np.testing.assert_allclose(reps[:, 1], 10 * reps[:, 0])  # paired: the same trials in both columns
    np.testing.assert_array_equal(reps, bootstrap_means(x, n_boot=200, seed=3))
    np.testing.assert_array_equal(reps[:, 0], bootstrap_means(x[:, 0], n_boot=200, seed=3))
    idx = np.random.default_rng(3).integers(0, 6, size=(200, 6))  # the documented resamples, by hand
    np.testing.assert_allclose(reps[:, 0], x[idx, 0].mean(axis=1))


def test_percentile_interval_covers_the_mean_at_its_level():
    # 1000 data sets of 400 N(0, 1) trials: the 95% percentile-bootstrap interval covers the true mean 0 in about
    # 94.5% of them (its small-sample undercoverage); binomial sd 0.007, so [0.92, 0.97] fails with probability
    # < 1e-3. Catches: the wrong percentiles (a 90% interval covers ≈ 0.895: below 0.92 with probability ≈ 0.99).
    rng = np.random.default_rng(0)
    hits = 0
    for s in range(1000):
        lo, hi = percentile_interval(bootstrap_means(rng.normal(size=400), n_boot=200, seed=s))
        hits += lo <= 0.0 <= hi
    assert 0.92 <= hits / 1000 <= 0.97, hits


def test_percentile_interval_nan_and_errors():
    reps = np.array([1.0, np.nan, 3.0, 2.0, np.nan])
    assert np.isnan(percentile_interval(reps)[0])  # NaN propagates unless ignored
    lo, hi = percentile_interval(reps, level=0.5, ignore_nan=True)
    np.testing.assert_allclose([lo, hi], np.percentile([1.0, 2.0, 3.0], [25, 75]))
    assert np.all(np.isnan(percentile_interval(np.full(4, np.nan), ignore_nan=True)))
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_means(np.ones(3), n_boot=0)
    with pytest.raises(ValueError, match="at least one trial"):
        bootstrap_means(np.ones(0))
