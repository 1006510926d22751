"""A fixed permutation of channels (or of the features of vectors)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Int

from .._checks import check_layout
from .._layer import AbstractBasicLayer
from ._util import batch_logdet


class Permute(AbstractBasicLayer):
    """``y[:, i] = x[:, permutation[i]]``, a fixed permutation; logdet 0.

    Args:
        in_channels: ``C``, the size of axis 1 (the features of a vector).
        key: PRNG key drawing a random permutation. The permutation is an integer
            array, so gradients and optimizers leave it alone.
        permutation: a given order of the ``C`` channels instead of a random one (e.g.
            the reordering that brings two lanes' kept halves together).
        swap_halves: with ``key``: the halves ``[:C // 2]`` and ``[C // 2:]`` trade places
            (each shuffled within itself), so that before a coupling that keeps the first
            ``C // 2`` channels, every channel kept by the previous coupling is transformed
            by this one: each channel is transformed at least every other step. A fully
            random order can keep one channel untouched for many steps (with 10 features
            and 5 steps, one of them in 4 of 6 draws), and a flow cannot then make it
            depend on the rest or on a condition.

    Shapes: ``(B, C, *spatial)`` -> same.
    """

    permutation: Int[Array, " C"]
    in_channels: int = eqx.field(static=True)

    def __init__(self, in_channels: int, *, key=None, permutation=None, swap_halves: bool = False):
        if (key is None) == (permutation is None):
            raise ValueError("Permute takes exactly one of key= (a random permutation) and permutation=.")
        if swap_halves and key is None:
            raise ValueError("Permute: swap_halves=True draws its order from key=; pass key=, not permutation=.")
        if permutation is None and swap_halves:
            k1, k2 = jr.split(key)
            half = in_channels // 2
            permutation = jnp.concatenate([jr.permutation(k1, jnp.arange(half, in_channels)),
                                           jr.permutation(k2, jnp.arange(half))])
        elif permutation is None:
            permutation = jr.permutation(key, in_channels)
        elif sorted(int(i) for i in permutation) != list(range(in_channels)):
            raise ValueError(f"Permute: permutation must order 0..{in_channels - 1}, got {list(permutation)}.")
        self.in_channels = in_channels
        self.permutation = jnp.asarray(permutation, jnp.int32)

    def forward(self, x, cond=None):
        check_layout("Permute", x, self.in_channels, (0, 1, 2, 3))
        return x[:, self.permutation], batch_logdet(0.0, x)

    def inverse_and_log_det(self, y, cond=None):
        check_layout("Permute", y, self.in_channels, (0, 1, 2, 3))
        return y[:, jnp.argsort(self.permutation)], batch_logdet(0.0, y)
