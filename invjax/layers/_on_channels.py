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
                f"OnChannels: expected at least {self.stop} channels (acting on channels "
                f"{self.start}:{self.stop}), got shape {tuple(v.shape)}."
            )
        return v[:, : self.start], v[:, self.start : self.stop], v[:, self.stop :]

    def _join(self, parts):
        return jnp.concatenate(parts, axis=1)

    def _apply(self, apply, v):
        before, mid, after = self._split(v)
        mid, logdet = apply(self.inner, mid)
        return self._join([before, mid, after]), logdet

    def forward(self, x, cond=None):
        return self._apply(lambda inner, v: inner.forward(v, cond), x)

    def inverse_and_log_det(self, y, cond=None):
        return self._apply(lambda inner, v: inner.inverse_and_log_det(v, cond), y)

    def _walk(self, pull, value, dvalue):
        before, mid, after = self._split(value)
        dbefore, dmid, dafter = self._split(dvalue)
        mid, dmid, dinner, dcond = pull(self.inner, mid, dmid)
        inner = eqx.tree_at(lambda f: f.inner, self, dinner)
        return self._join([before, mid, after]), self._join([dbefore, dmid, dafter]), inner, dcond

    def backward(self, y, dy, dlogdet, cond=None):
        return self._walk(lambda inner, v, dv: inner.backward(v, dv, dlogdet, cond), y, dy)

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        return self._walk(lambda inner, v, dv: inner.inverse_backward(v, dv, dlogdet, cond), x, dx)

    def _initialized(self, init, v):
        before, mid, after = self._split(v)
        inner, mid = init(self.inner, mid)
        return eqx.tree_at(lambda f: f.inner, self, inner), self._join([before, mid, after])

    def initialize(self, x, cond=None):
        return self._initialized(lambda inner, v: inner.initialize(v, cond), x)

    def initialize_inverse(self, y, cond=None):
        return self._initialized(lambda inner, v: inner.initialize_inverse(v, cond), y)


def FactorOut(inner: AbstractLayer, kept: int) -> OnChannels:
    """The multiscale split of Glow and RealNVP: ``inner`` gets the first ``kept`` channels.

    The other channels are "factored out" to the latent: they stay in the output at their
    place, so the output has the input's shape and the backward can start from it alone.
    """
    return OnChannels(inner, 0, kept)
