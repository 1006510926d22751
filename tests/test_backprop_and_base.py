"""Choices are values: the backprop mode and the base distribution.

Switching ``backprop`` keeps the pytree structure, so an optax state made for one mode
updates a flow in the other; a flow with a non-standard base trains, and its density is
the closed form ``base(z) |det dz/dx|``.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from helpers import rel_err
from scipy import stats

import invjax as ij


def _nll(flow, x):
    return -jnp.mean(flow.log_prob(x))


def test_switching_backprop_keeps_structure_and_optax_state():
    flow = ij.nets.RealNVP(3, 2, 8, key=jr.key(0))
    plain = ij.with_backprop(flow, ij.Autodiff())
    assert isinstance(plain.backprop, ij.Autodiff) and isinstance(flow.backprop, ij.Invertible)
    assert jax.tree.structure(eqx.filter(flow, eqx.is_inexact_array)) == jax.tree.structure(
        eqx.filter(plain, eqx.is_inexact_array)
    )
    x = 1.0 + jr.normal(jr.key(1), (16, 3))
    optimizer = optax.adam(1e-2)
    state = optimizer.init(eqx.filter(flow, eqx.is_inexact_array))
    params = lambda f: eqx.filter(f, eqx.is_inexact_array)  # noqa: E731
    step = eqx.filter_jit(lambda f, s: optimizer.update(eqx.filter_grad(_nll)(f, x), s, params(f)))
    # One step in each mode from the same state gives the same update (the gradients agree).
    updates_inv, state_inv = step(flow, state)
    updates_ad, state_ad = step(plain, state)
    assert rel_err(updates_inv, updates_ad) < 1e-8
    # ...and a state made in one mode keeps working in the other.
    updates_next, _ = step(plain, state_inv)
    assert jax.tree.structure(updates_next) == jax.tree.structure(updates_inv)
    # The mode really switched: forward mode works only under autodiff.
    jax.jvp(lambda v: plain.forward(v)[0], (x,), (x,))


def test_with_backprop_switches_the_flow_inside_summarized():
    flow = ij.nets.RealNVP(2, 1, 8, cond_channels=3, key=jr.key(0))
    model = ij.nets.Summarized(flow, eqx.nn.Linear(4, 3, key=jr.key(1)))
    assert isinstance(ij.with_backprop(model, ij.Autodiff()).flow.backprop, ij.Autodiff)


def test_diagonal_normal_base_matches_scipy_and_samples():
    base = ij.DiagonalNormal((3,))
    loc, scale = jnp.array([1.0, -2.0, 0.5]), jnp.array([0.5, 2.0, 1.5])
    base = eqx.tree_at(lambda b: (b.loc, b.log_scale), base, (loc, jnp.log(scale)))
    z = jr.normal(jr.key(0), (5, 3))
    expected = stats.norm(loc=[1.0, -2.0, 0.5], scale=[0.5, 2.0, 1.5]).logpdf(np.asarray(z)).sum(1)
    np.testing.assert_allclose(base.log_prob(z), expected, rtol=1e-10)
    draws = base.sample(jr.key(1), (20000, 3), jnp.float64)
    np.testing.assert_allclose(draws.mean(0), [1.0, -2.0, 0.5], atol=0.05)
    np.testing.assert_allclose(draws.std(0), [0.5, 2.0, 1.5], rtol=0.03)
    # A per-channel base broadcasts over images of any size.
    per_channel = ij.DiagonalNormal((2, 1, 1))
    assert per_channel.log_prob(jnp.zeros((4, 2, 3, 5))).shape == (4,)


def test_flow_with_a_learned_base_trains_and_uses_it():
    """A RealNVP whose base is a learned diagonal normal: ``log_prob`` is the base's density
    at ``z`` plus the log-determinant, sampling draws from the base, and training moves the
    base's parameters towards the data (here an identity-initialised flow on shifted data)."""
    flow = ij.nets.RealNVP(2, 2, 8, key=jr.key(0), base=ij.DiagonalNormal((2,)))
    x = jnp.array([3.0, -1.0]) + 0.5 * jr.normal(jr.key(1), (256, 2))
    z, logdet = flow.forward(x)
    np.testing.assert_allclose(flow.log_prob(x), flow.base.log_prob(z) + logdet, rtol=1e-12)
    flow, history = ij.fit(flow, x, key=jr.key(2), steps=300, batch_size=64, initialize=False,
                           optimizer=optax.adam(3e-2), progress=False)
    assert history["train"][-1] < history["train"][0] - 1.0
    assert float(jnp.linalg.norm(flow.base.loc)) > 0.5  # the base learned part of the shift
    samples = flow.sample(jr.key(3), (2000, 2))
    np.testing.assert_allclose(samples.mean(0), [3.0, -1.0], atol=0.2)
    np.testing.assert_allclose(samples.std(0), [0.5, 0.5], atol=0.1)
    # sample_and_log_prob uses the base too.
    xs, log_q = flow.sample_and_log_prob(jr.key(4), (8, 2))
    np.testing.assert_allclose(log_q, flow.log_prob(xs), rtol=1e-8, atol=1e-8)
