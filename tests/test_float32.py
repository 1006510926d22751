"""Float32 behaviour: reconstruction drift of a deep network and gradient agreement."""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from helpers import cast, perturb, rel_err

import invjax as ij

# Measured: 1.4e-5 relative for Glow (3 levels, depth 64, hidden 32, 3x32x32) with every
# parameter perturbed by 0.01-scale noise; a tenfold margin is the documented bound.
RECONSTRUCTION_BOUND = 1e-4


def test_deep_glow_reconstruction_drift_is_small():
    flow = cast(perturb(ij.nets.Glow(2, 2, 64, 8, key=jr.key(0)), jr.key(1), 0.01), jnp.float32)
    x = jr.normal(jr.key(2), (2, 2, 8, 8), jnp.float32)
    z, _ = eqx.filter_jit(lambda f, x: f.forward(x))(flow, x)
    assert z.dtype == jnp.float32
    x_back = eqx.filter_jit(lambda f, z: f.inverse(z))(flow, z)
    err = float(jnp.linalg.norm(x_back - x) / jnp.linalg.norm(x))
    assert err < RECONSTRUCTION_BOUND, err


def test_float32_gradients_agree_with_autodiff():
    flow = cast(perturb(ij.nets.Glow(2, 2, 16, 8, key=jr.key(3)), jr.key(4), 0.01), jnp.float32)
    x = jr.normal(jr.key(5), (2, 2, 8, 8), jnp.float32)
    grad = eqx.filter_jit(eqx.filter_grad(lambda f, x: -jnp.mean(f.log_prob(x))))
    assert rel_err(grad(flow, x), grad(ij.with_backprop(flow, "autodiff"), x)) < 1e-4
