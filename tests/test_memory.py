"""The memory promise, checked with XLA's compiled memory analysis (deterministic)."""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import pytest
from helpers import cast, perturb, temp_bytes

import invjax as ij


def _glow(depth):
    flow = ij.nets.Glow(1, 3, depth, 8, key=jr.key(0))
    return cast(perturb(flow, jr.key(1), 0.01), jnp.float32)


def _forward_step(flow, x):
    return eqx.filter_grad(lambda f, x: -jnp.mean(f.log_prob(x)))(flow, x)


def _inverse_step(flow, z):
    def loss(f, z):
        x, logdet = f.inverse_and_log_det(z)
        return jnp.mean(x**2) - jnp.mean(logdet)

    return eqx.filter_grad(loss)(flow, z)


@pytest.mark.parametrize("step", [_forward_step, _inverse_step], ids=["forward", "inverse"])
def test_temporary_memory_is_flat_in_depth(step):
    x = jr.normal(jr.key(2), (2, 1, 16, 16), jnp.float32)
    shallow, deep = _glow(4), _glow(32)
    invertible = temp_bytes(step, shallow, x), temp_bytes(step, deep, x)
    autodiff = (
        temp_bytes(step, ij.with_backprop(shallow, "autodiff"), x),
        temp_bytes(step, ij.with_backprop(deep, "autodiff"), x),
    )
    assert invertible[1] <= 1.1 * invertible[0], invertible
    assert autodiff[1] >= 3 * autodiff[0], autodiff  # autodiff stores every layer's activations
    assert invertible[1] < autodiff[1] / 4, (invertible, autodiff)
