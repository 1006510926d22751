"""Variational inference: reverse_kl and fit_vi, unconditional and amortized."""

import warnings

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from helpers import perturb, rel_err

import invjax as ij

MEAN = jnp.array([1.0, -2.0])
COV = jnp.array([[1.0, 0.6], [0.6, 0.5]])


def gaussian_log_target(x):
    d = x - MEAN
    return -0.5 * jnp.einsum("bi,ij,bj->b", d, jnp.linalg.inv(COV), d)


def test_fit_vi_recovers_a_gaussian():
    flow = ij.nets.RealNVP(2, depth=3, hidden=16, key=jr.key(0))
    flow, history = ij.fit_vi(flow, gaussian_log_target, (2,), key=jr.key(1), steps=400, batch_size=128,
                              progress=False)
    assert len(history["train"]) == 400
    # KL(q || p) + log Z: log Z of the unnormalised Gaussian is log(2 pi sqrt(det COV)).
    log_z = float(jnp.log(2 * jnp.pi * jnp.sqrt(jnp.linalg.det(COV))))
    assert np.mean(history["train"][-50:]) + log_z < 0.05
    x = flow.sample(jr.key(2), (20000, 2))
    np.testing.assert_allclose(jnp.mean(x, 0), MEAN, atol=0.05)
    np.testing.assert_allclose(jnp.cov(x.T), COV, atol=0.06)


def test_amortized_fit_vi_learns_a_posterior_for_every_observation():
    # p(x | y) ∝ N(x; y, 0.25 I): the posterior mean is the observation.
    flow = ij.nets.RealNVP(2, depth=3, hidden=16, cond_channels=2, key=jr.key(0))
    ys = jr.normal(jr.key(3), (512, 2))
    log_target = lambda x, y: -2.0 * jnp.sum((x - y) ** 2, axis=1)
    flow, _ = ij.fit_vi(flow, log_target, (2,), ys, key=jr.key(1), steps=400, batch_size=64, progress=False)
    y = jnp.array([[1.0, -1.0], [-0.5, 0.3]])
    for row in y:
        x = flow.sample(jr.key(4), (4000, 2), jnp.broadcast_to(row, (4000, 2)))
        np.testing.assert_allclose(jnp.mean(x, 0), row, atol=0.1)
        np.testing.assert_allclose(jnp.std(x, 0), 0.5, atol=0.06)


def test_reverse_kl_gradient_matches_autodiff():
    # float64 (conftest): the two backward passes must agree to round-off.
    flow = perturb(ij.nets.RealNVP(2, depth=3, hidden=8, key=jr.key(0)), jr.key(1), 0.1)
    grad = eqx.filter_grad(lambda f: ij.reverse_kl(f, jr.key(2), gaussian_log_target, (2,), 16))
    assert rel_err(grad(flow), grad(ij.with_backprop(flow, ij.Autodiff()))) < 1e-8


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda f: ij.reverse_kl(f, jr.key(0), lambda x: x, (2,)), r"one value per sample, shape \(64,\)"),
        (lambda f: ij.reverse_kl(f, jr.key(0), gaussian_log_target, 2), r"shape of one sample"),
        (lambda f: ij.fit_vi(f, gaussian_log_target, (2,), key=jr.key(0), batch_size=0), r"batch_size >= 1"),
        (lambda f: ij.fit_vi(f, gaussian_log_target, (2,), jnp.zeros((0, 2)), key=jr.key(0)), r"non-empty"),
        (lambda f: ij.fit_vi(f, gaussian_log_target, (2,), jnp.zeros((4, 2)), key=jr.key(0), steps=1,
                             progress=False), r"cond|conditional|unexpected"),
    ],
)
def test_vi_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(ij.nets.RealNVP(2, depth=1, hidden=4, key=jr.key(0)))


def test_fit_vi_stops_on_a_non_finite_loss():
    flow = ij.nets.RealNVP(2, depth=1, hidden=4, key=jr.key(0))
    bad = lambda x: jnp.where(jnp.abs(x[:, 0]) > 2.5, jnp.nan, gaussian_log_target(x))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, history = ij.fit_vi(flow, bad, (2,), key=jr.key(1), steps=50, batch_size=256, progress=False)
    assert any("loss became nan at step 0" in str(w.message) for w in caught)
    assert history["train"] == [] and out is flow


def test_fit_vi_passes_the_loss_to_a_transformation_that_needs_it():
    """reduce_on_plateau needs optax's ``value``: without it, its update raises."""
    flow = ij.nets.RealNVP(2, depth=1, hidden=8, key=jr.key(0))
    optimizer = optax.chain(optax.adam(1e-2), optax.contrib.reduce_on_plateau(patience=2))
    _, history = ij.fit_vi(flow, gaussian_log_target, (2,), key=jr.key(1), steps=5, batch_size=16, progress=False,
                           optimizer=optimizer)
    assert len(history["train"]) == 5
