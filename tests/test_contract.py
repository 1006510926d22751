"""The contract every layer and network satisfies (float64 math checks)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from cases import CASES, make
from helpers import flat, rel_err

import invjax as ij

NAMES = sorted(CASES)


def _loss(direction):
    """A scalar loss using both outputs nonlinearly, in either direction."""

    def loss(flow, v, weights):
        if direction == "forward":
            out, logdet = flow.forward(v)
        else:
            out, logdet = flow.inverse_and_log_det(v)
        return jnp.sum(jnp.sin(out) * weights.reshape(out.shape)) + jnp.sum(logdet**2) + jnp.sum(logdet)

    return loss


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_and_inverse_log_det(name):
    flow, x = make(name, jr.key(0))
    z, logdet = eqx.filter_jit(lambda f, x: f.forward(x))(flow, x)
    assert logdet.shape == x.shape[:1] and z.dtype == x.dtype and z.size == x.size
    if not isinstance(flow, ij.nets.Flow):  # networks keep the input's shape; squeezes do not
        assert z.shape == x.shape
    x_back, logdet_inverse = eqx.filter_jit(lambda f, z: f.inverse_and_log_det(z))(flow, z)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=1e-10)
    np.testing.assert_allclose(logdet_inverse, -logdet, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_log_det_matches_jacobian(name):
    flow, x = make(name, jr.key(1))
    plain = ij.with_backprop(flow, "autodiff")  # jacfwd needs forward mode

    @eqx.filter_jit
    def per_sample(flow, x):
        def one(v):
            fn = lambda u: flow.forward(u.reshape((1,) + v.shape))[0].ravel()  # noqa: E731
            return jnp.linalg.slogdet(jax.jacfwd(fn)(v.ravel()))

        return jax.lax.map(one, x), flow.forward(x)[1]

    (sign, expected), logdet = per_sample(plain, x)
    assert bool(jnp.all(sign != 0))
    np.testing.assert_allclose(logdet, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_autodiff_and_finite_differences(name, direction):
    flow, x = make(name, jr.key(2))
    if direction == "inverse":  # start from a valid latent (squeezes change shapes)
        x = flow.forward(x)[0]
    weights = jr.normal(jr.key(3), x.shape)
    loss = _loss(direction)
    g_flow, g_x = _grads(loss, flow, x, weights)
    a_flow, a_x = _grads(loss, ij.with_backprop(flow, "autodiff"), x, weights)
    assert rel_err(g_x, a_x) < 1e-6
    if flat(a_flow).size:
        assert rel_err(g_flow, a_flow) < 1e-6

    # Central finite difference along a random direction in (parameters, input).
    params, static = eqx.partition((flow, x), eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jr.split(jr.key(4), len(leaves))
    tangent = jax.tree.unflatten(treedef, [jr.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys)])
    shifted = lambda eps: eqx.combine(jax.tree.map(lambda p, t: p + eps * t, params, tangent), static)  # noqa: E731
    f = lambda args: loss(*args, weights)  # noqa: E731
    eps = 1e-6
    numeric = (f(shifted(eps)) - f(shifted(-eps))) / (2 * eps)
    analytic = np.dot(flat(tangent), flat((g_flow, g_x)))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def _grads(loss, flow, x, weights):
    return eqx.filter_jit(eqx.filter_grad(lambda args: loss(*args, weights)))((flow, x))


@pytest.mark.parametrize("name", ["glow_image", "realnvp"])
def test_jit_and_vmap_free_api_is_batched(name):
    flow, x = make(name, jr.key(5))
    lp = eqx.filter_jit(lambda f, x: f.log_prob(x))(flow, x)
    assert lp.shape == x.shape[:1] and bool(jnp.all(jnp.isfinite(lp)))
    samples = flow.sample(jr.key(6), x.shape)
    assert samples.shape == x.shape
    xs, log_q = flow.sample_and_log_prob(jr.key(6), x.shape)
    np.testing.assert_allclose(xs, samples, atol=1e-12)
    np.testing.assert_allclose(log_q, flow.log_prob(xs), rtol=1e-8, atol=1e-8)
