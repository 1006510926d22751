"""``ij.layers.ResidualMLP``, sbi's conditioner (nflows' ``ResidualNet``), and ``Glow(make_conditioner=)``."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from helpers import perturb

import invjax as ij
from invjax import layers as L


def _nflows_residual_net(module, x):
    """nflows' ``ResidualNet.forward`` (no context layer, no batch norm, no dropout), in NumPy:
    ``h = initial(x)``; per block ``h + linear_1(relu(linear_0(relu(h))))``; ``final(h)``."""
    linear = lambda layer, v: np.asarray(layer.weight, np.float64) @ v + np.asarray(layer.bias, np.float64)
    relu = lambda v: np.maximum(v, 0.0)
    h = linear(module.first, np.asarray(x, np.float64))
    for inner, outer in module.blocks:
        h = h + linear(outer, relu(linear(inner, relu(h))))
    return linear(module.last, h)


def test_residual_mlp_is_nflows_residual_net_and_starts_at_zero():
    """In float64 (tests/conftest.py turns it on for every test)."""
    module = L.ResidualMLP(5, 3, 16, blocks=2, key=jr.key(0))
    x = jr.normal(jr.key(1), (5,))
    assert np.array_equal(module(x), np.zeros(3))  # a new coupling is the identity
    module = perturb(module, jr.key(2), 0.5)
    np.testing.assert_allclose(module(x), _nflows_residual_net(module, x), rtol=1e-12)
    # The skip path is linear: with the blocks' last layers at zero the module is one affine map.
    linear = module
    for i in range(len(module.blocks)):
        linear = eqx.tree_at(lambda m, i=i: (m.blocks[i][1].weight, m.blocks[i][1].bias), linear,
                             (jnp.zeros_like(linear.blocks[i][1].weight), jnp.zeros_like(linear.blocks[i][1].bias)))
    a, b = linear(x), linear(2 * x) - linear(x)
    np.testing.assert_allclose(linear(3 * x), a + 2 * b, rtol=1e-10)
    assert not np.allclose(module(3 * x), module(x) + 2 * (module(2 * x) - module(x)), rtol=1e-3)


def test_glow_builds_every_conditioner_with_make_conditioner():
    """sbi's neural spline flow: Glow on vectors with spline couplings and residual conditioners."""
    calls = []

    def make(i, o, *, key):
        calls.append((i, o))
        return L.ResidualMLP(i, o, 8, key=key)

    flow = ij.nets.Glow(4, 1, 3, 8, spatial_dims=0, split_scales=False, cond_channels=2, key=jr.key(0),
                        transform=L.RationalQuadraticSpline(bins=3, bound=2.0), make_conditioner=make)
    couplings = [leaf for leaf in jax.tree.leaves(flow, is_leaf=lambda v: isinstance(v, L.SplineCoupling))
                 if isinstance(leaf, L.SplineCoupling)]
    assert couplings and all(isinstance(c.conditioner, L.ResidualMLP) for c in couplings)
    # The coupling's sizes: kept half + condition in, (3 bins: 3 widths, 3 heights, 2 slopes) x 2 out.
    assert set(calls) == {(2 + 2, (3 * 3 - 1) * 2)}
