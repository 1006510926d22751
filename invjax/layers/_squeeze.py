"""Squeezes: trade a factor 2 of every spatial size for channels (logdet 0).

InvertibleNetworks.jl's patterns (``squeeze(X; pattern=...)``, ``ShuffleLayer``,
``Haar_squeeze``) are :class:`ColumnSqueeze`, :class:`PatchSqueeze`,
:class:`CheckerboardSqueeze` and :class:`SubbandHaarSqueeze`. Julia's arrays are
``(nx, ny[, nz], C, B)``, column-major; invjax's are ``(B, C[, D], H, W)``, row-major, with
``x = numpy.transpose(X)``: ``X[i, j, c, b] == x[b, c, j, i]`` (volumes:
``X[i, j, l, c, b] == x[b, c, l, j, i]``). Julia's first spatial axis ``nx`` is the last
invjax axis ``W``, ``ny`` is ``H``, ``nz`` is ``D``; both layouts have the same memory order.
With this correspondence these layers give the channels of Julia's functions in Julia's
order, with the same content.
"""

from __future__ import annotations

import itertools
import math

import equinox as eqx
import jax.numpy as jnp

from .._checks import check_array, check_spatial
from .._layer import AbstractBasicLayer, AbstractLayer
from ._util import batch_logdet

# Orthonormal one-level Haar filter pair: rows are (average, detail).
_HAAR = [[1 / math.sqrt(2), 1 / math.sqrt(2)], [1 / math.sqrt(2), -1 / math.sqrt(2)]]


def _to_blocks(x, halves: bool = False, factor: int = 2):
    """``(B, C, *S)`` -> ``(B, C, f, ..., f, *S/f)`` (``f = factor``): the block axes (one per
    spatial axis) after C.

    ``halves=False``: the block index along an axis is the coordinate modulo ``f`` (the
    2x2(x2) neighbours of a space-to-depth, InvertibleNetworks.jl's checkerboard);
    ``halves=True``: it is the ``f``-th of the axis (quadrants / octants, its patches).
    """
    b, c, *sizes = x.shape
    n = len(sizes)
    x = x.reshape(b, c, *[v for s in sizes for v in ((factor, s // factor) if halves else (s // factor, factor))])
    block, inner = (2, 3) if halves else (3, 2)
    return x.transpose(0, 1, *[block + 2 * i for i in range(n)], *[inner + 2 * i for i in range(n)])


def _from_blocks(x, n, halves: bool = False):
    """Inverse of :func:`_to_blocks` for ``n`` spatial axes."""
    b, c = x.shape[:2]
    factors, inner = x.shape[2 : 2 + n], x.shape[2 + n :]
    pairs = [(2 + i, 2 + n + i) if halves else (2 + n + i, 2 + i) for i in range(n)]
    return x.transpose([0, 1] + [a for pair in pairs for a in pair]).reshape(
        b, c, *[f * h for f, h in zip(factors, inner, strict=True)])


def _merge(blocks, n, offset_major: bool = False):
    """``(B, C, 2, ..., 2, *S/2)`` -> ``(B, C * 2**n, *S/2)``.

    With ``k`` the row-major index of the block axes, input channel ``c`` and block ``k``
    become channel ``c * 2**n + k`` (channel-major) or ``k * C + c`` (``offset_major``).
    """
    if offset_major:
        blocks = jnp.moveaxis(blocks, 1, 1 + n)
    # Sizes spelled out, not -1: an empty batch (B = 0) has no size to infer from.
    return blocks.reshape(blocks.shape[0], math.prod(blocks.shape[1 : 2 + n]), *blocks.shape[2 + n :])


def _split(y, n, offset_major: bool = False, factor: int = 2):
    """Inverse of :func:`_merge` (blocks of ``factor`` along each axis)."""
    b, c = y.shape[0], y.shape[1] // factor**n
    if offset_major:
        return jnp.moveaxis(y.reshape(b, *[factor] * n, c, *y.shape[2:]), 1 + n, 1)
    return y.reshape(b, c, *[factor] * n, *y.shape[2:])


def space_to_depth(x, factor: int = 2):
    """``(B, C, *S)`` -> ``(B, C * f**n, *S/f)`` (``f = factor``), channel ``c`` keeping its block
    together: channel ``c f**n + k``, ``k`` the row-major offset in the block."""
    return _merge(_to_blocks(x, factor=factor), x.ndim - 2)


def depth_to_space(y, factor: int = 2):
    """The inverse of :func:`space_to_depth`."""
    n = y.ndim - 2
    return _from_blocks(_split(y, n, factor=factor), n)


def _haar_mix(blocks, n):
    """Apply the orthonormal (and symmetric, so self-inverse) Haar filter on each block axis."""
    h = jnp.asarray(_HAAR, blocks.dtype)
    for i in range(n):
        blocks = jnp.moveaxis(jnp.tensordot(h, blocks, axes=([1], [2 + i])), 0, 2 + i)
    return blocks


def _flip_blocks(blocks, n):
    """Reverse the order of the block axes (self-inverse): InvertibleNetworks.jl's sub-band order."""
    return blocks.transpose(0, 1, *range(1 + n, 1, -1), *range(2 + n, blocks.ndim))


def _squeezed(name, x, squeeze):
    check_spatial(name, x)
    return squeeze(x, x.ndim - 2), batch_logdet(0.0, x)


def _unsqueezed(name, y, unsqueeze):
    _check_squeezed(name, y)
    return unsqueeze(y, y.ndim - 2), batch_logdet(0.0, y)


class Squeeze(AbstractBasicLayer):
    """Space-to-depth: every 2x2 (2x2x2 for volumes) block becomes 4 (8) channels.

    Channel-major: input channel ``c`` becomes channels ``c * 2**n + k``, ``k = 0 ... 2**n - 1``
    the row-major position in the block (for images ``k = 2 * (row parity) + column parity``).
    InvertibleNetworks.jl's checkerboard pattern takes the same blocks in another channel
    order (:class:`CheckerboardSqueeze`); for a single channel the two coincide.

    Shapes: ``(B, C, L)`` -> ``(B, 2C, L/2)``; ``(B, C, H, W)`` -> ``(B, 4C, H/2, W/2)``;
    ``(B, C, D, H, W)`` -> ``(B, 8C, D/2, H/2, W/2)``. Spatial sizes must be even. logdet 0.
    """

    def forward(self, x, cond=None):
        return _squeezed("Squeeze", x, lambda v, n: _merge(_to_blocks(v), n))

    def inverse_and_log_det(self, y, cond=None):
        return _unsqueezed("Squeeze", y, lambda v, n: _from_blocks(_split(v, n), n))


class HaarSqueeze(AbstractBasicLayer):
    """Orthonormal Haar wavelet squeeze: each block becomes its average and detail coefficients.

    Channel ``c`` of the input becomes channels ``c*2**n ... (c+1)*2**n - 1``: first the
    low-pass (average) coefficient, then the details, ``k`` having one binary digit per
    spatial axis, in the order of the axes (most significant first), 1 for the detail. This
    is the order of InvertibleNetworks.jl's ``wavelet_squeeze`` (``WaveletLayer``, db1);
    its ``Haar_squeeze`` (``HaarLayer``) orders the sub-bands differently
    (:class:`SubbandHaarSqueeze`). Orthonormal, so logdet 0 and the inverse is exact.
    Shapes as :class:`Squeeze`.
    """

    def forward(self, x, cond=None):
        return _squeezed("HaarSqueeze", x, lambda v, n: _merge(_haar_mix(_to_blocks(v), n), n))

    def inverse_and_log_det(self, y, cond=None):
        return _unsqueezed("HaarSqueeze", y, lambda v, n: _from_blocks(_haar_mix(_split(v, n), n), n))


class ColumnSqueeze(AbstractBasicLayer):
    """InvertibleNetworks.jl's ``squeeze(X; pattern="column")`` (its default): a plain reshape.

    Each channel's samples, in memory order, are cut into ``2**n`` consecutive runs, and
    run ``k`` is channel ``c * 2**n + k``, refolded to the halved spatial sizes. For an
    image: the rows ``k H/4 ... (k+1) H/4 - 1`` (Julia's columns, ``nx`` being ``W``).
    Julia: ``reshape(X, nx÷2, ny÷2, 4C, B)``; invjax: ``x.reshape(B, 4C, H/2, W/2)``, the
    same values since both layouts share the memory order. Not a local (block) squeeze:
    neighbours in a channel of the output are far apart in the input.

    Shapes as :class:`Squeeze` (signals too). Spatial sizes must be even. logdet 0.
    """

    def forward(self, x, cond=None):
        return _squeezed("ColumnSqueeze", x,
                         lambda v, n: v.reshape(v.shape[0], v.shape[1] * 2**n, *[s // 2 for s in v.shape[2:]]))

    def inverse_and_log_det(self, y, cond=None):
        return _unsqueezed("ColumnSqueeze", y,
                           lambda v, n: v.reshape(v.shape[0], v.shape[1] // 2**n, *[2 * s for s in v.shape[2:]]))


class PatchSqueeze(AbstractBasicLayer):
    """InvertibleNetworks.jl's ``squeeze(X; pattern="patch")``: the quadrants (octants) become channels.

    Offset-major, as Julia: quadrant ``k`` of channel ``c`` is channel ``k * C + c``, with
    ``k`` the row-major index of the halves along invjax's axes: for images
    ``k = 2 * (half of H) + (half of W)``, i.e. top-left, top-right, bottom-left,
    bottom-right; for volumes ``k = 4 * (half of D) + 2 * (half of H) + (half of W)``. In
    Julia's terms ``k = ix + 2 iy (+ 4 iz)``, ``ix`` the half of ``nx`` (``patch_inds``).
    Julia has no 1D patch squeeze; here signals split into their two halves.

    Shapes as :class:`Squeeze`. Spatial sizes must be even. logdet 0.
    """

    def forward(self, x, cond=None):
        return _squeezed("PatchSqueeze", x, lambda v, n: _merge(_to_blocks(v, halves=True), n, offset_major=True))

    def inverse_and_log_det(self, y, cond=None):
        return _unsqueezed(
            "PatchSqueeze", y, lambda v, n: _from_blocks(_split(v, n, offset_major=True), n, halves=True))


class CheckerboardSqueeze(AbstractBasicLayer):
    """InvertibleNetworks.jl's ``squeeze(X; pattern="checkerboard")``, the default of its ``ShuffleLayer``.

    The blocks of :class:`Squeeze`, offset-major as Julia: the samples of channel ``c`` at
    block position ``k`` are channel ``k * C + c`` (:class:`Squeeze` puts them at
    ``c * 2**n + k``; for ``C = 1`` the two coincide). ``k`` is the row-major position in
    the 2x2(x2) block along invjax's axes: for images ``k = 2 * (row parity) + column
    parity``, so channel ``c`` is ``x[:, c, 0::2, 0::2]``, ``C + c`` is
    ``x[:, c, 0::2, 1::2]``, ``2C + c`` is ``x[:, c, 1::2, 0::2]``, ``3C + c`` is
    ``x[:, c, 1::2, 1::2]``. In Julia's terms ``k = ix + 2 iy (+ 4 iz)``, ``ix`` the parity
    along ``nx`` (``checkboard_inds``).

    Shapes as :class:`Squeeze` (signals too, as Julia). Spatial sizes must be even. logdet 0.
    """

    def forward(self, x, cond=None):
        return _squeezed("CheckerboardSqueeze", x, lambda v, n: _merge(_to_blocks(v), n, offset_major=True))

    def inverse_and_log_det(self, y, cond=None):
        return _unsqueezed("CheckerboardSqueeze", y, lambda v, n: _from_blocks(_split(v, n, offset_major=True), n))


class SubbandHaarSqueeze(AbstractBasicLayer):
    """InvertibleNetworks.jl's ``Haar_squeeze`` (its ``HaarLayer``): :class:`HaarSqueeze` in sub-band order.

    The same orthonormal Haar coefficients (Julia computes them by lifting), ordered
    sub-band-major as Julia: sub-band ``k`` of channel ``c`` is channel ``k * C + c``, and
    the binary digits of ``k`` (most significant first) mark the detail along Julia's
    axes in its order, ``nx, ny[, nz]``, i.e. invjax's axes from the last. Images:
    ``a, v, h, d``; for the block ``[[p, q], [r, s]]`` (rows along ``H``) these are
    ``(p+q+r+s)/2``, ``(p+q-r-s)/2`` (detail along ``H``), ``(p-q+r-s)/2`` (along ``W``)
    and ``(p-q-r+s)/2``, where :class:`HaarSqueeze` has the middle two swapped.
    Volumes: ``k = 4 fx + 2 fy + fz`` with ``fx`` the detail along ``W``, ``fy`` along
    ``H`` and ``fz`` along ``D``. The detail is ``(first - second) / sqrt(2)`` along each
    axis, as in :class:`HaarSqueeze`. Julia has no 1D ``Haar_squeeze``; here signals give
    ``[averages, details]``.

    A class of its own rather than an option of :class:`HaarSqueeze`, because networks take
    the squeeze as a class (``squeeze=ij.layers.SubbandHaarSqueeze``) and build it without
    arguments.

    Shapes as :class:`Squeeze`. Spatial sizes must be even. Orthonormal: logdet 0.
    """

    def forward(self, x, cond=None):
        return _squeezed(
            "SubbandHaarSqueeze", x,
            lambda v, n: _merge(_flip_blocks(_haar_mix(_to_blocks(v), n), n), n, offset_major=True))

    def inverse_and_log_det(self, y, cond=None):
        return _unsqueezed(
            "SubbandHaarSqueeze", y,
            lambda v, n: _from_blocks(_haar_mix(_flip_blocks(_split(v, n, offset_major=True), n), n), n))


class SqueezeLanes(AbstractBasicLayer):
    """``squeeze`` applied to each lane of a state of lanes concatenated along the channels.

    The two-lane networks (the conditional HINT's ``(y, x)``) squeeze each lane on its
    own, so a lane's channels stay together whatever the squeeze's channel order (an
    offset-major squeeze of the whole state would mix them). An internal of
    :func:`invjax.nets._multiscale.multiscale`; ``squeeze`` has no data-dependent
    initialisation.

    Args:
        squeeze: the squeeze layer.
        lanes: the channels of each lane at the input, in order.

    Shapes: ``(B, sum(lanes), *S)`` -> ``(B, sum(lanes) * 2**n, *S/2)``.
    """

    squeeze: AbstractLayer
    lanes: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, squeeze: AbstractLayer, lanes):
        self.squeeze, self.lanes = squeeze, tuple(int(c) for c in lanes)

    def _apply(self, apply, v, sizes):
        check_array("SqueezeLanes", v, "x")
        if v.ndim < 3 or v.shape[1] != sum(sizes):
            raise ValueError(
                f"SqueezeLanes: expected (B, {sum(sizes)}, *spatial) (lanes of {list(sizes)} channels), "
                f"got shape {tuple(v.shape)}."
            )
        outs = [apply(part) for part in jnp.split(v, list(itertools.accumulate(sizes))[:-1], axis=1)]
        return jnp.concatenate([out for out, _ in outs], axis=1), sum(logdet for _, logdet in outs)

    def forward(self, x, cond=None):
        return self._apply(lambda v: self.squeeze.forward(v, cond), x, self.lanes)

    def inverse_and_log_det(self, y, cond=None):
        sizes = [c * 2 ** (y.ndim - 2) for c in self.lanes]
        return self._apply(lambda v: self.squeeze.inverse_and_log_det(v, cond), y, sizes)


def _check_squeezed(name, y):
    check_array(name, y, "y")
    n = y.ndim - 2
    if not 1 <= n <= 3 or y.shape[1] % 2**n:
        raise ValueError(
            f"{name}: the inverse expects (B, C, *spatial) with 1 to 3 spatial axes and C a "
            f"multiple of 2**(spatial axes); got shape {tuple(y.shape)}."
        )
