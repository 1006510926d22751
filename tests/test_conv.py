"""The channels-last convolution: exact against lax.conv, and canonical inside scans.

The second test guards the 16x CPU speed-up: XLA:CPU runs a convolution inside a loop body
with its fast kernel only in NHWC/HWIO layout (``dim_labels=b01f_01io->b01f``), and our
depth stacks are scans.
"""

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import pytest
from jax import lax

import invjax as ij
from invjax.layers._conv import conv_same


@pytest.mark.parametrize("n", [1, 2, 3])
def test_conv_same_values_gradients_jvp_vmap_hessian_match_lax(n):
    spatial = (5, 6, 4)[:n]
    x = jr.normal(jr.key(0), (2, *spatial, 3))
    w = jr.normal(jr.key(1), (4, 3, *(3,) * n))
    b = jr.normal(jr.key(2), (4,))
    s = "DHW"[3 - n:]
    ref = lambda x, w, b: lax.conv_general_dilated(
        x, w, (1,) * n, "SAME", dimension_numbers=(f"N{s}C", f"OI{s}", f"N{s}C")) + b
    ours = lambda x, w, b: jnp.sum(jnp.sin(conv_same(x, w, b)))
    theirs = lambda x, w, b: jnp.sum(jnp.sin(ref(x, w, b)))
    close = lambda a, c: jnp.allclose(a, c, rtol=1e-10, atol=1e-10)
    assert close(conv_same(x, w, b), ref(x, w, b))
    assert all(close(a, c) for a, c in zip(jax.grad(ours, (0, 1, 2))(x, w, b), jax.grad(theirs, (0, 1, 2))(x, w, b),
                                           strict=True))
    assert close(jax.jvp(ours, (x, w, b), (x, w, b))[1], jax.jvp(theirs, (x, w, b), (x, w, b))[1])
    assert close(jax.vmap(lambda v: conv_same(v[None], w, b)[0])(x), ref(x, w, b))
    assert close(jax.hessian(lambda w: ours(x, w, b))(w), jax.hessian(lambda w: theirs(x, w, b))(w))


def test_no_convolution_of_a_scanned_glow_gradient_is_left_in_nchw():
    # In Equinox's NCHW/OIHW layout (dim_labels bf01_oi01->bf01) every convolution inside
    # the depth scans ran with XLA:CPU's naive kernel (a Glow step 16x slower). At this
    # tiny size XLA folds some of our transposes back (labels like 01fb_o01i->f01b); at
    # realistic sizes (hidden 64, 64x64) all of them come out canonical.
    flow = ij.nets.Glow(3, levels=2, depth=2, hidden=8, key=jr.key(0))
    x = jr.normal(jr.key(1), (2, 3, 8, 8))
    params, static = eqx.partition(flow, eqx.is_inexact_array)
    grad = jax.jit(jax.grad(lambda p: -jnp.mean(eqx.combine(p, static).log_prob(x))))
    hlo = grad.lower(params).compile().as_text()
    labels = re.findall(r"convolution\(.*?dim_labels=(\S+?),", hlo)
    assert labels and "while" in hlo
    assert not [label for label in labels if label.startswith("bf01")], labels
    assert labels.count("b01f_01io->b01f") >= len(labels) / 2, labels
