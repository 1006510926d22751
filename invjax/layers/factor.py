"""FactorOut: the split of a multiscale flow."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._layer import AbstractLayer


class FactorOut(AbstractLayer):
    """Apply ``inner`` to the first ``channels`` channels; pass the rest through.

    This is the multiscale split of Glow and RealNVP written as a layer: the passed-through
    half is the part "factored out" to the latent, and it stays in the output at its place,
    so the output has the input's shape and the backward can start from it alone.

    Args:
        inner: the layer (often the rest of the network) for the kept channels.
        channels: how many leading channels ``inner`` receives.

    Shapes: ``x``: ``(B, C, *spatial)`` with ``C > channels`` -> same shape.
    """

    inner: AbstractLayer
    channels: int = eqx.field(static=True)

    def _split(self, v):
        if v.ndim < 2 or v.shape[1] <= self.channels:
            raise ValueError(
                f"FactorOut: expected more than {self.channels} channels, got shape {v.shape}."
            )
        return v[:, : self.channels], v[:, self.channels :]

    def forward(self, x, cond=None):
        kept, out = self._split(x)
        kept, logdet = self.inner.forward(kept, cond)
        return jnp.concatenate([kept, out], axis=1), logdet

    def inverse_and_log_det(self, y, cond=None):
        kept, out = self._split(y)
        kept, logdet = self.inner.inverse_and_log_det(kept, cond)
        return jnp.concatenate([kept, out], axis=1), logdet

    def _walk(self, method, value, dvalue, dlogdet, cond):
        kept, out = self._split(value)
        dkept, dout = self._split(dvalue)
        kept, dkept, dinner, dcond = getattr(self.inner, method)(kept, dkept, dlogdet, cond)
        value = jnp.concatenate([kept, out], axis=1)
        dvalue = jnp.concatenate([dkept, dout], axis=1)
        return value, dvalue, eqx.tree_at(lambda f: f.inner, self, dinner), dcond

    def backward(self, y, dy, dlogdet, cond=None):
        return self._walk("backward", y, dy, dlogdet, cond)

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        return self._walk("inverse_backward", x, dx, dlogdet, cond)

    def initialize(self, x, cond=None):
        kept, out = self._split(x)
        inner, kept = self.inner.initialize(kept, cond)
        return FactorOut(inner, self.channels), jnp.concatenate([kept, out], axis=1)
