"""``refine_posterior`` against the closed form of a linear-Gaussian problem.

With an affine amortized flow ``theta = G(z) = M z + b`` and a linear-Gaussian likelihood,
``p(z | x_o) ~ N(x_o; A (M z + b), s^2 I) N(z; 0, I)`` is Gaussian, and the reverse-KL
optimum over diagonal Gaussians ``N(loc, diag(scale^2))`` is known: ``loc`` its mean,
``scale^2`` the inverse of its precision's diagonal.
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import optax
import pytest

import invjax as ij


def _affine_flow():
    """A conditional flow that is affine in its latent: an untrained RealNVP (couplings start as the
    identity, permutations stay) inside Standardized with a mean and scale per parameter."""
    flow = ij.nets.RealNVP(3, depth=2, hidden=8, cond_channels=4, key=jr.key(0))
    return ij.nets.Standardized(flow, x_mean=jnp.array([0.5, -1.0, 2.0]), x_std=jnp.array([2.0, 0.5, 1.5]))


@pytest.mark.slow
def test_refinement_finds_the_closed_form_corrected_latent_in_float64():
    jax.config.update("jax_enable_x64", True)
    flow = jax.tree.map(lambda a: a.astype(jnp.float64) if isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jnp.floating) else a, _affine_flow())
    a = jr.normal(jr.key(1), (5, 3))
    noise = 0.5
    x_o = jnp.array([0.3, -0.2, 1.0, 0.4])           # the condition the amortized flow sees
    y = jnp.array([1.0, -0.5, 0.2, 2.0, -1.0])       # the physics' data
    log_likelihood = lambda theta: -0.5 * jnp.sum((theta @ a.T - y) ** 2, 1) / noise**2
    cond = x_o[None]
    b = flow.inverse(jnp.zeros((1, 3)), cond)[0]
    m = (flow.inverse(jnp.eye(3), jnp.repeat(cond, 3, 0)) - b).T  # G(z) = M z + b
    assert jnp.allclose(flow.inverse(jnp.ones((1, 3)), cond)[0], m @ jnp.ones(3) + b)  # affine indeed
    am = a @ m
    precision = jnp.eye(3) + am.T @ am / noise**2
    mean = jnp.linalg.solve(precision, am.T @ (y - a @ b) / noise**2)
    scale = 1 / jnp.sqrt(jnp.diag(precision))

    steps = 1500
    optimizer = optax.adam(optax.cosine_decay_schedule(3e-2, steps))
    refined, losses = ij.refine_posterior(flow, x_o, log_likelihood, key=jr.key(2), steps=steps, batch_size=64,
                                          shape=(3,), optimizer=optimizer)
    c = refined.correction
    assert jnp.allclose(c.loc, mean, atol=0.03 * float(scale.min())), (c.loc, mean)
    assert jnp.allclose(jnp.exp(c.log_scale), scale, rtol=0.03), (jnp.exp(c.log_scale), scale)
    assert losses[-1] < losses[0]
    # Its density: the corrected latent pushed through G, here N(M loc + b, M diag(scale^2) M^T).
    theta = refined.sample(jr.key(3), 4)
    cov = m @ jnp.diag(jnp.exp(2 * c.log_scale)) @ m.T
    expected = jax.scipy.stats.multivariate_normal.logpdf(theta, m @ c.loc + b, cov)
    assert jnp.allclose(refined.log_prob(theta), expected, rtol=1e-8)


@pytest.mark.parametrize("call, match", [
    (lambda f: ij.refine_posterior(f, jnp.zeros(4), lambda t: -jnp.sum(t**2, 1), key=jr.key(0)), "shape="),
    (lambda f: ij.refine_posterior(f, jnp.zeros(4), lambda t: t, key=jr.key(0), shape=(3,)), r"\(B,\)"),
    (lambda f: ij.refine_posterior(f, jnp.zeros(4), lambda t: -jnp.sum(t**2, 1), key=jr.key(0), shape=(3,),
                                   steps=0), "steps"),
    (lambda f: ij.refine_posterior(ij.Ensemble([f, f]), jnp.zeros(4), lambda t: t, key=jr.key(0), shape=(3,)),
     "ensemble"),
])
def test_refine_posterior_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(_affine_flow())
