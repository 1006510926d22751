"""Squeezes: trade a factor 2 of every spatial size for channels (logdet 0)."""

from __future__ import annotations

import math

import jax.numpy as jnp

from .._checks import check_array, check_spatial
from .._layer import AbstractBasicLayer
from ._util import batch_logdet

# Orthonormal one-level Haar filter pair: rows are (average, detail).
_HAAR = [[1 / math.sqrt(2), 1 / math.sqrt(2)], [1 / math.sqrt(2), -1 / math.sqrt(2)]]


def _to_blocks(x):
    """``(B, C, *S)`` -> ``(B, C, 2, ..., 2, *S/2)``: the 2x2(x2) block axes after C."""
    b, c, *sizes = x.shape
    n = len(sizes)
    x = x.reshape(b, c, *[v for s in sizes for v in (s // 2, 2)])
    return x.transpose(0, 1, *[3 + 2 * i for i in range(n)], *[2 + 2 * i for i in range(n)])


def _from_blocks(x, n):
    """Inverse of :func:`_to_blocks` for ``n`` spatial axes."""
    b, c = x.shape[:2]
    halves = x.shape[2 + n :]
    order = [0, 1] + [a for i in range(n) for a in (2 + n + i, 2 + i)]
    return x.transpose(order).reshape(b, c, *[2 * h for h in halves])


def space_to_depth(x):
    """``(B, C, *S)`` -> ``(B, C * 2**n, *S/2)``, channel ``c`` keeping its block together."""
    n = x.ndim - 2
    blocks = _to_blocks(x)
    return blocks.reshape(x.shape[0], x.shape[1] * 2**n, *blocks.shape[2 + n :])


def depth_to_space(y):
    n = y.ndim - 2
    channels = y.shape[1] // 2**n
    return _from_blocks(y.reshape(y.shape[0], channels, *([2] * n), *y.shape[2:]), n)


def _haar_mix(blocks, n):
    """Apply the orthonormal (and symmetric, so self-inverse) Haar filter on each block axis."""
    h = jnp.asarray(_HAAR, blocks.dtype)
    for i in range(n):
        blocks = jnp.moveaxis(jnp.tensordot(h, blocks, axes=([1], [2 + i])), 0, 2 + i)
    return blocks


class Squeeze(AbstractBasicLayer):
    """Space-to-depth: every 2x2 (2x2x2 for volumes) block becomes 4 (8) channels.

    Shapes: ``(B, C, H, W)`` -> ``(B, 4C, H/2, W/2)``; ``(B, C, D, H, W)`` ->
    ``(B, 8C, D/2, H/2, W/2)``. Spatial sizes must be even. logdet 0.
    """

    def forward(self, x, cond=None):
        check_spatial("Squeeze", x)
        return space_to_depth(x), batch_logdet(0.0, x)

    def inverse_and_log_det(self, y, cond=None):
        _check_squeezed("Squeeze", y)
        return depth_to_space(y), batch_logdet(0.0, y)


class HaarSqueeze(AbstractBasicLayer):
    """Orthonormal Haar wavelet squeeze: each block becomes its average and detail coefficients.

    Channel ``c`` of the input becomes channels ``c*2**n ... (c+1)*2**n - 1``: first the
    low-pass (average) coefficient, then the details. Orthonormal, so logdet 0 and the
    inverse is exact. Shapes as :class:`Squeeze`.
    """

    def forward(self, x, cond=None):
        check_spatial("HaarSqueeze", x)
        n = x.ndim - 2
        blocks = _haar_mix(_to_blocks(x), n)
        return blocks.reshape(x.shape[0], x.shape[1] * 2**n, *blocks.shape[2 + n :]), batch_logdet(0.0, x)

    def inverse_and_log_det(self, y, cond=None):
        _check_squeezed("HaarSqueeze", y)
        n = y.ndim - 2
        blocks = y.reshape(y.shape[0], y.shape[1] // 2**n, *([2] * n), *y.shape[2:])
        return _from_blocks(_haar_mix(blocks, n), n), batch_logdet(0.0, y)


def _check_squeezed(name, y):
    check_array(name, y, "y")
    n = y.ndim - 2
    if not 1 <= n <= 3 or y.shape[1] % 2**n:
        raise ValueError(
            f"{name}: the inverse expects (B, C, *spatial) with 1 to 3 spatial axes and C a "
            f"multiple of 2**(spatial axes); got shape {tuple(y.shape)}."
        )
