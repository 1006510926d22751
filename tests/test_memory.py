"""The memory promise, checked with XLA's compiled memory analysis (deterministic).

For every network: the temporary memory of a compiled gradient step at depth 32 is at
most 1.1x that at depth 4, in both directions (maximum likelihood through ``log_prob``;
reverse-KL style through ``sample_and_log_prob``), while plain autodiff grows with depth.

One exception, by construction: sampling a conditional HINT takes two engine passes (the
``y`` lane gives ``z_y``, then the joint inverse), and the two passes' gradients of the
``y`` lane's parameters are summed, so that step also holds one gradient buffer of the
``y`` lane's parameters (which grow with depth, like the optimizer's state). Activations
stay flat; the test allows exactly that buffer.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import pytest
from cases import NETWORKS, tiered
from helpers import cast, perturb, temp_bytes

import invjax as ij
from invjax.layers._lane import set_lanes


def _build(name, depth):
    return cast(perturb(NETWORKS[name][0](depth), jr.key(1), 0.01), jnp.float32)


def _forward_step(flow, x, cond):
    return eqx.filter_grad(lambda f, x, c: -jnp.mean(f.log_prob(x, c)))(flow, x, cond)


def _inverse_step(flow, x, cond):
    def loss(f, c):  # a reverse-KL-like loss of samples and their log-density
        samples, log_q = f.sample_and_log_prob(jr.key(3), x.shape, c)
        return jnp.mean(samples**2) + jnp.mean(log_q)

    return eqx.filter_grad(loss)(flow, cond)


def _y_lane_bytes(flow):
    y_lane = set_lanes(flow.body, "x", active=False)
    return sum(a.nbytes for a in jax.tree.leaves(eqx.filter(y_lane, eqx.is_inexact_array)))


@pytest.mark.parametrize("step", [_forward_step, _inverse_step], ids=["log_prob", "sample_and_log_prob"])
@pytest.mark.parametrize("name", tiered(sorted(NETWORKS), slow=set(NETWORKS) - {"realnvp"}))
def test_temporary_memory_is_flat_in_depth(name, step):
    _, x_shape, cond_shape = NETWORKS[name]
    x = jr.normal(jr.key(2), x_shape, jnp.float32)
    cond = None if cond_shape is None else jr.normal(jr.key(4), cond_shape, jnp.float32)
    shallow, deep = _build(name, 4), _build(name, 32)
    invertible = temp_bytes(step, shallow, x, cond), temp_bytes(step, deep, x, cond)
    # Plain autodiff of the deep flow is the reference: it stores every layer's activations
    # (its shallow figure is not compiled: it would only confirm that, and costs a compile).
    autodiff = temp_bytes(step, ij.with_backprop(deep, ij.Autodiff()), x, cond)
    extra = 0
    if step is _inverse_step and isinstance(deep, ij.nets.AbstractJointFlow):
        extra = _y_lane_bytes(deep) - _y_lane_bytes(shallow)
    assert invertible[1] <= 1.1 * invertible[0] + extra, (invertible, extra)
    assert invertible[1] < autodiff / 4, (invertible, autodiff)
