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

This is platform tuning, kept in this one file: the conditioners and hyperbolic layers
call :func:`conv_same`, nothing else knows about layouts, and the rest of invjax would be
unchanged if XLA laid out convolutions inside loops itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero


def _letters(n: int) -> str:
    return "DHW"[3 - n:]


def _conv(lhs, rhs, lhs_spec, rhs_spec, out_spec, n):
    """Stride-1 "SAME" convolution (odd kernels) with the given layout strings."""
    return lax.conv_general_dilated(lhs, rhs, (1,) * n, "SAME", dimension_numbers=(lhs_spec, rhs_spec, out_spec))


@jax.custom_jvp
def _conv_nhwc(x, weight):
    """``x``: ``(N, *S, I)``; ``weight``: Equinox layout ``(O, I, *K)``; -> ``(N, *S, O)``."""
    n, s = weight.ndim - 2, _letters(weight.ndim - 2)
    kernel = jnp.moveaxis(weight, (0, 1), (-1, -2))  # (*K, I, O)
    return _conv(x, kernel, f"N{s}C", f"{s}IO", f"N{s}C", n)


def _conv_nhwc_jvp(primals, tangents):
    x, weight = primals
    dx, dweight = tangents
    n, s = weight.ndim - 2, _letters(weight.ndim - 2)
    out = _conv_nhwc(x, weight)
    parts = []
    if not isinstance(dx, SymbolicZero):
        # Kernel laid out (*K, O, I): the transpose (the input gradient) swaps O and I,
        # which makes it (*K, I', O'), canonical.
        kernel = jnp.moveaxis(weight, (0, 1), (-2, -1))
        parts.append(_conv(dx, kernel, f"N{s}C", f"{s}OI", f"N{s}C", n))
    if not isinstance(dweight, SymbolicZero):
        # Input laid out (I, *S, N), output (*S, N, O), kernel tangent (I, *K, O): the
        # transpose (the kernel gradient) is then x as an NHWC batch of I images with N
        # features, convolved with the output cotangent as an HWIO kernel.
        x_t = jnp.swapaxes(x, 0, -1)  # (I, *S, N)
        dkernel = jnp.moveaxis(dweight, 0, -1)  # (I, *K, O)
        d = _conv(x_t, dkernel, f"C{s}N", f"I{s}O", f"{s}NC", n)  # (*S, N, O)
        parts.append(jnp.moveaxis(d, -2, 0))
    return out, sum(parts[1:], parts[0]) if parts else jnp.zeros_like(out)


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
    out = _conv_nhwc(x, weight)
    return out if bias is None else out + bias.reshape(-1)


def to_channels_last(x):
    """``(N, C, *spatial)`` -> ``(N, *spatial, C)``."""
    return jnp.moveaxis(x, 1, -1)


def to_channels_first(x):
    """``(N, *spatial, C)`` -> ``(N, C, *spatial)``."""
    return jnp.moveaxis(x, -1, 1)
