"""Calibration diagnostics: an exact posterior passes, over-confident and biased ones fail.

Model: x ~ N(0, I_D), y = x + N(0, s^2 I_D); posterior N(y / (1 + s^2), s^2 / (1 + s^2)).
"""

import numpy as np
import pytest
from scipy.stats import binom

from invjax import diagnostics as dx

N, L, D, S2 = 400, 99, 3, 0.5


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(N, D))
    y = truth + np.sqrt(S2) * rng.normal(size=(N, D))
    mean, sd = y / (1 + S2), np.sqrt(S2 / (1 + S2))
    return rng, truth, mean, sd


def _draws(scale=1.0, shift=0.0, seed=0):
    rng, truth, mean, sd = _problem(seed)
    draws = mean[:, None, :] + shift * sd + scale * sd * rng.normal(size=(N, L, D))
    return draws, truth


def test_ranks_count_the_draws_below_the_truth():
    draws = np.array([[[0.0], [1.0], [2.0], [3.0]]])  # N=1, L=4, D=1
    np.testing.assert_array_equal(dx.sbc_ranks(draws, np.array([[1.5]])), [[2]])
    np.testing.assert_array_equal(dx.sbc_ranks(draws, np.array([[-1.0]])), [[0]])


def test_band_holds_uniform_ranks_with_the_stated_confidence_simultaneously():
    # Fresh uniform rank sets (not the band's own simulations) leave the band about
    # 1 - confidence of the time, and the band is wider than the pointwise one.
    z, lower, upper = dx.ecdf_band(100, 19, 0.9, seed=1)
    rng = np.random.default_rng(7)
    ranks = rng.integers(0, 20, size=(2000, 100))
    ecdf = np.stack([np.mean(ranks < i, axis=1) for i in range(1, 20)], axis=1) - z
    outside = np.mean(np.any((ecdf < lower - 1e-12) | (ecdf > upper + 1e-12), axis=1))
    assert 0.06 < outside < 0.14, outside
    pointwise = binom.ppf(0.95, 100, z) / 100 - z
    assert np.all(upper >= pointwise - 1e-12) and np.any(upper > pointwise)


def test_exact_posterior_passes_sbc_and_coverage():
    draws, truth = _draws()
    result = dx.sbc(draws, truth, confidence=0.99)
    assert result["calibrated"], result["outside"]
    cov = dx.coverage(draws, truth, levels=(0.5, 0.9))
    np.testing.assert_allclose(cov["levels"], [0.5, 0.9])  # exactly attainable with L = 99
    assert np.all(np.abs(cov["observed"] - cov["levels"][:, None]) <= 2 * cov["interval"])


@pytest.mark.parametrize(("scale", "shift"), [(0.5, 0.0), (1.0, 1.0)], ids=["over-confident", "biased"])
def test_miscalibrated_posteriors_fail_sbc_and_coverage(scale, shift):
    draws, truth = _draws(scale, shift)
    result = dx.sbc(draws, truth, confidence=0.99)
    assert result["outside"].all() and not result["calibrated"]
    cov = dx.coverage(draws, truth, levels=(0.5, 0.9))
    assert np.all(cov["levels"][:, None] - cov["observed"] > 2 * cov["interval"])


def test_contraction_z_scores_and_recovery_match_the_closed_form():
    draws, truth = _draws()
    result = dx.contraction(draws, truth, prior_variance=1.0)
    # Posterior variance s^2 / (1 + s^2) of a unit prior: contraction 1 / (1 + s^2).
    np.testing.assert_allclose(result["contraction"].mean(), 1 / (1 + S2), atol=0.02)
    assert abs(result["z"].mean()) < 0.1 and abs(result["z"].std() - 1) < 0.1
    over = dx.contraction(*_draws(0.5), prior_variance=1.0)
    assert over["z"].std() > 1.7  # over-confident: z-scores spread twice as wide
    r2 = dx.recovery(draws, truth)["r2"]
    np.testing.assert_allclose(r2, 1 / (1 + S2), atol=0.08)  # the posterior mean explains Var(E[x|y])


def test_summaries_and_bad_shapes():
    draws, truth = _draws()
    images = draws.reshape(N, L, 1, D), truth.reshape(N, 1, D)
    ranks = dx.sbc_ranks(*images, summaries=lambda v: v.mean(axis=(-2, -1))[..., None])
    assert ranks.shape == (N, 1)
    with pytest.raises(ValueError, match=r"expected draws \(N, L, \*event\) and truth \(N, \*event\)"):
        dx.sbc(draws, truth[:, :2])


def test_posterior_draws_is_one_batched_call_with_the_conditions_repeated():
    import jax
    import jax.numpy as jnp

    import invjax as ij

    flow = ij.nets.RealNVP(2, depth=1, hidden=4, cond_channels=2, key=jax.random.key(0))
    cond = jnp.arange(6.0).reshape(3, 2)
    draws = dx.posterior_draws(flow, cond, 5, (2,), key=jax.random.key(1))
    assert draws.shape == (3, 5, 2)
    expected = flow.sample(jax.random.key(1), (15, 2), jnp.repeat(cond, 5, axis=0)).reshape(3, 5, 2)
    np.testing.assert_allclose(draws, expected, rtol=1e-6)


def test_plots_draw():
    import matplotlib

    matplotlib.use("Agg")
    draws, truth = _draws()
    for plot, result in ((dx.plot_sbc, dx.sbc(draws, truth)), (dx.plot_coverage, dx.coverage(draws, truth)),
                         (dx.plot_contraction, dx.contraction(draws, truth, 1.0)),
                         (dx.plot_recovery, dx.recovery(draws, truth))):
        assert plot(result).axes
