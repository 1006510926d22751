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
    first = flow.body.layers[1].layer.layers[0]
    assert float(jnp.abs(first.log_scale).max()) == 0.0
    changed = new.body.layers[1].layer.layers[0]
    assert changed.log_scale.shape == (3, 4) and float(jnp.abs(changed.log_scale).max()) > 0.1
    z, _ = new.forward(x)
    np.testing.assert_allclose(new.inverse(z), x, atol=1e-8)
    # The latent is much closer to standard normal after initialisation.
    assert abs(float(jnp.std(z)) - 1.0) < abs(float(jnp.std(flow.forward(x)[0])) - 1.0)


def test_joint_flow_initialize_standardises_both_lanes():
    flow = ij.nets.ConditionalHINT(2, 2, 8, cond_channels=3, key=jr.key(3), spatial_dims=0)
    x = 4.0 + 3.0 * jr.normal(jr.key(4), (64, 2))
    y = -2.0 + 0.5 * jr.normal(jr.key(5), (64, 3))
    new = flow.initialize(x, y)
    # The first step's ActNorms standardise x and y.
    first_x, first_y = (jax.tree.map(lambda a: a[0], lane.inner.inner) for lane in new.body.layer.layers[:2])
    np.testing.assert_allclose(first_x.forward(x)[0].std(0), 1.0, atol=1e-4)
    np.testing.assert_allclose(first_y.forward(y)[0].mean(0), 0.0, atol=1e-5)
    z, _ = new.forward(x, y)
    np.testing.assert_allclose(new.inverse(z, y), x, atol=1e-8)


def _standardised(v, atol):
    axes = (0,) + tuple(range(2, v.ndim))
    np.testing.assert_allclose(jnp.mean(v, axis=axes), 0.0, atol=atol)
    np.testing.assert_allclose(jnp.std(v, axis=axes), 1.0, atol=atol)


def test_initialize_standardises_through_every_wrapper():
    """The closed form: after ``initialize`` an ActNorm's output has zero mean and unit
    variance per channel, however the ActNorm is wrapped, in either direction."""
    L = ij.layers
    x = 3.0 + 2.0 * jr.normal(jr.key(6), (64, 4, 2, 2))
    wrapped = {
        "invert": L.Invert(L.ActNorm(4)),
        "invert_of_chain": L.Invert(L.Chain([L.Permute(4, key=jr.key(0)), L.ActNorm(4)])),
        "stack": L.Stack(lambda k: L.ActNorm(4), 3, key=jr.key(0)),
        "on_channels": L.OnChannels(L.Invert(L.ActNorm(4)), 0, 4),
        "map_cond": L.MapCond(L.ActNorm(4), lambda c: c),
        "conjugate": L.Conjugate(L.Permute(4, key=jr.key(1)), L.ActNorm(4)),
    }
    for name, layer in wrapped.items():
        new, y = ij.nets.Flow(layer).body.initialize(x)
        _standardised(y, 1e-5)
        np.testing.assert_allclose(new.forward(x)[0], y, atol=1e-10, err_msg=name)
    # FactorOut: only the kept channels go through the inner layer.
    new, y = L.FactorOut(L.ActNorm(2), 2).initialize(x)
    _standardised(y[:, :2], 1e-5)
    np.testing.assert_allclose(y[:, 2:], x[:, 2:])
    # Invert(Invert(a)) is a again: its initialisation is the plain one.
    a, _ = L.ActNorm(4).initialize(x)
    b, _ = L.Invert(L.Invert(L.ActNorm(4))).initialize(x)
    np.testing.assert_allclose(b.layer.layer.log_scale, a.log_scale, atol=1e-12)


def test_flow_initialize_under_invert_reaches_actnorm():
    """``Flow(Invert(ActNorm))`` used to stay uninitialised (Invert inherited a do-nothing default)."""
    x = 5.0 + 3.0 * jr.normal(jr.key(7), (32, 3))
    flow = ij.nets.Flow(ij.layers.Invert(ij.layers.ActNorm(3))).initialize(x)
    _standardised(flow.forward(x)[0], 1e-5)
