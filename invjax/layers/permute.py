"""A fixed random permutation of channels (or of the features of vectors)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Int

from .._checks import check_layout
from .._layer import AbstractLayer
from ._util import batch_logdet


class Permute(AbstractLayer):
    """``y[:, i] = x[:, permutation[i]]``, a fixed random permutation; logdet 0.

    Args:
        channels: ``C``, the size of axis 1 (the features of a vector).
        key: PRNG key drawing the permutation. The permutation is an integer array, so
            gradients and optimizers leave it alone.

    Shapes: ``(B, C, *spatial)`` -> same.
    """

    permutation: Int[Array, " C"]
    channels: int = eqx.field(static=True)

    def __init__(self, channels: int, *, key):
        self.channels = channels
        self.permutation = jr.permutation(key, channels).astype(jnp.int32)

    def forward(self, x, cond=None):
        check_layout("Permute", x, self.channels, (0, 1, 2, 3))
        return x[:, self.permutation], batch_logdet(0.0, x)

    def inverse_and_log_det(self, y, cond=None):
        check_layout("Permute", y, self.channels, (0, 1, 2, 3))
        return y[:, jnp.argsort(self.permutation)], batch_logdet(0.0, y)
