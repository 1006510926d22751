"""An elementwise affine map with a learned scale and bias per element: InvertibleNetworks.jl's ``AffineLayer``."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._layer import AbstractBasicLayer


class ElementwiseAffine(AbstractBasicLayer):
    """``y = exp(log_scale) * x + bias``, one scale and one bias per element of a sample.

    InvertibleNetworks.jl's ``AffineLayer(nx, ny, nc)``, parameterised by the log of the
    scale (positive, so always invertible) and starting as the identity; InvertibleNetworks.jl
    draws ``s`` at random (Glorot) and divides by it in the inverse. Unlike
    :class:`ActNorm` (one scale per channel, set from data) every element has its own.

    Args:
        shape: the shape of one sample, ``(C, *spatial)`` (or ``(C,)`` for vectors).

    Shapes: ``(B, *shape)`` -> same. logdet: ``sum(log_scale)``, the same for every sample.
    """

    log_scale: Float[Array, "..."]
    bias: Float[Array, "..."]
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, shape: tuple[int, ...]):
        shape = tuple(shape)
        if not shape or any(not isinstance(n, int) or n < 1 for n in shape):
            raise ValueError(f"ElementwiseAffine: shape must be the positive sizes of one sample, got {shape!r}.")
        self.shape = shape
        self.log_scale, self.bias = jnp.zeros(shape), jnp.zeros(shape)

    def _check(self, v):
        if v.ndim != len(self.shape) + 1 or v.shape[1:] != self.shape:
            expected = ", ".join(map(str, self.shape))
            raise ValueError(f"ElementwiseAffine: expected x of shape (B, {expected}); got shape {tuple(v.shape)}.")

    def _log_det(self, v):
        return jnp.broadcast_to(jnp.sum(self.log_scale), v.shape[:1]).astype(v.dtype)

    def forward(self, x, cond=None):
        self._check(x)
        return x * jnp.exp(self.log_scale) + self.bias, self._log_det(x)

    def inverse_and_log_det(self, y, cond=None):
        self._check(y)
        return (y - self.bias) * jnp.exp(-self.log_scale), -self._log_det(y)
