"""Float32 behaviour: reconstruction drift of deep networks and gradient agreement."""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import pytest
from cases import NETWORKS, tiered
from helpers import cast, perturb, rel_err

import invjax as ij

# Measured with every parameter perturbed by 0.01-scale noise, depth 64 (see
# benchmarks/network_report.py): 1e-6 to 1e-5 relative. A tenfold margin is the bound.
RECONSTRUCTION_BOUND = 1e-4
# A leapfrog with no force keeps a constant velocity (x_curr - x_prev), so a hyperbolic
# network's states grow linearly with the number of steps and the reconstruction loses
# digits to cancellation: 1.7e-4 measured here (2 levels, depth 64 = 191 leapfrog steps).
# An i-RIM adds A^T A eta to its memory at every iteration, so each inverse iteration can
# amplify round-off by up to 1 + |A^T A| (2.25 for the test's operator), and an untrained
# one's memory grows linearly: 3e-5 at 8 iterations, 4.5e-5 at 16, 3e-3 to 1e-2 at 64
# (i-RIMs run ~10; the IRIM docstring says so).
BOUNDS = {"hyperbolic": 1e-3, "irim": 3e-2}


@pytest.mark.parametrize("name", tiered(sorted(NETWORKS), slow=set(NETWORKS) - {"glow", "realnvp"}))
def test_depth_64_reconstruction_drift_is_small(name):
    build, x_shape, cond_shape = NETWORKS[name]
    flow = cast(perturb(build(64), jr.key(1), 0.01), jnp.float32)
    x = jr.normal(jr.key(2), x_shape, jnp.float32)
    cond = None if cond_shape is None else jr.normal(jr.key(3), cond_shape, jnp.float32)
    z, _ = eqx.filter_jit(lambda f, x, c: f.forward(x, c))(flow, x, cond)
    assert z.dtype == jnp.float32
    x_back = eqx.filter_jit(lambda f, z, c: f.inverse(z, c))(flow, z, cond)
    err = float(jnp.linalg.norm(x_back - x) / jnp.linalg.norm(x))
    assert err < BOUNDS.get(name, RECONSTRUCTION_BOUND), err


def test_float32_gradients_agree_with_autodiff():
    flow = cast(perturb(ij.nets.Glow(2, 2, 16, 8, key=jr.key(3)), jr.key(4), 0.01), jnp.float32)
    x = jr.normal(jr.key(5), (2, 2, 8, 8), jnp.float32)
    grad = eqx.filter_jit(eqx.filter_grad(lambda f, x: -jnp.mean(f.log_prob(x))))
    assert rel_err(grad(flow, x), grad(ij.with_backprop(flow, ij.Autodiff()), x)) < 1e-4
