"""Convolutions whose gradients XLA:CPU runs fast inside loops.

Our depth stacks run in ``lax.scan``. XLA:CPU rewrites a convolution into the layout its
fast (Eigen) kernel needs, NHWC activations and an HWIO kernel, only in a program's
top-level computation, not inside a loop's body; there any other layout falls back to
a naive loop. Measured on this project's CPU: one 64-channel 3x3 convolution at
8x32x32 takes 7 ms alone, 410 ms per step inside a scan in NCHW, 6 ms in NHWC/HWIO. And
JAX's gradients of a canonical convolution are themselves non-canonical convolutions
(a kernel with swapped O/I roles; batch and feature roles swapped for the kernel's
gradient). So :func:`conv_same` computes the convolution channels-last and gives it a
custom JVP whose two linear parts are written so that their transposes, the reverse-mode
gradients, come out as canonical NHWC/HWIO convolutions. Forward mode stays available
(those convolutions are the slow kind, but correct).

Two more CPU tunings: a 1x1 convolution is a matrix product (XLA:CPU's
convolution took 2-3x as long for each of its three parts), and a wide kernel's gradient,
which XLA:CPU runs as a convolution with an image-sized "kernel" (4.7x PyTorch's), runs as
a loop of small GEMMs, one per pencil (:func:`_by_kernel_in_pencils`), chosen at lowering
time so that GPUs and TPUs keep XLA's convolution.

This is platform tuning, kept in this one file: the conditioners and hyperbolic layers
call :func:`conv_same`, nothing else knows about layouts, and the rest of invjax would be
unchanged if XLA laid out convolutions inside loops itself.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from ._squeeze import depth_to_space, space_to_depth


# The name scope of every CPU-only kernel formulation (``lax.platform_dependent``'s ``cpu``
# branches): it shows in programs lowered for CPU, never in those lowered for GPU or TPU.
CPU_SCOPE = "invjax_cpu_kernel"


def _letters(n: int) -> str:
    return "DHW"[3 - n:]


def _conv(lhs, rhs, lhs_spec, rhs_spec, out_spec, n):
    """Stride-1 "SAME" convolution (odd kernels) with the given layout strings."""
    return lax.conv_general_dilated(lhs, rhs, (1,) * n, "SAME", dimension_numbers=(lhs_spec, rhs_spec, out_spec))


@jax.custom_jvp
def _conv_nhwc(x, weight):
    """``x``: ``(N, *S, I)``; ``weight``: Equinox layout ``(O, I, *K)``; -> ``(N, *S, O)``."""
    if _volume_as_planes(weight.shape):
        return lax.platform_dependent(x, weight, cpu=_volume_by_planes, default=_by_input)
    return _by_input(x, weight)


def _by_input(x, weight, transposed: bool = False):
    """XLA's convolution of ``x`` with ``weight``, the kernel laid out ``(*K, I, O)``, or with
    ``transposed`` ``(*K, O, I)``: the layout of the input's tangent, whose transpose (the input
    gradient) is then canonical ``(*K, I', O')``."""
    n, s = weight.ndim - 2, _letters(weight.ndim - 2)
    if transposed:
        return _conv(x, jnp.moveaxis(weight, (0, 1), (-2, -1)), f"N{s}C", f"{s}OI", f"N{s}C", n)
    return _conv(x, jnp.moveaxis(weight, (0, 1), (-1, -2)), f"N{s}C", f"{s}IO", f"N{s}C", n)


def _conv_nhwc_jvp(primals, tangents):
    x, weight = primals
    dx, dweight = tangents
    out = _conv_nhwc(x, weight)
    parts = []
    planes = _volume_as_planes(weight.shape)
    if not isinstance(dx, SymbolicZero):
        # Kernel laid out (*K, O, I): the transpose (the input gradient) swaps O and I,
        # which makes it (*K, I', O'), canonical.
        if planes:
            transposed = functools.partial(_by_input, transposed=True)
            parts.append(lax.platform_dependent(dx, weight, cpu=functools.partial(_volume_by_planes, plane_conv=transposed),
                                                default=transposed))
        else:
            parts.append(_by_input(dx, weight, True))
    if not isinstance(dweight, SymbolicZero):
        # The kernel's tangent: its transpose is the kernel gradient, XLA:CPU's slow part.
        # The loop on CPU where it pays (chosen when lowering: GPU and TPU keep XLA's).
        if planes:
            parts.append(lax.platform_dependent(x, dweight, cpu=_volume_kernel_tangent(weight.shape, x.shape),
                                                default=_by_kernel_as_conv))
        elif _pencils_pay(weight.shape, x.shape[1:-1]):
            parts.append(lax.platform_dependent(x, dweight, cpu=_by_kernel_in_pencils, default=_by_kernel_as_conv))
        else:
            parts.append(_by_kernel_as_conv(x, dweight))
    return out, sum(parts[1:], parts[0]) if parts else jnp.zeros_like(out)


def _pencils_pay(weight_shape, spatial_shape) -> bool:
    """Whether the per-pencil GEMM loop beats XLA:CPU's kernel gradient for this kernel.

    Measured on this project's CPU (batch 8, 3x3, 32^2 to 256^2 images, both ways in one
    session): the loop wins where the patch width ``taps * in``, ``out`` and the
    pencils are all long (64 -> 64 at 128^2: 116 vs 210 ms; 128 -> 128: 293 vs 1526 ms;
    64 -> 64 at 256^2: 0.67 vs 1.1 s) and loses where the output is thin (64 -> 12 at
    128^2: 128 vs 44 ms), the patches are (12 -> 64 at 64^2: 11 vs 7 ms) or the pencils are
    short (64 -> 48 at 32^2: 8.0 vs 5.9 ms): there a small GEMM per pencil cannot pay for
    its loop (and its compilation).
    """
    out_ch, in_ch, *kernel = weight_shape
    if _space_is_split():
        return False
    # Not for signals: one pencil is the whole signal (a full im2col), and it measured no
    # faster (8x64x65536: 297 vs 301 ms on one core, 425 vs 352 ms on two).
    return len(kernel) > 1 and math.prod(kernel) * in_ch >= 256 and out_ch >= 32 and spatial_shape[0] >= 64


def _volume_as_planes(weight_shape) -> bool:
    """Whether a volume's convolution runs on CPU through XLA's 2D convolution
    (:func:`_volume_by_planes`): a 3D kernel deeper than one plane, with space not split
    (merging the batch and depth axes of a split depth axis would gather it)."""
    return len(weight_shape) == 5 and weight_shape[2] > 1 and not _space_is_split()


def _volume_by_planes(x, weight, plane_conv=_by_input):
    """A volume's convolution as one 2D convolution over its ``N * D`` depth planes.

    XLA:CPU's 3D convolution runs 4-10x slower than its 2D one here. The ``kd`` depth taps
    are stacked on the thinner side's channels: on the input's (``I <= O``: the ``kd``
    depth-shifted views of ``x`` concatenated, ``(N D, H, W, kd I)``, one 2D convolution with a
    ``(kd I, kh, kw)`` kernel), or on the output's (one 2D convolution to ``kd O`` channels,
    whose ``kd`` parts are added at their depth offsets). Shifts, concatenations and
    reshapes only: the transpose of either runs the transpose of the 2D convolution, so a
    tangent's formulation (``plane_conv``) decides what the gradient runs.

    Args:
        x: ``(N, D, H, W, I)``.
        weight: ``(O, I, kd, kh, kw)``, odd sizes (or a tangent of it).
        plane_conv: the 2D convolution ``(M, H, W, I'), (O', I', kh, kw) -> (M, H, W, O')``:
            :func:`_by_input` (the forward), ``_by_input(..., transposed=True)`` (the input's
            tangent) or :func:`_plane_kernel_tangent` (the kernel's).
    Returns:
        ``(N, D, H, W, O)``.
    """
    with jax.named_scope(CPU_SCOPE):
        out_ch, in_ch, depth_taps = weight.shape[:3]
        batch, depth = x.shape[:2]
        pad = ((0, 0), (depth_taps // 2,) * 2) + ((0, 0),) * (x.ndim - 2)
        if in_ch <= out_ch:
            xp = jnp.pad(x, pad)
            stacked = jnp.concatenate([xp[:, t:t + depth] for t in range(depth_taps)], -1)  # (N, D, H, W, kd I)
            kernel = jnp.swapaxes(weight, 1, 2).reshape(out_ch, depth_taps * in_ch, *weight.shape[3:])
            out = plane_conv(stacked.reshape(batch * depth, *stacked.shape[2:]), kernel)
            return out.reshape(batch, depth, *out.shape[1:])
        kernel = jnp.moveaxis(weight, 2, 0).reshape(depth_taps * out_ch, in_ch, *weight.shape[3:])
        parts = plane_conv(x.reshape(batch * depth, *x.shape[2:]), kernel)  # (N D, H, W, kd O)
        # Split, then each tap shifted along depth by its offset (a slice and a pad that fuse
        # into the sum; the transpose concatenates the shifted cotangents).
        taps = jnp.split(parts.reshape(batch, depth, *parts.shape[1:]), depth_taps, axis=-1)
        return sum(_shift_depth(tap, t - depth_taps // 2) for t, tap in enumerate(taps))


def _shift_depth(v, offset: int):
    """``v[:, d + offset]`` at depth ``d``, zero where that leaves ``v`` (axis 1)."""
    depth = v.shape[1]
    kept = v[:, max(offset, 0):depth + min(offset, 0)]
    return jnp.pad(kept, ((0, 0), (max(-offset, 0), max(offset, 0))) + ((0, 0),) * (v.ndim - 2))


def _volume_kernel_tangent(weight_shape, x_shape):
    """The CPU formulation of a volume's kernel tangent, whose transpose is its kernel gradient.

    Measured on this project's CPU (batch 2, 3x3x3, one core, ms; PyTorch's ``conv3d_weight``
    in brackets): on 64x64 planes a loop of im2col GEMMs, over blocks of positions where
    ``I <= O`` (4 -> 32 at 64^3: 146 against 229 through 2D convolutions and 143 per pencil
    [107]), per pencil where ``O < I`` (32 -> 8: 305 against 458 by blocks, 786 [~100]); on
    smaller planes the 2D convolutions over depth planes (:func:`_volume_by_planes`), as fast
    as the loops there (32 -> 8 at 32^3: 35.5 against 33.8 and 48; 64 -> 32 at 8^3: 1.2
    against 2.1 and 3.8) and compiled in a fraction of their time (a 3D Glow's gradient at
    32^3: 11.5 s against 19.5 s).
    """
    out_ch, in_ch = weight_shape[:2]
    if math.prod(x_shape[2:-1]) < 64 * 64:
        return functools.partial(_volume_by_planes, plane_conv=_plane_kernel_tangent)
    return _by_kernel_in_slabs if in_ch <= out_ch else _by_kernel_in_pencils


def _plane_kernel_tangent(x, dweight):
    """The 2D kernel tangent's convolution that :func:`_volume_by_planes` runs for a volume's
    kernel gradient: the per-pencil loop where it pays, else XLA's convolution."""
    if _pencils_pay(dweight.shape, x.shape[1:-1]):
        return _by_kernel_in_pencils(x, dweight)
    return _by_kernel_as_conv(x, dweight)


def _space_is_split() -> bool:
    """Whether the mesh in context (``jax.set_mesh``; ``ij.fit`` sets its own) may split
    space: any axis but ``"batch"`` with more than one device. The pencil loop slices its
    input along the spatial axes, and slices of a split axis would be gathered whole."""
    mesh = jax.sharding.get_abstract_mesh()
    return not mesh.empty and any(size > 1 for name, size in mesh.shape.items() if name != "batch")


def _by_kernel_as_conv(x, dweight):
    """``conv(x, dweight)`` as one convolution, laid out so that its transpose is canonical.

    Input laid out (I, *S, N), output (*S, N, O), kernel tangent (I, *K, O): the transpose
    (the kernel gradient) is then x as an NHWC batch of I images with N features,
    convolved with the output cotangent as an HWIO kernel. XLA's choice on GPU and TPU; on
    CPU this "kernel" of the image's size is XLA:CPU's slow path (4.7x PyTorch's kernel
    gradient at 8x64x256x256).
    """
    n, s = dweight.ndim - 2, _letters(dweight.ndim - 2)
    x_t = jnp.swapaxes(x, 0, -1)  # (I, *S, N)
    dkernel = jnp.moveaxis(dweight, 0, -1)  # (I, *K, O)
    d = _conv(x_t, dkernel, f"C{s}N", f"I{s}O", f"{s}NC", n)  # (*S, N, O)
    return jnp.moveaxis(d, -2, 0)


def _by_kernel_in_pencils(x, dweight):
    """``conv(x, dweight)`` as a loop of small im2col products, one pencil at a time.

    A pencil is the line of positions along the first spatial axis at one position of the
    others (a column of an image, a line of a volume; a 1-D signal is one pencil). For each,
    the taps of the ``kernel``-wide neighbourhood are stacked into a ``(N * S1, T * I)``
    patch matrix and multiplied by the kernel as a ``(T * I, O)`` matrix. Written as a
    linear ``lax.scan`` under ``jax.checkpoint``, its transpose (what reverse mode runs) is
    the kernel gradient as a loop that rebuilds each pencil's patches and accumulates
    ``patchesᵀ @ cotangent``: one GEMM per pencil, its operands a few MiB that stay in
    cache. Measured on this project's CPU (one core, 8x64x256x256, 3x3): 0.67-0.86 s against
    1.1 s for XLA's convolution and 0.56-0.68 s for PyTorch's ``conv2d_weight``. Memory:
    compiled temporaries flat in depth, but +15% over XLA's path (a HINT with 3-3-3 blocks,
    hidden 64, 4x4x128x128: 101.8 vs 88.2 MiB: the cotangent is moved pencil-major once).

    Not where space is split (:func:`_space_is_split`): a slice of a split axis is gathered
    whole. Per iteration: one pencil's patches, ``T`` times a pencil of ``x``.
    """
    with jax.named_scope(CPU_SCOPE):  # marks the loop in lowered programs (tests: absent for GPU)
        return _pencils(x, dweight)


def _pencils(x, dweight):
    n = dweight.ndim - 2
    out_ch, in_ch, *ks = dweight.shape
    batch, first, *rest = x.shape[:-1]
    taps = math.prod(ks)
    xp = jnp.pad(x, ((0, 0), *((k // 2, k // 2) for k in ks), (0, 0)))
    matrix = jnp.moveaxis(dweight, 1, -1).reshape(out_ch, taps * in_ch)  # (O, T * I), taps in (*K) order

    def pencil(index):
        starts = (0, 0, *index, 0) if n > 1 else (0, 0, 0)
        sizes = (batch, xp.shape[1], *ks[1:], in_ch)
        window = lax.dynamic_slice(xp, starts, sizes)  # (N, S1 + k1 - 1, *K[1:], I)
        patches = jnp.stack([window[(slice(None), slice(t[0], t[0] + first), *(slice(j, j + 1) for j in t[1:]))]
                             for t in itertools.product(*map(range, ks))], -2)  # (N, S1, T, I)
        product = lax.dot_general(matrix, patches.reshape(-1, taps * in_ch), (((1,), (1,)), ((), ())))  # (O, M)
        return product.T.reshape(batch, first, out_ch)

    if n == 1:
        return pencil(())
    positions = jnp.stack(jnp.unravel_index(jnp.arange(math.prod(rest)), rest), -1)  # (P, n - 1)
    _, lines = lax.scan(jax.checkpoint(lambda carry, i: (carry, pencil(tuple(i)))), None, positions)
    lines = lines.reshape(*rest, batch, first, out_ch)
    return jnp.moveaxis(lines, (n - 1, n), (0, 1))


def _by_kernel_in_slabs(x, dweight):
    """A volume's ``conv(x, dweight)`` as a loop of im2col products over blocks of its
    positions: the kernel gradient of :func:`_volume_by_planes` where ``I <= O``.

    A block is ``P`` consecutive depth planes (or ``P = 1`` and part of a plane's rows), read
    as one window of the padded, channels-first input; its ``T = kd kh kw`` taps are stacked
    into a ``(T I, positions)`` patch matrix and multiplied by the kernel as ``(T I, O)``. As
    with :func:`_by_kernel_in_pencils`, a linear ``lax.scan`` under ``jax.checkpoint``: its
    transpose, the kernel gradient, rebuilds each block's patches and accumulates one GEMM
    per block, its operands a few MiB, the patch matrix laid out (contraction over its minor
    axis) the way XLA:CPU's GEMM runs fastest (about 2x the other layout's speed here).
    Where ``O < I`` (a conditioner's last convolution), patches of the wide input and a thin
    product are memory-bound, and the per-pencil loop, whose patches stay in cache, is faster.
    """
    with jax.named_scope(CPU_SCOPE):
        out_ch, in_ch, *ks = dweight.shape
        batch, depth, height, width = x.shape[:-1]
        taps = math.prod(ks)
        planes, rows = _slab(batch, depth, height, width)
        xp = jnp.pad(jnp.moveaxis(x, -1, 0), ((0, 0), (0, 0), *((k // 2, k // 2) for k in ks)))  # (I, N, D', H', W')
        matrix = jnp.moveaxis(dweight, 0, -1)  # (I, kd, kh, kw, O)
        window_shape = (in_ch, batch, planes + ks[0] - 1, rows + ks[1] - 1, xp.shape[-1])
        offsets = list(itertools.product(*map(range, ks)))

        def block(start):
            window = lax.dynamic_slice(xp, (0, 0, *start, 0), window_shape)
            patches = jnp.stack([window[:, :, a:a + planes, b:b + rows, c:c + width] for a, b, c in offsets], 1)
            product = lax.dot_general(patches.reshape(in_ch * taps, -1), matrix.reshape(in_ch * taps, out_ch),
                                      (((0,), (0,)), ((), ())))  # (positions, O)
            return product.reshape(batch, planes, rows, width, out_ch)

        starts = jnp.stack(jnp.meshgrid(jnp.arange(0, depth, planes), jnp.arange(0, height, rows), indexing="ij"), -1)
        _, blocks = lax.scan(jax.checkpoint(lambda carry, s: (carry, block((s[0], s[1])))), None, starts.reshape(-1, 2))
        blocks = blocks.reshape(depth // planes, height // rows, batch, planes, rows, width, out_ch)
        return blocks.transpose(2, 0, 3, 1, 4, 5, 6).reshape(batch, depth, height, width, out_ch)


def _slab(batch: int, depth: int, height: int, width: int) -> tuple[int, int]:
    """``(planes, rows)`` of a block of :func:`_by_kernel_in_slabs`: whole planes while they
    hold at most ``_BLOCK_POSITIONS`` positions together, else part of one plane."""
    per_plane = batch * height * width
    if per_plane <= _BLOCK_POSITIONS:
        return max(p for p in range(1, depth + 1) if depth % p == 0 and p * per_plane <= _BLOCK_POSITIONS), height
    return 1, max([r for r in range(1, height + 1) if height % r == 0 and r * batch * width <= _BLOCK_POSITIONS] or [1])


# Positions per block of the volume kernel gradient's loop: the patch matrix of 27 taps of
# 32 channels is then 3.5 MiB, and each GEMM long enough to run near XLA:CPU's GEMM speed.
_BLOCK_POSITIONS = 1024


_conv_nhwc.defjvp(_conv_nhwc_jvp, symbolic_zeros=True)


def conv_same(x, weight, bias=None):
    """Stride-1 "SAME" convolution of a channels-last batch.

    Args:
        x: ``(N, *spatial, I)``.
        weight: ``(O, I, *kernel)`` (Equinox's layout), odd kernel sizes.
        bias: ``None``, or ``O`` values (any shape with ``O`` elements).

    Returns:
        ``(N, *spatial, O)``.
    """
    if all(k == 1 for k in weight.shape[2:]):
        # A 1x1 convolution is a matrix product over the channels; its kernel gradient is
        # then one GEMM over every position (XLA:CPU's convolution took 2.2x as long).
        out = jnp.einsum("...i,oi->...o", x, weight.reshape(weight.shape[:2]))
    else:
        out = _conv_nhwc(x, weight)
    return out if bias is None else out + bias.reshape(-1)


def _subpixel_kernels(weight, stride: int, padding: int, transpose: bool):
    """The stride-1 kernels of a strided convolution (or its transpose) of ``weight (O, I, k, ..., k)``,
    ``k = s + 2p``, one per offset ``r`` in an ``s x ... x s`` patch: ``(O, I, r_1, ..., r_n, m_1, ..., m_n)``,
    ``m`` from ``-M`` to ``M``, ``M = ceil(p / s)``, zero where the tap leaves the kernel.

    Convolution (Equinox's ``Conv``): output ``i`` reads input ``i s + m s + r - p`` with tap ``m s + r + p``.
    Transpose (Equinox's ``ConvTranspose``, a correlation with the dilated input): output ``i s + r`` reads
    input ``i + m`` with tap ``m s + k - 1 - p - r``.
    """
    n, k, s = weight.ndim - 2, weight.shape[2], stride
    reach = -(-padding // s)
    m, r = jnp.arange(-reach, reach + 1)[:, None], jnp.arange(s)[None, :]
    index = m * s + (k - 1 - padding - r if transpose else r + padding)  # (2M + 1, s)
    valid = (index >= 0) & (index < k)
    for axis in range(n):
        # Axis 2 + 2 axis of the growing array is the next kernel axis; it becomes (m, r).
        taken = jnp.take(weight, jnp.clip(index, 0, k - 1).ravel(), axis=2 + 2 * axis)
        taken = taken.reshape(*taken.shape[:2 + 2 * axis], *index.shape, *taken.shape[3 + 2 * axis:])
        weight = taken * valid.reshape((1,) * (2 + 2 * axis) + index.shape + (1,) * (n - 1 - axis)).astype(taken.dtype)
    # (O, I, m1, r1, m2, r2, ...) -> (O, I, r1, ..., rn, m1, ..., mn)
    return weight.transpose(0, 1, *range(3, 2 + 2 * n, 2), *range(2, 2 + 2 * n, 2))


def conv_first(x, weight, bias=None):
    """:func:`conv_same` of one channels-first sample ``(I, *spatial)``."""
    return to_channels_first(conv_same(to_channels_last(x[None]), weight, bias))[0]


def strided_conv(x, weight, bias, stride: int, padding: int):
    """``eqx.nn.Conv(kernel=k, stride=s, padding=p)``, ``k = s + 2p``, as a stride-1 convolution of
    the space-to-depth input (each of its ``s**n`` offset planes a channel).

    Args:
        x: ``(I, *spatial)``, one sample, each spatial size a multiple of ``stride``.
        weight: ``(O, I, k, ..., k)`` (Equinox's layout).
        bias: ``O`` values (any shape with ``O`` elements).
        stride, padding: ``s`` and ``p`` (the same on every axis), ``k = s + 2p``.

    Returns:
        ``(O, *spatial / s)``. Only reshapes and stride-1 convolutions, which XLA splits along a
        split spatial axis with halos; its partitioner gathers whole inputs of a strided
        convolution's transpose (i-RIM's upsampling) instead. With ``p = 0`` the convolution is
        a matrix product per patch.
    """
    taps = _subpixel_kernels(weight, stride, padding, transpose=False)  # (O, I, r..., m...)
    kernel = taps.reshape(taps.shape[0], -1, *taps.shape[2 + x.ndim - 1:])  # (O, I s**n, 2M + 1, ...)
    return conv_first(space_to_depth(x[None], stride)[0], kernel, bias)


def strided_conv_transpose(h, weight, bias, stride: int, padding: int):
    """``eqx.nn.ConvTranspose(kernel=k, stride=s, padding=p)``, ``k = s + 2p``: each of the ``s**n``
    output offsets is a stride-1 convolution of ``h`` (sub-pixel convolution), the offsets then
    interleaved by a reshape (depth-to-space).

    Args:
        h: ``(I, *spatial)``, one sample.
        weight: ``(O, I, k, ..., k)`` (Equinox's ``ConvTranspose`` layout).
        bias: ``O`` values (any shape with ``O`` elements).
        stride, padding: ``s`` and ``p``.

    Returns:
        ``(O, *spatial * s)``.
    """
    n = h.ndim - 1
    taps = _subpixel_kernels(weight, stride, padding, transpose=True)  # (O, I, r..., m...)
    order = (0, *range(2, 2 + n), 1, *range(2 + n, 2 + 2 * n))  # (O, r..., I, m...)
    kernel = taps.transpose(order).reshape(-1, taps.shape[1], *taps.shape[2 + n:])  # (O s**n, I, 2M + 1, ...)
    out = depth_to_space(conv_first(h, kernel)[None], stride)[0]
    return out + bias.reshape((-1,) + (1,) * n)


def to_channels_last(x):
    """``(N, C, *spatial)`` -> ``(N, *spatial, C)``."""
    return jnp.moveaxis(x, 1, -1)


def to_channels_first(x):
    """``(N, *spatial, C)`` -> ``(N, C, *spatial)``."""
    return jnp.moveaxis(x, -1, 1)
