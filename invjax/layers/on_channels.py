"""OnChannels: run a layer on a slice of the channels; FactorOut, the multiscale split."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._layer import AbstractLayer


class OnChannels(AbstractLayer):
    """Apply ``inner`` to channels ``start:stop``; pass the other channels through.

    The building block of recursive and two-lane networks (HINT's halves, the ``x`` and
    ``y`` lanes of a conditional HINT) and of the multiscale split. ``inner`` must keep
    its slice's shape.

    Args:
        inner: the layer for channels ``start:stop``.
        start: first channel of the slice, ``0 <= start < stop``.
        stop: one past its last channel.

    Shapes: ``(B, C, *spatial)`` with ``C >= stop`` -> same shape.
    """

    inner: AbstractLayer
    start: int = eqx.field(static=True)
    stop: int = eqx.field(static=True)

    def __init__(self, inner: AbstractLayer, start: int, stop: int):
        if not 0 <= start < stop:
            raise ValueError(f"OnChannels needs 0 <= start < stop, got start={start}, stop={stop}.")
        self.inner, self.start, self.stop = inner, start, stop

    def _split(self, v):
        if v.ndim < 2 or v.shape[1] < self.stop:
            raise ValueError(
                f"{type(self).__name__}: expected at least {self.stop} channels (acting on channels "
                f"{self.start}:{self.stop}), got shape {tuple(v.shape)}."
            )
        return v[:, : self.start], v[:, self.start : self.stop], v[:, self.stop :]

    def _apply(self, method, v, cond):
        before, mid, after = self._split(v)
        mid, logdet = getattr(self.inner, method)(mid, cond)
        return jnp.concatenate([before, mid, after], axis=1), logdet

    def forward(self, x, cond=None):
        return self._apply("forward", x, cond)

    def inverse_and_log_det(self, y, cond=None):
        return self._apply("inverse_and_log_det", y, cond)

    def _walk(self, method, value, dvalue, dlogdet, cond):
        before, mid, after = self._split(value)
        dbefore, dmid, dafter = self._split(dvalue)
        mid, dmid, dinner, dcond = getattr(self.inner, method)(mid, dmid, dlogdet, cond)
        value = jnp.concatenate([before, mid, after], axis=1)
        dvalue = jnp.concatenate([dbefore, dmid, dafter], axis=1)
        return value, dvalue, eqx.tree_at(lambda f: f.inner, self, dinner), dcond

    def backward(self, y, dy, dlogdet, cond=None):
        return self._walk("backward", y, dy, dlogdet, cond)

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        return self._walk("inverse_backward", x, dx, dlogdet, cond)

    def initialize(self, x, cond=None):
        before, mid, after = self._split(x)
        inner, mid = self.inner.initialize(mid, cond)
        return eqx.tree_at(lambda f: f.inner, self, inner), jnp.concatenate([before, mid, after], axis=1)


def FactorOut(inner: AbstractLayer, channels: int) -> OnChannels:
    """The multiscale split of Glow and RealNVP: ``inner`` gets the first ``channels``.

    The other channels are "factored out" to the latent: they stay in the output at their
    place, so the output has the input's shape and the backward can start from it alone.
    """
    return OnChannels(inner, 0, channels)
