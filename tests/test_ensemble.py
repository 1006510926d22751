"""ij.Ensemble: the equal-weight mixture of flows, against closed forms and its members' own draws."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

import invjax as ij
from invjax import diagnostics as dx

MEANS = np.array([[-5.0, -5.0], [5.0, 5.0], [0.0, 10.0]])
STDS = np.array([[1.0, 0.5], [2.0, 1.0], [0.5, 0.5]])


def gaussians():
    """Three flows with closed-form densities: a RealNVP at initialisation is N(0, I) (its couplings start
    as the identity, its permutations have log-determinant 0), standardized to N(mean_k, diag(std_k^2))."""
    keys = jax.random.split(jax.random.key(0), len(MEANS))
    return ij.Ensemble([ij.nets.Standardized(ij.nets.RealNVP(2, depth=2, hidden=8, key=k), x_mean=jnp.asarray(m),
                                             x_std=jnp.asarray(s)) for k, m, s in zip(keys, MEANS, STDS, strict=True)])


def test_log_prob_is_the_mixture_density():
    x = jax.random.normal(jax.random.key(1), (50, 2)) * 6
    parts = [norm.logpdf(np.asarray(x), m, s).sum(1) for m, s in zip(MEANS, STDS, strict=True)]
    expected = logsumexp(np.stack(parts), axis=0) - np.log(3)
    np.testing.assert_allclose(gaussians().log_prob(x), expected, rtol=1e-10, atol=1e-10)


def test_samples_are_the_members_draws_in_equal_shares():
    model, key, n = gaussians(), jax.random.key(2), 6000
    x = np.asarray(model.sample(key, (n, 2)))
    # Every sample is the draw of one member from that member's key (jax.random.split(key, K + 1)[k + 1]).
    keys = jax.random.split(key, 4)[1:]
    draws = np.stack([np.asarray(f.sample(k, (n, 2))) for f, k in zip(model.flows, keys, strict=True)])
    same = np.all(draws == x[None], axis=2)
    assert np.all(same.sum(0) == 1)
    shares = same.mean(1)
    np.testing.assert_allclose(shares, 1 / 3, atol=4 * np.sqrt(2 / 9 / n))  # 4 binomial standard errors
    member = same.argmax(0)
    for k in range(3):  # each member's share has that member's mean
        np.testing.assert_allclose(x[member == k].mean(0), MEANS[k], atol=5 * STDS[k].max() / np.sqrt(n / 3))


def test_one_member_is_that_flow():
    flow = ij.nets.RealNVP(2, depth=2, hidden=8, cond_channels=1, key=jax.random.key(3))
    model, y = ij.Ensemble([flow]), jnp.ones((5, 1))
    key = jax.random.key(4)
    np.testing.assert_array_equal(model.sample(key, (5, 2), y), flow.sample(key, (5, 2), y))
    x = jnp.arange(10.0).reshape(5, 2)
    np.testing.assert_allclose(model.log_prob(x, y), flow.log_prob(x, y), rtol=1e-12)


def test_gradients_match_plain_autodiff():
    keys = jax.random.split(jax.random.key(5), 2)
    flows = [ij.nets.RealNVP(2, depth=2, hidden=8, cond_channels=1, key=k) for k in keys]
    # Move off the identity initialisation so that every parameter matters.
    flows = [jax.tree.map(lambda v: v + 0.1 * jnp.sin(jnp.arange(v.size).reshape(v.shape)) if eqx.is_inexact_array(v)
                          else v, f) for f in flows]
    x, y = jax.random.normal(jax.random.key(6), (8, 2)), jax.random.normal(jax.random.key(7), (8, 1))
    loss = eqx.filter_grad(lambda m: -jnp.mean(m.log_prob(x, y)))
    invertible = loss(ij.Ensemble(flows))
    plain = loss(ij.Ensemble([ij.with_backprop(f, ij.Autodiff()) for f in flows]))
    for a, b in zip(jax.tree.leaves(eqx.filter(invertible, eqx.is_inexact_array)),
                    jax.tree.leaves(eqx.filter(plain, eqx.is_inexact_array)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert any(float(jnp.abs(a).max()) > 1e-3 for a in jax.tree.leaves(eqx.filter(invertible, eqx.is_inexact_array)))


def test_posterior_draws_and_sample_within_take_an_ensemble():
    keys = jax.random.split(jax.random.key(8), 2)
    model = ij.Ensemble([ij.nets.RealNVP(2, depth=2, hidden=8, cond_channels=1, key=k) for k in keys])
    y, key = jnp.linspace(-1, 1, 4)[:, None], jax.random.key(9)
    draws = np.asarray(dx.posterior_draws(model, y, 300, (2,), key=key, batch_size=600))
    member_keys = jax.random.split(key, 3)[1:]
    own = np.stack([np.asarray(dx.posterior_draws(f, y, 300, (2,), key=k)) for f, k in zip(model.flows, member_keys,
                                                                                              strict=True)])
    same = np.all(own == draws[None], axis=3)
    assert draws.shape == (4, 300, 2) and np.all(same.sum(0) == 1)
    assert 0.4 < same[0].mean() < 0.6  # both members used
    inside = np.asarray(ij.sample_within(model, key, (400, 2), jnp.repeat(y, 100, axis=0), lower=-0.5, upper=0.5))
    assert np.all(np.abs(inside) < 0.5)


def test_bad_members_raise():
    flow = ij.nets.RealNVP(2, depth=2, hidden=8, key=jax.random.key(0))
    with pytest.raises(ValueError, match="at least one flow"):
        ij.Ensemble([])
    with pytest.raises(ValueError, match="sequence of invjax flows, got RealNVP"):
        ij.Ensemble(flow)
    with pytest.raises(ValueError, match=r"flows\[1\] must be an invjax flow .* got str"):
        ij.Ensemble([flow, "flow"])
    with pytest.raises(ValueError, match="Ensemble.sample"):
        ij.Ensemble([flow, flow]).sample(0, (3, 2))


def test_save_and_load(tmp_path):
    model = gaussians()
    ij.save(tmp_path / "ensemble.eqx", model)
    loaded = ij.load(tmp_path / "ensemble.eqx")
    x = jnp.arange(8.0).reshape(4, 2)
    assert isinstance(loaded, ij.Ensemble)
    np.testing.assert_array_equal(loaded.log_prob(x), model.log_prob(x))
