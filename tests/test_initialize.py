"""ActNorm's data-dependent initialisation, as a pure function on a flow."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import invjax as ij


def test_actnorm_initialize_standardises_channels():
    x = 3.0 + 2.0 * jr.normal(jr.key(0), (16, 3, 4, 4))
    layer, y = ij.layers.ActNorm(3).initialize(x)
    np.testing.assert_allclose(jnp.mean(y, axis=(0, 2, 3)), 0.0, atol=1e-6)
    np.testing.assert_allclose(jnp.std(y, axis=(0, 2, 3)), 1.0, atol=1e-4)
    np.testing.assert_allclose(layer.forward(x)[0], y, atol=1e-10)


def test_flow_initialize_is_pure_and_keeps_invertibility():
    flow = ij.nets.Glow(1, 2, 3, 4, key=jr.key(1))
    x = 5.0 + 3.0 * jr.normal(jr.key(2), (8, 1, 8, 8))
    new = eqx.filter_jit(lambda f, x: f.initialize(x))(flow, x)
    # The original is untouched; the first ActNorm of each of the 3 stacked steps changed.
    first = flow.body.layers[1].layers.layers[0]
    assert float(jnp.abs(first.log_scale).max()) == 0.0
    changed = new.body.layers[1].layers.layers[0]
    assert changed.log_scale.shape == (3, 4) and float(jnp.abs(changed.log_scale).max()) > 0.1
    z, _ = new.forward(x)
    np.testing.assert_allclose(new.inverse(z), x, atol=1e-8)
    # The latent is much closer to standard normal after initialisation.
    assert abs(float(jnp.std(z)) - 1.0) < abs(float(jnp.std(flow.forward(x)[0])) - 1.0)


def test_joint_flow_initialize_standardises_both_lanes():
    flow = ij.nets.ConditionalHINT(2, 3, 2, 8, key=jr.key(3), spatial_dims=0)
    x = 4.0 + 3.0 * jr.normal(jr.key(4), (64, 2))
    y = -2.0 + 0.5 * jr.normal(jr.key(5), (64, 3))
    new = flow.initialize(x, y)
    # The first step's ActNorms standardise x and y.
    first_x, first_y = (jax.tree.map(lambda a: a[0], lane.inner.inner) for lane in new.body.layers.layers[:2])
    np.testing.assert_allclose(first_x.forward(x)[0].std(0), 1.0, atol=1e-4)
    np.testing.assert_allclose(first_y.forward(y)[0].mean(0), 0.0, atol=1e-5)
    z, _ = new.forward(x, y)
    np.testing.assert_allclose(new.inverse(z, y), x, atol=1e-8)
