"""Invertible 1x1 convolutions: Householder (InvertibleNetworks.jl's) and LU (Glow's)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import jax.scipy.linalg as jsl
from jaxtyping import Array, Float, Int

from .._checks import check_layout
from .._layer import AbstractBasicLayer
from ._triangular import lower_triangular_inverse, upper_triangular_inverse
from ._util import batch_logdet, mix_channels, spatial_size


def _check(name, x, channels):
    check_layout(name, x, channels, (0, 1, 2, 3))


class Conv1x1(AbstractBasicLayer):
    """Orthogonal channel mixing ``y = W x``, ``W`` a product of Householder reflections.

    ``W = H_1 ... H_k`` with ``H_i = I - 2 v_i v_i^T / |v_i|^2`` (InvertibleNetworks.jl
    uses ``k = 3``). ``W`` is orthogonal, so the inverse is ``W^T`` and ``logdet = 0``:
    exact to round-off in any depth.

    Args:
        in_channels: ``C``.
        key: PRNG key for the random initial vectors.
        reflections: ``k``, the number of Householder vectors.

    Shapes: ``(B, C, *spatial)`` -> same, spatial of 0 to 3 axes.
    """

    vectors: Float[Array, "k C"]
    in_channels: int = eqx.field(static=True)

    def __init__(self, in_channels: int, *, key, reflections: int = 3):
        if in_channels < 1 or reflections < 1:
            raise ValueError(
                f"Conv1x1 needs in_channels >= 1 and reflections >= 1, got {in_channels}, {reflections}."
            )
        self.in_channels = in_channels
        self.vectors = jr.normal(key, (reflections, in_channels))

    def matrix(self) -> Float[Array, "C C"]:
        """The orthogonal matrix ``W``."""
        w = jnp.eye(self.in_channels, dtype=self.vectors.dtype)
        for v in self.vectors:
            # W H = W - 2 (W v) v^T / |v|^2; a guard keeps a zero vector from making NaNs.
            w = w - 2.0 * jnp.outer(w @ v, v) / jnp.maximum(v @ v, 1e-12)
        return w

    def forward(self, x, cond=None):
        _check("Conv1x1", x, self.in_channels)
        return mix_channels(self.matrix(), x), batch_logdet(0.0, x)

    def inverse_and_log_det(self, y, cond=None):
        _check("Conv1x1", y, self.in_channels)
        return mix_channels(self.matrix().T, y), batch_logdet(0.0, y)


class Conv1x1LU(AbstractBasicLayer):
    """Glow's LU-parameterised channel mixing ``W = P L (U + diag(sign * exp(log_scale)))``.

    ``P`` (a permutation) and ``sign`` are fixed integer arrays; ``L`` is unit lower
    triangular, ``U`` strictly upper triangular. Initialised from a random rotation.

    Args:
        in_channels: ``C``.
        key: PRNG key for the initial rotation.

    Shapes: ``(B, C, *spatial)`` -> same. logdet: ``H*W*sum(log_scale)``.
    """

    lower: Float[Array, "C C"]
    upper: Float[Array, "C C"]
    log_scale: Float[Array, " C"]
    permutation: Int[Array, " C"]
    sign: Int[Array, " C"]
    in_channels: int = eqx.field(static=True)

    def __init__(self, in_channels: int, *, key):
        if in_channels < 1:
            raise ValueError(f"Conv1x1LU needs in_channels >= 1, got {in_channels}.")
        self.in_channels = in_channels
        q, _ = jnp.linalg.qr(jr.normal(key, (in_channels, in_channels)))
        p, lower, upper = jsl.lu(q)
        diag = jnp.diag(upper)
        self.permutation = jnp.argmax(p, axis=1).astype(jnp.int32)
        self.sign = jnp.sign(diag).astype(jnp.int32)
        self.log_scale = jnp.log(jnp.abs(diag))
        self.lower = jnp.tril(lower, -1)
        self.upper = jnp.triu(upper, 1)

    def _factors(self):
        eye = jnp.eye(self.in_channels, dtype=self.lower.dtype)
        lower = jnp.tril(self.lower, -1) + eye
        diag = self.sign.astype(self.log_scale.dtype) * jnp.exp(self.log_scale)
        upper = jnp.triu(self.upper, 1) + jnp.diag(diag)
        return lower, upper

    def matrix(self) -> Float[Array, "C C"]:
        """The matrix ``W``."""
        lower, upper = self._factors()
        return (lower @ upper)[self.permutation]

    def inverse_matrix(self) -> Float[Array, "C C"]:
        """``W^{-1} = U^{-1} L^{-1} P^T`` from the triangular factors' inverses."""
        lower, upper = self._factors()
        return (upper_triangular_inverse(upper) @ lower_triangular_inverse(lower))[:, self.permutation]

    def _logdet(self, x):
        return batch_logdet(jnp.sum(self.log_scale) * spatial_size(x), x)

    def forward(self, x, cond=None):
        _check("Conv1x1LU", x, self.in_channels)
        return mix_channels(self.matrix(), x), self._logdet(x)

    def inverse_and_log_det(self, y, cond=None):
        _check("Conv1x1LU", y, self.in_channels)
        return mix_channels(self.inverse_matrix(), y), -self._logdet(y)

