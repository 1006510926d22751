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
from invjax.layers._conv import CPU_SCOPE, conv_same


@pytest.mark.parametrize("n, k", [(1, 3), (2, 3), (3, 3), (2, 1)])
def test_conv_same_values_gradients_jvp_vmap_hessian_match_lax(n, k):
    spatial = (5, 6, 4)[:n]
    x = jr.normal(jr.key(0), (2, *spatial, 3))
    w = jr.normal(jr.key(1), (4, 3, *(k,) * n))
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


@pytest.mark.parametrize("network", ["glow", "irim"])
def test_no_convolution_of_a_scanned_gradient_is_left_in_nchw(network):
    # In Equinox's NCHW/OIHW layout (dim_labels bf01_oi01->bf01) every convolution inside
    # the depth scans ran with XLA:CPU's naive kernel (a Glow step 16x slower; an i-RIM
    # gradient 5x slower with stride 2). At this tiny size XLA folds some of our transposes
    # back (labels like 01fb_o01i->f01b); at realistic sizes (hidden 64, 64x64) all of them
    # come out canonical.
    if network == "glow":
        flow = ij.nets.Glow(3, levels=2, depth=2, hidden=8, key=jr.key(0))
        x, cond = jr.normal(jr.key(1), (2, 3, 8, 8)), None
    else:
        flow = ij.nets.IRIM(2, 2, 8, lambda v: 0.5 * v, key=jr.key(0), stride=2)
        x, cond = jr.normal(jr.key(1), (2, 2, 8, 8)), jr.normal(jr.key(2), (2, 1, 8, 8))
    params, static = eqx.partition(flow, eqx.is_inexact_array)
    grad = jax.jit(jax.grad(lambda p: -jnp.mean(eqx.combine(p, static).log_prob(x, cond))))
    hlo = grad.lower(params).compile().as_text()
    labels = re.findall(r"convolution\(.*?dim_labels=(\S+?),", hlo)
    assert labels and "while" in hlo
    assert not [label for label in labels if label.startswith("bf01")], labels
    assert labels.count("b01f_01io->b01f") >= len(labels) / 2, labels


# The kernel gradient: on CPU a loop of per-pencil im2col GEMMs, elsewhere XLA's
# convolution. Kernels odd and unequal per axis, spatial sizes odd, so a swapped tap order,
# a dropped edge or a mis-sized pencil changes the numbers.
_KERNEL_CASES = {1: ((7,), (5,)), 2: ((5, 7), (3, 5)), 3: ((3, 5, 4), (3, 1, 5))}


def _reference_kernel_gradient(x, dy, kernel_shape):
    n = len(kernel_shape)
    s = "DHW"[3 - n:]
    f = lambda w: lax.conv_general_dilated(x, w, (1,) * n, "SAME", dimension_numbers=(f"N{s}C", f"OI{s}", f"N{s}C"))
    return jax.vjp(f, jnp.zeros((dy.shape[-1], x.shape[-1], *kernel_shape), x.dtype))[1](dy)[0]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_both_kernel_gradient_paths_equal_autodiff_and_finite_differences(n):
    from invjax.layers._conv import _by_kernel_as_conv, _by_kernel_in_pencils

    spatial, kernel = _KERNEL_CASES[n]
    x = jr.normal(jr.key(0), (2, *spatial, 3))
    dy = jr.normal(jr.key(1), (2, *spatial, 4))
    dweight = jr.normal(jr.key(2), (4, 3, *kernel))
    expected = _reference_kernel_gradient(x, dy, kernel)
    for path in (_by_kernel_in_pencils, _by_kernel_as_conv):
        # The path is the kernel's tangent conv(x, dweight); its transpose is the gradient.
        s = "DHW"[3 - n:]
        tangent = lax.conv_general_dilated(x, dweight, (1,) * n, "SAME", dimension_numbers=(f"N{s}C", f"OI{s}",
                                                                                            f"N{s}C"))
        assert jnp.allclose(path(x, dweight), tangent, rtol=1e-12, atol=1e-12), path.__name__
        (gradient,) = jax.linear_transpose(lambda d, path=path: path(x, d), dweight)(dy)
        assert jnp.allclose(gradient, expected, rtol=1e-12, atol=1e-12), path.__name__
    # And conv_same's own gradient (the CPU path here) against central finite differences.
    loss = lambda w: jnp.sum(jnp.sin(conv_same(x, w)))
    direction = jr.normal(jr.key(3), dweight.shape)
    eps = 1e-6
    numeric = (loss(dweight + eps * direction) - loss(dweight - eps * direction)) / (2 * eps)
    assert jnp.allclose(jnp.vdot(jax.grad(loss)(dweight), direction), numeric, rtol=1e-7)


@pytest.mark.parametrize("n", [2, 3])
def test_cpu_kernel_gradient_is_a_loop_of_gemms_equal_to_xla_in_float32(n):
    # The CPU path must be the one that runs (no convolution left in the kernel gradient),
    # and in float32 it must equal XLA's own gradient to round-off.
    spatial, kernel = ((64, 5), (3, 3)) if n == 2 else ((2, 64, 64), (3, 3, 3))
    x = jr.normal(jr.key(0), (3, *spatial, 32), jnp.float32)  # wide and long enough for the loop (_pencils_pay)
    dy = jr.normal(jr.key(1), (3, *spatial, 32), jnp.float32)
    weight = jr.normal(jr.key(2), (32, 32, *kernel), jnp.float32)
    grad = jax.jit(lambda x, dy: jax.vjp(lambda w: conv_same(x, w), weight)[1](dy)[0])
    hlo = grad.lower(x, dy).compile().as_text()
    assert "convolution(" not in hlo and " while(" in hlo and CPU_SCOPE in hlo
    ours, xla = grad(x, dy), _reference_kernel_gradient(x, dy, kernel)
    assert ours.dtype == jnp.float32
    assert jnp.max(jnp.abs(ours - xla)) <= 1e-5 * jnp.max(jnp.abs(xla))


def test_kernel_gradient_under_vmap_over_samples_equals_the_batched_one():
    # Conditioners are vmapped over the batch; the loop's batching must give the same sum.
    x = jr.normal(jr.key(0), (3, 9, 7, 2))
    weight = jr.normal(jr.key(1), (4, 2, 3, 3))
    dy = jr.normal(jr.key(2), (3, 9, 7, 4))
    batched = jax.vjp(lambda w: conv_same(x, w), weight)[1](dy)[0]
    per_sample = jax.vjp(lambda w: jax.vmap(lambda v: conv_same(v[None], w)[0])(x), weight)[1](dy)[0]
    assert jnp.allclose(batched, per_sample, rtol=1e-12, atol=1e-12)
    assert jnp.allclose(batched, _reference_kernel_gradient(x, dy, (3, 3)), rtol=1e-12, atol=1e-12)


def test_a_flow_whose_blocks_take_the_loop_has_autodiff_gradients_in_float64():
    # InvertibleNetworks.jl's 3-3-3 blocks: the hidden -> hidden 3x3 convolution is wide
    # enough for the per-pencil loop, so the invertible backward runs it inside the depth scan.
    from invjax.layers._conv import _pencils_pay
    from tests.helpers import perturb, rel_err

    hidden = 32
    x = jr.normal(jr.key(2), (2, 4, 64, 3))
    assert _pencils_pay((hidden, hidden, 3, 3), x.shape[2:])
    block = lambda i, o, key: ij.layers.ResidualBlock(i, o, hidden, key=key, middle_kernel=3)
    flow = perturb(ij.nets.HINT(4, 2, hidden, key=jr.key(0), make_conditioner=block), jr.key(1), 0.05)
    loss = lambda f: -jnp.mean(f.log_prob(x))
    ours = eqx.filter_grad(loss)(flow)
    theirs = eqx.filter_grad(loss)(ij.with_backprop(flow, ij.Autodiff()))
    assert rel_err(ours, theirs) < 1e-10


@pytest.mark.parametrize("n, kernel, stride", [(1, 2, 2), (2, 4, 4), (3, 2, 2), (1, 6, 2), (2, 4, 2), (3, 4, 2),
                                               (1, 5, 3)])
def test_a_downsampling_block_equals_equinox_convolutions(n, kernel, stride):
    # i-RIM's residual block runs its strided convolution and its transpose as reshapes and
    # stride-1 convolutions (they split over space with no gather); Equinox's Conv and
    # ConvTranspose, which hold the weights, are the reference: values and gradients.
    block = ij.layers.ResidualBlock(3, 2, 4, key=jr.key(0), spatial_dims=n, kernel=kernel, stride=stride)
    block = eqx.tree_at(lambda b: (b.convs[2].weight, b.convs[2].bias), block,  # not zero: a real test
                        (jr.normal(jr.key(1), block.convs[2].weight.shape), jr.normal(jr.key(2), (2,) + (1,) * n)))
    x = jr.normal(jr.key(3), (3, *(4 * stride, 2 * stride, stride)[:n]))
    reference = lambda b, x: b._output(b._body(*b.convs, x))
    assert jnp.allclose(block(x), reference(block, x), rtol=1e-12, atol=1e-12)
    loss = lambda f: lambda both: jnp.sum(jnp.sin(f(*both)))  # gradients of the weights and of x
    ours = eqx.filter_grad(loss(lambda b, x: b(x)))((block, x))
    theirs = eqx.filter_grad(loss(reference))((block, x))
    for a, c in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert jnp.allclose(a, c, rtol=1e-10, atol=1e-12)


# Volumes on CPU: XLA's 2D convolution over depth planes, the depth taps stacked on the
# thinner side (input channels for I <= O, output channels for O < I); kernels unequal per
# axis and spatial sizes odd, so a swapped tap or a dropped edge plane changes the numbers.
_VOLUME_CASES = {"taps on inputs": (3, 5, (3, 5, 1)), "taps on outputs": (5, 3, (3, 1, 5)),
                 "five depth taps": (2, 2, (5, 3, 3))}


def _reference_volume(x, w):
    return lax.conv_general_dilated(x, w, (1, 1, 1), "SAME", dimension_numbers=("NDHWC", "OIDHW", "NDHWC"))


@pytest.mark.parametrize("case", sorted(_VOLUME_CASES))
def test_volume_convolution_through_planes_equals_xla_in_float64(case):
    in_ch, out_ch, kernel = _VOLUME_CASES[case]
    x = jr.normal(jr.key(0), (2, 7, 5, 3, in_ch))
    w = jr.normal(jr.key(1), (out_ch, in_ch, *kernel))
    b = jr.normal(jr.key(2), (out_ch,))
    close = lambda a, c: jnp.allclose(a, c, rtol=1e-11, atol=1e-11)
    # The planes run, not XLA's 3D convolution: in the forward pass and in both gradients.
    assert CPU_SCOPE in jax.jit(conv_same).lower(x, w, b).as_text(debug_info=True)
    for argnum in (0, 1):
        hlo = jax.jit(jax.grad(lambda x, w: jnp.sum(conv_same(x, w) ** 2), argnum)).lower(x, w).compile().as_text()
        assert not re.findall(r"convolution\(.*dim_labels=\w*012\w*_", hlo), argnum
    assert close(conv_same(x, w, b), _reference_volume(x, w) + b)
    loss = lambda conv: lambda x, w: jnp.sum(jnp.sin(conv(x, w)))
    ours, theirs = jax.grad(loss(conv_same), (0, 1))(x, w), jax.grad(loss(_reference_volume), (0, 1))(x, w)
    assert close(ours[0], theirs[0]) and close(ours[1], theirs[1])


@pytest.mark.parametrize("formulation", ["planes", "blocks", "pencils"])
def test_every_volume_kernel_gradient_formulation_equals_xla_in_float64(formulation, monkeypatch):
    # The three CPU kernel gradients of a volume (chosen by plane size and channels in
    # _volume_kernel_tangent), each on both stackings and, for the blocks, on several blocks
    # of whole planes and of partial planes.
    import functools

    from invjax.layers import _conv

    # Blocks of 40 positions: one whole plane of a (6, 5, 4) volume (2 x 5 x 4 = 40), part of
    # a plane of a (3, 4, 7) one (2 x 4 x 7 = 56: 2 rows of 2 x 7).
    monkeypatch.setattr(_conv, "_BLOCK_POSITIONS", 40)
    assert _conv._slab(2, 6, 5, 4) == (1, 5) and _conv._slab(2, 3, 4, 7) == (1, 2)
    path = {"planes": functools.partial(_conv._volume_by_planes, plane_conv=_conv._plane_kernel_tangent),
            "blocks": _conv._by_kernel_in_slabs, "pencils": _conv._by_kernel_in_pencils}[formulation]
    for in_ch, out_ch, kernel in _VOLUME_CASES.values():
        for spatial in ((6, 5, 4), (3, 4, 7)):
            x = jr.normal(jr.key(0), (2, *spatial, in_ch))
            dy = jr.normal(jr.key(1), (2, *spatial, out_ch))
            zero = jnp.zeros((out_ch, in_ch, *kernel))
            ours = jax.linear_transpose(lambda d: path(x, d), zero)(dy)[0]
            assert jnp.allclose(ours, _reference_kernel_gradient(x, dy, kernel), rtol=1e-11, atol=1e-11), (
                formulation, kernel, spatial)
