"""``fit_posterior`` (neural posterior estimation in one call), ``Posterior`` and the priors.

The math is checked against closed forms: a linear-Gaussian problem's posterior, the
priors' densities against SciPy's in float64.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
import scipy.stats

import invjax as ij


def test_priors_match_scipy_in_float64():
    jax.config.update("jax_enable_x64", True)
    theta = np.array([[0.1, -0.3], [1.5, 0.2], [-0.9, 0.95]])
    box = ij.BoxUniform([-1.0, -0.5], [1.0, 1.0])
    expected = np.where(np.all((theta > [-1.0, -0.5]) & (theta < [1.0, 1.0]), 1), -np.log(2.0 * 1.5), -np.inf)
    np.testing.assert_allclose(box.log_prob(jnp.asarray(theta)), expected)
    cov = np.array([[1.0, 0.3], [0.3, 0.5]])
    normal = ij.Normal([0.2, -0.1], cov=cov)
    np.testing.assert_allclose(normal.log_prob(jnp.asarray(theta)),
                               scipy.stats.multivariate_normal([0.2, -0.1], cov).logpdf(theta), rtol=1e-5)
    draws = normal.sample(jr.key(0), (200_000, 2), jnp.float64)
    np.testing.assert_allclose(np.cov(np.asarray(draws).T), cov, atol=0.01)
    u = box.sample(jr.key(1), (1000, 2))
    assert bool(jnp.all((u > box.lower) & (u < box.upper)))
    assert ij.Normal([0.0, 0.0], 2.0).log_prob(jnp.zeros((1, 2))).shape == (1,)


def _linear_gaussian():
    """theta ~ N(0, I_2), x = A theta + 0.5 eps in R^3: the posterior is Gaussian in closed form."""
    a = jnp.array([[1.0, 0.5], [-0.3, 1.0], [0.8, -0.6]])
    noise = 0.5

    def simulator(key, theta):
        return theta @ a.T + noise * jr.normal(key, (theta.shape[0], 3))

    def exact(x_o):
        precision = jnp.eye(2) + a.T @ a / noise**2
        cov = jnp.linalg.inv(precision)
        return cov @ a.T @ x_o / noise**2, cov

    return simulator, exact


@pytest.mark.slow
def test_fit_posterior_recovers_a_linear_gaussian_posterior():
    simulator, exact = _linear_gaussian()
    posterior = ij.fit_posterior(prior=ij.Normal([0.0, 0.0], 1.0), simulator=simulator, budget=10_000,
                                 key=jr.key(0), members=1, depth=3, hidden=32, rates=(1e-3, 2e-4),
                                 max_epochs=60, patience=(10, 5))
    x_o = jnp.array([1.0, -0.5, 0.7])
    mean, cov = exact(x_o)
    draws = posterior.sample(jr.key(1), 20_000, x_o)
    std = jnp.sqrt(jnp.diag(cov))
    assert bool(jnp.all(jnp.abs(draws.mean(0) - mean) < 0.15 * std)), (draws.mean(0), mean)
    assert bool(jnp.all(jnp.abs(draws.std(0) / std - 1) < 0.15)), (draws.std(0), std)
    # log_prob is the exact posterior's density (an unbounded prior truncates nothing): the
    # error's mean checks the normalisation, its spread the shape (0.13 measured).
    theta = mean + jr.normal(jr.key(2), (200, 2)) * std
    error = posterior.log_prob(theta, x_o) - jax.scipy.stats.multivariate_normal.logpdf(theta, mean, cov)
    assert abs(float(jnp.mean(error))) < 0.1 and float(jnp.std(error)) < 0.2, (jnp.mean(error), jnp.std(error))


def test_posterior_keeps_draws_in_the_prior_box_and_says_minus_inf_outside():
    flow = ij.nets.RealNVP(2, depth=2, hidden=8, cond_channels=3, key=jr.key(0))
    lower, upper = jnp.array([-0.5, -jnp.inf]), jnp.array([0.5, jnp.inf])
    posterior = ij.Posterior(flow, lower, upper, (3,))
    x_o = jnp.array([0.1, 0.2, 0.3])
    draws = posterior.sample(jr.key(1), 500, x_o)
    assert draws.shape == (500, 2) and bool(jnp.all(jnp.abs(draws[:, 0]) < 0.5))
    theta = jnp.array([[0.0, 3.0], [0.7, 0.0]])
    expected = flow.log_prob(theta, jnp.broadcast_to(x_o, (2, 3)))
    got = posterior.log_prob(theta, x_o)
    assert got[0] == expected[0] and got[1] == -jnp.inf


@pytest.mark.slow
def test_fit_posterior_with_a_summary_network_and_a_plateau_optimizer(tmp_path):
    """Images (N, 1, 6, 6) through a summary network; one stage with reduce_on_plateau; saved and loaded."""
    prior = ij.BoxUniform(0.0, 1.0, dim=2)

    def simulator(key, theta):
        grid = jnp.linspace(0, 1, 6)
        image = theta[:, 0, None, None] * grid[None, :, None] + theta[:, 1, None, None] * grid[None, None, :]
        return (image + 0.05 * jr.normal(key, image.shape))[:, None]

    summary = eqx.nn.Sequential([eqx.nn.Lambda(jnp.ravel), eqx.nn.Linear(36, 4, key=jr.key(3))])
    optimizer = optax.chain(optax.adam(1e-3), optax.contrib.reduce_on_plateau(patience=2))
    posterior = ij.fit_posterior(prior=prior, simulator=simulator, budget=300, key=jr.key(0), summary=summary,
                                 members=2, depth=1, hidden=8, optimizer=optimizer, max_epochs=2, batch_size=64)
    assert isinstance(posterior.model, ij.Ensemble) and posterior.observation_shape == (1, 6, 6)
    x_o = simulator(jr.key(4), jnp.array([[0.3, 0.6]]))
    draws = posterior.sample(jr.key(5), 50, x_o)
    assert draws.shape == (50, 2) and bool(jnp.all((draws > 0) & (draws < 1)))
    ij.save(tmp_path / "posterior.eqx", posterior)
    loaded = ij.load(tmp_path / "posterior.eqx")
    assert jnp.array_equal(loaded.sample(jr.key(5), 50, x_o), draws)


_THETA, _X = jnp.zeros((20, 2)), jnp.zeros((20, 3))
_PRIOR = ij.BoxUniform(-1.0, 1.0, dim=2)


@pytest.mark.parametrize("call, match", [
    (lambda: ij.fit_posterior(_THETA, _X, prior=_PRIOR, key=jr.key(0), simulator=lambda k, t: t, budget=10),
     "not both"),
    (lambda: ij.fit_posterior(prior=_PRIOR, key=jr.key(0)), "give simulations"),
    (lambda: ij.fit_posterior(prior=_PRIOR, key=jr.key(0), simulator=lambda k, t: t), "budget must be"),
    (lambda: ij.fit_posterior(_THETA, _X[:10], prior=_PRIOR, key=jr.key(0)), "N = 20"),
    (lambda: ij.fit_posterior(jnp.zeros((20, 3)), _X, prior=_PRIOR, key=jr.key(0)), "dimension 2"),
    (lambda: ij.fit_posterior(_THETA.astype(jnp.int32), _X, prior=_PRIOR, key=jr.key(0)), "floating-point"),
    (lambda: ij.fit_posterior(_THETA, _X.at[0, 0].set(jnp.nan), prior=_PRIOR, key=jr.key(0)), "NaN"),
    (lambda: ij.fit_posterior(_THETA, _X, prior=_PRIOR, key=jr.key(0), validation=1.5), "validation"),
    (lambda: ij.fit_posterior(_THETA, _X, prior=_PRIOR, key=jr.key(0), members=0), "members"),
    (lambda: ij.fit_posterior(_THETA, jnp.zeros((20, 1, 4, 4)), prior=_PRIOR, key=jr.key(0)), "summary network"),
    (lambda: ij.fit_posterior(_THETA, _X, prior=object(), key=jr.key(0)), "prior must have sample"),
    (lambda: ij.fit_posterior(_THETA, _X, prior=_PRIOR, key=0), "key"),
    (lambda: ij.Posterior(ij.nets.RealNVP(2, depth=1, hidden=4, cond_channels=3, key=jr.key(0)), -jnp.ones(2),
                          jnp.ones(2), (3,)).sample(jr.key(0), 5, jnp.zeros(4)), "observation of shape"),
    (lambda: ij.BoxUniform([0.0, 1.0], [1.0, 0.5]), "lower < upper"),
    (lambda: ij.BoxUniform([0.0, 0.0], [1.0, 1.0, 1.0]), "same length"),
    (lambda: ij.Normal([0.0, 0.0], 1.0, cov=jnp.eye(2)), "exactly one"),
    (lambda: ij.Normal([0.0, 0.0], cov=[[1.0, 2.0], [2.0, 1.0]]), "positive definite"),
    (lambda: _PRIOR.sample(jr.key(0), (5, 3)), r"\(N, 2\)"),
])
def test_fit_posterior_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
