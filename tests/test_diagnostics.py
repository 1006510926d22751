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


def test_posterior_draws_equal_one_sample_call_per_observation():
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import invjax as ij

    flow = ij.nets.RealNVP(2, depth=1, hidden=4, cond_channels=2, key=jax.random.key(0))
    cond = jnp.arange(6.0).reshape(3, 2)
    def expected_draws(model, cond):  # observation i: its own sample call with key fold_in(key, i)
        return np.stack([model.sample(jax.random.fold_in(jax.random.key(1), i), (5, 2), jnp.repeat(c[None], 5, axis=0))
                         for i, c in enumerate(cond)])

    expected = expected_draws(flow, cond)
    for batch_size in (None, 5, 10):  # one pass; three; two with the last group padded
        draws = dx.posterior_draws(flow, cond, 5, (2,), key=jax.random.key(1), batch_size=batch_size)
        assert draws.shape == (3, 5, 2)
        np.testing.assert_allclose(draws, expected, rtol=1e-6, atol=1e-6)
    # A Summarized model: summary once per observation, the same draws as its own sample.
    model = ij.nets.Summarized(flow, eqx.nn.Linear(4, 2, key=jax.random.key(2)))
    y = jnp.arange(12.0).reshape(3, 4) / 10
    expected = expected_draws(model, y)
    np.testing.assert_allclose(dx.posterior_draws(model, y, 5, (2,), key=jax.random.key(1), batch_size=10),
                               expected, rtol=1e-6, atol=1e-6)
    # Inside Standardized and Constrained too: the same draws as its own sample, and no
    # observation is repeated per draw on the way to the summary network (no (15, 7) array).
    from invjax.diagnostics import _draw

    summarized = ij.nets.Summarized(flow, eqx.nn.Linear(7, 2, key=jax.random.key(3)))  # 7: no other axis of size 7
    y = jnp.arange(21.0).reshape(3, 7) / 10
    wrapped = ij.nets.Constrained(ij.nets.Standardized(summarized, 0.5, 2.0, y_mean=0.3, y_std=1.5), -3.0, 3.0)
    np.testing.assert_allclose(dx.posterior_draws(wrapped, y, 5, (2,), key=jax.random.key(1), batch_size=10),
                               expected_draws(wrapped, y), rtol=1e-5, atol=1e-5)
    program = str(eqx.filter_make_jaxpr(lambda m, c: _draw(m, c, jax.random.key(1), 5, (2,), 3))(wrapped, y)[0])
    assert "[3,7]" in program and "[15,7]" not in program
    with pytest.raises(ValueError, match=r"batch_size must hold the draws of one observation \(>= 5\), got 4"):
        dx.posterior_draws(flow, cond, 5, (2,), key=jax.random.key(1), batch_size=4)
    with pytest.raises(ValueError, match="cond must be N conditions"):
        dx.posterior_draws(flow, None, 5, (2,), key=jax.random.key(1))


def test_posterior_draws_memory_is_one_pass_of_batch_size():
    """100 observations x 500 draws of 8x8 images: working memory of one 1000-sample pass."""
    import jax
    import jax.numpy as jnp
    from helpers import temp_bytes

    import invjax as ij
    from invjax.diagnostics import _draw

    flow = ij.nets.Glow(1, levels=1, depth=2, hidden=8, cond_channels=1, cond_spatial=True, key=jax.random.key(0))
    key = jax.random.key(1)

    def temp(n, per_pass):
        return temp_bytes(lambda f, c, k: _draw(f, c, k, 500, (1, 8, 8), per_pass), flow, jnp.zeros((n, 1, 8, 8)), key)

    n_bytes = 100 * 500 * 64 * 4  # the result: N * L samples
    one_pass = temp(2, 2)  # 1000 samples, one pass
    split = temp(100, 2)  # 50 passes of 1000
    whole = temp(100, 100)  # one pass of 50000
    # Grows with N only by the result (the map's stacked output and its copy), not by activations.
    assert split < 2 * n_bytes + 1.5 * one_pass, (split, n_bytes, one_pass)
    assert whole > 4 * split, (whole, split)
    print(f"temporaries: one pass of 1000 {one_pass}, 50 passes {split}, one pass of 50000 {whole}")


def test_plots_draw():
    import matplotlib

    matplotlib.use("Agg")
    draws, truth = _draws()
    for plot, result in ((dx.plot_sbc, dx.sbc(draws, truth)), (dx.plot_coverage, dx.coverage(draws, truth)),
                         (dx.plot_contraction, dx.contraction(draws, truth, 1.0)),
                         (dx.plot_recovery, dx.recovery(draws, truth))):
        assert plot(result).axes


def _known_ranks(ranks, draws_per):
    """Draws ``0, 1, ..., L - 1`` for every observation and quantity, and truths ``r - 0.5``:
    the truth's SBC rank is exactly ``r`` (``r`` draws lie below it)."""
    ranks = np.asarray(ranks, float)
    draws = np.broadcast_to(np.arange(draws_per, dtype=float)[None, :, None], (ranks.shape[0], draws_per,
                                                                                  ranks.shape[1]))
    return draws, ranks - 0.5


def test_every_statistic_is_exact_on_draws_whose_ranks_are_known():
    """Exact answers, not calibrated samples: each rank 0 ... L exactly k times is exactly
    uniform, so coverage equals its level, the ECDF difference is 0 and SBC passes; ranks at
    the interval's ends are in, one past them out (an off-by-one such as ``ranks > a`` for
    ``ranks >= a`` moves coverage by 1 / (L + 1) and fails here)."""
    draws_per, k = 19, 3
    uniform = np.repeat(np.arange(draws_per + 1), k)[:, None].repeat(2, axis=1)  # (60, 2)
    draws, truth = _known_ranks(uniform, draws_per)
    np.testing.assert_array_equal(dx.sbc_ranks(draws, truth), uniform)
    cov = dx.coverage(draws, truth, levels=(0.5, 0.8, 0.9))
    a = np.round((draws_per + 1) * (1 - np.array([0.5, 0.8, 0.9])) / 2).astype(int)  # 5, 2, 1
    np.testing.assert_array_equal(cov["levels"], (draws_per + 1 - 2 * a) / (draws_per + 1))
    np.testing.assert_array_equal(cov["observed"], cov["levels"][:, None].repeat(2, axis=1))
    result = dx.sbc(draws, truth)
    np.testing.assert_array_equal(result["z"], np.arange(1, draws_per + 1) / (draws_per + 1))
    np.testing.assert_allclose(result["ecdf_difference"], 0.0, atol=1e-15)
    assert result["calibrated"] and np.all(result["lower"] < 0) and np.all(result["upper"] > 0)
    # The ends of each central interval: ranks a and L - a are inside, a - 1 and L - a + 1 outside.
    for level, low in zip((0.5, 0.8, 0.9), a, strict=True):
        ends = np.array([[low, draws_per - low], [low - 1, draws_per - low + 1]])  # (N=2, D=2)
        observed = dx.coverage(*_known_ranks(ends, draws_per), levels=(level,))["observed"][0]
        np.testing.assert_array_equal(observed, [0.5, 0.5])  # per quantity: one of the two in
        inside = dx.coverage(*_known_ranks(ends[:1], draws_per), levels=(level,))["observed"][0]
        np.testing.assert_array_equal(inside, [1.0, 1.0])
    # Every truth below every draw (rank 0): the ECDF is 1 at every point, far outside the band.
    lowest = dx.sbc(*_known_ranks(np.zeros((60, 2)), draws_per))
    np.testing.assert_allclose(lowest["ecdf_difference"], 1 - lowest["z"][:, None].repeat(2, axis=1))
    assert lowest["outside"].all() and not lowest["calibrated"]
    # Contraction, z-scores and recovery: draws truth +- 1 (L even) have mean truth and variance L / (L - 1).
    truth = np.array([[0.5, -2.0], [3.0, 1.0]])
    draws = truth[:, None, :] + np.tile([-1.0, 1.0], 5)[None, :, None]
    result = dx.contraction(draws, truth, prior_variance=np.array([4.0, 2.0]))
    np.testing.assert_allclose(result["contraction"], 1 - (10 / 9) / np.array([[4.0, 2.0]] * 2), rtol=1e-14)
    np.testing.assert_array_equal(result["z"], 0.0)
    np.testing.assert_allclose(dx.recovery(draws, truth)["r2"], 1.0, rtol=1e-14)


def test_log_gamma_is_the_band_as_one_number():
    # Exact posterior: inside the band, log_gamma > 0; biased or over-confident: both say
    # miscalibrated. Where the band says outside, log_gamma is below 0 (the same test).
    exact = dx.sbc(*_draws())
    assert exact["calibrated"] and np.all(exact["log_gamma"] > 0)
    for scale, shift in ((0.5, 0.0), (1.0, 0.8)):
        bad = dx.sbc(*_draws(scale, shift))
        assert np.all(bad["log_gamma"] < 0) and bad["outside"].all()
    for seed in range(5):
        mixed = dx.sbc(*_draws(1.0, 0.25, seed=seed))
        np.testing.assert_array_equal(mixed["outside"], mixed["log_gamma"] < 0)
    # Exactly uniform ranks (each of 0 ... L equally often) are the best case.
    draws, truth = _known_ranks(np.tile(np.arange(L + 1), 4)[:, None], L)
    assert dx.sbc(draws, truth)["log_gamma"][0] > np.log(1 / 0.05)


def test_calibration_error_matches_the_closed_form_of_a_too_narrow_posterior():
    # Draws N(m, (s sd)^2) around an exact posterior N(m, sd^2): the central interval of level
    # q covers the truth with probability 2 Phi(s z_q) - 1, z_q = Phi^-1((1 + q) / 2).
    from scipy.stats import norm

    levels = np.linspace(0.005, 0.995, 20)
    for scale in (0.5, 1.0, 2.0):
        expected = np.median(np.abs(2 * norm.cdf(scale * norm.ppf((1 + levels) / 2)) - 1 - levels))
        rng = np.random.default_rng(1)
        truth = rng.normal(size=(4000, 1))
        draws = truth[:, None, :] * 0 + scale * rng.normal(size=(4000, 199, 1))  # posterior N(0, 1) for every truth
        error = dx.calibration_error(draws, truth)
        assert error.shape == (1,)
        assert abs(error[0] - expected) < 0.02, (scale, error, expected)


def test_c2st_matches_the_bayes_optimal_accuracy_of_two_gaussians():
    # N(0, 1) against N(d, 1): the best classifier is right with probability Phi(d / 2).
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    x = rng.normal(size=1000)
    assert abs(dx.c2st(x, rng.normal(size=1000)) - 0.5) < 0.05
    assert abs(dx.c2st(x, rng.normal(size=1000) + 2.0) - norm.cdf(1.0)) < 0.04
    with pytest.raises(ValueError, match="same D"):
        dx.c2st(np.zeros((4, 2)), np.zeros((4, 3)))


@pytest.mark.slow
def test_c2st_reproduces_sbibms_classifier_not_a_stronger_one():
    # Published C2ST numbers come from sbibm.metrics.c2st: scikit-learn's MLPClassifier trained
    # until its training loss stalls, which overfits and separates less than the Bayes-optimal
    # classifier (here Phi(0.15 sqrt(10) / 2) = 0.594). The reference values are that code's
    # (scikit-learn 1.9.1, random_state=seed, the same arrays):
    #   MLPClassifier(activation="relu", hidden_layer_sizes=(100, 100), max_iter=10000,
    #   solver="adam", random_state=seed), cross_val_score with KFold(5, shuffle=True,
    #   random_state=seed), on both sets z-scored by x (ddof=1).
    # A classifier stopped early or chosen on held-out data scores 0.55 to 0.59 here.
    sklearn = {0: 0.520, 1: 0.513}
    ours = {}
    for seed in sklearn:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(1000, 10))
        ours[seed] = dx.c2st(x, rng.normal(size=(1000, 10)) + 0.15, seed=seed)
    assert abs(np.mean(list(ours.values())) - np.mean(list(sklearn.values()))) < 0.02, ours


def test_mmd_matches_its_closed_form_and_the_test_rejects_a_shift():
    # 1-D N(0, 1) against N(d, 1) with bandwidth h:
    # MMD^2 = 2 h / sqrt(h^2 + 2) (1 - exp(-d^2 / (2 (h^2 + 2)))).
    h, d = 1.0, 1.0
    exact = 2 * h / np.sqrt(h**2 + 2) * (1 - np.exp(-(d**2) / (2 * (h**2 + 2))))
    # Small sets, many repetitions: unbiased at any size (a biased estimate, e.g. one that
    # keeps the Gram matrices' diagonals, is off by about 1 / n = 0.025 here).
    values = [dx.mmd(np.random.default_rng(i).normal(size=40), np.random.default_rng(500 + i).normal(size=40) + d,
                     bandwidth=h) for i in range(200)]
    assert abs(np.mean(values) - exact) < 4 * np.std(values) / np.sqrt(len(values)), (np.mean(values), exact)
    same = [dx.mmd(np.random.default_rng(i).normal(size=40), np.random.default_rng(500 + i).normal(size=40),
                   bandwidth=h) for i in range(200)]
    assert abs(np.mean(same)) < 4 * np.std(same) / np.sqrt(len(same))  # 0 in expectation
    rng = np.random.default_rng(0)
    simulated = rng.normal(size=(300, 3))
    assert dx.misspecification_test(rng.normal(size=(100, 3)), simulated, permutations=200)["p_value"] > 0.05
    shifted = dx.misspecification_test(rng.normal(size=(100, 3)) + 0.6, simulated, permutations=200)
    assert shifted["p_value"] < 0.01 and shifted["null"].shape == (200,)


def test_misspecification_test_compares_summaries_of_a_summarized_model():
    import equinox as eqx
    import jax

    import invjax as ij

    k1, k2 = jax.random.split(jax.random.key(0))
    model = ij.nets.Summarized(ij.nets.RealNVP(2, 2, 8, cond_channels=3, key=k1),
                               eqx.nn.MLP(5, 3, 16, 1, key=k2))
    rng = np.random.default_rng(0)
    simulated, observed = rng.normal(size=(200, 5)), rng.normal(size=(60, 5)) + 3.0
    direct = dx.misspecification_test(np.asarray(model.condition(observed)), np.asarray(model.condition(simulated)),
                                      permutations=50)
    via_model = dx.misspecification_test(observed, simulated, model=model, permutations=50)
    assert direct["mmd"] == pytest.approx(via_model["mmd"]) and via_model["p_value"] < 0.05


def test_tarp_is_diagonal_for_an_exact_posterior_and_not_for_an_over_confident_one():
    draws, truth = _draws()
    exact = dx.tarp(draws, truth)
    assert exact["ecp"][0] <= 0.01 and exact["ecp"][-1] == 1.0
    assert exact["error"] < 1.63 / np.sqrt(N)  # the 99% Kolmogorov-Smirnov bound of uniform coverage values
    assert dx.tarp(*_draws(scale=0.5))["error"] > 0.2
    assert dx.tarp(*_draws(scale=2.0))["error"] > 0.2
    rng = np.random.default_rng(3)
    with_prior = dx.tarp(draws, truth, references=rng.normal(size=truth.shape))  # prior draws as references
    assert with_prior["error"] < 1.63 / np.sqrt(N)
    with pytest.raises(ValueError, match="references must have the truth's shape"):
        dx.tarp(draws, truth, references=np.zeros((3, 2)))


def test_the_new_plots_draw_and_diagnose_gives_a_table_and_a_figure():
    import jax
    import matplotlib

    import invjax as ij

    matplotlib.use("Agg")
    draws, truth = _draws()
    assert dx.plot_tarp(dx.tarp(draws, truth)).axes
    assert dx.plot_rank_histogram(dx.sbc(draws, truth), names=["a", "b", "c"]).axes
    assert len(dx.plot_pairs(draws[0], truth[0], names=["a", "b", "c"]).axes) == 9
    history = {"train": list(np.linspace(3, 1, 120)), "val": [(50, 2.0), (100, 1.5)]}
    assert dx.plot_losses(history).axes
    with pytest.raises(ValueError, match="no training losses"):
        dx.plot_losses({"train": []})
    with pytest.raises(ValueError, match="one value per quantity"):
        dx.plot_pairs(draws[0], truth[0, :2])
    flow = ij.nets.RealNVP(2, 2, 8, cond_channels=2, key=jax.random.key(0))
    y = np.random.default_rng(0).normal(size=(40, 2))
    result = dx.diagnose(flow, y * 0.5, y, key=jax.random.key(1), draws=50, names=["mu", "sigma"])
    assert result["draws"].shape == (40, 50, 2) and len(result["rows"]) == 2
    assert result["table"].splitlines()[2].startswith("| mu |") and "TARP error" in result["table"]
    assert result["figure"].axes
