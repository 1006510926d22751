"""i-RIM specifics beyond the contract tests: the gradient step against its closed form, and
an initialisation on data the estimate already fits."""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import invjax as ij


def _blur(x):
    return x + 0.5 * jnp.roll(x, 1, axis=-1)


def test_gradient_step_adds_the_normalised_misfit_gradient_to_the_memory():
    # A^T (A eta - d) in closed form: A = I + 0.5 S (S a cyclic shift), A^T = I + 0.5 S^T.
    step = ij.layers.GradientStep(3, _blur)
    x, d = jr.normal(jr.key(0), (2, 3, 4, 4)), jr.normal(jr.key(1), (2, 1, 4, 4))
    residual = _blur(x[:, :1]) - d
    expected = residual + 0.5 * jnp.roll(residual, -1, axis=-1)
    y, logdet = step.forward(x, d)
    np.testing.assert_allclose(y[:, 1:2], x[:, 1:2] + expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y[:, [0, 2]], x[:, [0, 2]])
    np.testing.assert_array_equal(logdet, 0.0)
    # initialize: the added gradient has zero mean and unit spread over the batch.
    initialized, y = step.initialize(x, d)
    added = y[:, 1:2] - x[:, 1:2]
    np.testing.assert_allclose([float(added.mean()), float(added.std())], [0.0, 1.0], atol=1e-5)


def test_initialising_where_the_estimate_already_fits_keeps_the_inverse_exact():
    """eta = x_true and d = A x_true: the first batch's gradient is round-off. Dividing by its
    spread made the step's inverse amplify round-off by ~1e6 (reconstruction error 11)."""
    net = ij.nets.IRIM(4, 2, 8, _blur, key=jr.key(0), stride=2)
    truth = jr.normal(jr.key(1), (2, 1, 8, 8))
    d = _blur(truth)
    state = net.initial_state(truth)
    net = net.initialize(state, d)
    z, _ = eqx.filter_jit(lambda n, v, d: n.forward(v, d))(net, state, d)
    rebuilt = eqx.filter_jit(lambda n, v, d: n.inverse(v, d))(net, z, d)
    assert float(jnp.max(jnp.abs(rebuilt - state))) < 1e-4
