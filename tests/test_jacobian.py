"""Jacobian products (``ij.jvp``, ``ij.vjp``): finite differences, the adjoint test, memory."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from cases import NETWORKS, make
from helpers import flat, temp_bytes

import invjax as ij


def _random_like(tree, key):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jr.split(key, max(len(leaves), 1))
    return jax.tree.unflatten(treedef, [jr.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys, strict=False)])


@pytest.mark.parametrize(("name", "inverse"), [("glow_image", False), ("hyperbolic_image", True),
                                               ("conditional_glow_volume_map_cond", False)])
def test_jvp_matches_finite_differences_and_vjp_is_its_adjoint(name, inverse):
    flow, x, cond = make(name, jr.key(2))
    if inverse:  # a valid latent (squeezes change shapes)
        x = flow.forward(x, cond)[0]
    params, static = eqx.partition(flow, eqx.is_inexact_array)
    x_tangent, flow_tangent = _random_like(x, jr.key(3)), _random_like(params, jr.key(4))
    jvp = eqx.filter_jit(lambda f, v, tv, tf: ij.jvp(f, v, cond, x_tangent=tv, flow_tangent=tf, inverse=inverse))
    (z, logdet), (z_tangent, logdet_tangent) = jvp(flow, x, x_tangent, flow_tangent)

    # Reference: central finite differences of the map, in float64.
    def apply(eps):
        model = eqx.combine(jax.tree.map(lambda p, t: p + eps * t, params, flow_tangent), static)
        v = x + eps * x_tangent
        return model.inverse_and_log_det(v, cond) if inverse else model.forward(v, cond)

    eps = 1e-6
    (z_plus, logdet_plus), (z_minus, logdet_minus) = apply(eps), apply(-eps)
    np.testing.assert_allclose(z_tangent, (z_plus - z_minus) / (2 * eps), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(logdet_tangent, (logdet_plus - logdet_minus) / (2 * eps), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(z, apply(0.0)[0], rtol=1e-12, atol=1e-12)

    # Adjoint test: <J v, w> = <v, J^T w>, with J^T from the invertible backward.
    z_cotangent, logdet_cotangent = _random_like(z, jr.key(5)), _random_like(logdet, jr.key(6))
    _, (flow_cotangent, x_cotangent) = eqx.filter_jit(
        lambda f, v, w, wl: ij.vjp(f, v, cond, z_cotangent=w, logdet_cotangent=wl, inverse=inverse))(
            flow, x, z_cotangent, logdet_cotangent)
    forward = np.vdot(flat(z_tangent), flat(z_cotangent)) + np.vdot(flat(logdet_tangent), flat(logdet_cotangent))
    adjoint = np.vdot(flat(x_tangent), flat(x_cotangent)) + np.vdot(flat(flow_tangent), flat(flow_cotangent))
    np.testing.assert_allclose(forward, adjoint, rtol=1e-10)


def test_jacobian_products_do_not_store_activations():
    """Compiled temporaries of jvp and vjp stay flat as the depth grows 2 -> 16 (the
    parameters' tangents and cotangents are arguments and results, not temporaries);
    plain autodiff's vjp grows with the depth. (RealNVP: the engine is every network's;
    its compilations are the cheapest.)"""
    build, shape, _ = NETWORKS["realnvp"]
    x = jnp.ones(shape)

    def temps(depth):
        flow = build(depth)
        tangent = jax.tree.map(jnp.ones_like, eqx.filter(flow, eqx.is_inexact_array))
        ones = jnp.ones(len(x))
        return (temp_bytes(lambda f, v, t: ij.jvp(f, v, x_tangent=v, flow_tangent=t), flow, x, tangent),
                temp_bytes(lambda f, v: ij.vjp(f, v, z_cotangent=v, logdet_cotangent=ones), flow, x),
                temp_bytes(lambda f, v: ij.vjp(ij.with_backprop(f, ij.Autodiff()), v, z_cotangent=v,
                                               logdet_cotangent=ones), flow, x))

    shallow, deep = temps(2), temps(16)
    assert deep[0] <= 1.1 * shallow[0] and deep[1] <= 1.1 * shallow[1], (shallow, deep)
    assert deep[2] > 3 * shallow[2], (shallow, deep)  # what storing activations costs


def test_jacobian_products_check_their_arguments():
    flow = ij.nets.RealNVP(2, depth=1, hidden=4, key=jr.key(0))
    x = jnp.ones((3, 2))
    with pytest.raises(ValueError, match=r"x_tangent must match x: expected float\d+\[3, 2\], got float\d+\[3, 3\]"):
        ij.jvp(flow, x, x_tangent=jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="flow_tangent must have the structure of eqx.filter"):
        ij.jvp(flow, x, flow_tangent={"a": 1.0})
    with pytest.raises(ValueError, match="jvp takes an invjax flow"):
        ij.jvp(lambda v: v, x)
    with pytest.raises(ValueError, match=r"z_cotangent must match"):
        ij.vjp(flow, x, z_cotangent=jnp.ones((2, 2)))
