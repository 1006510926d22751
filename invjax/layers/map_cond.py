"""MapCond: hand an inner layer a fixed transform of the condition."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax

from .._layer import AbstractLayer


class MapCond(AbstractLayer):
    """Run ``inner`` with ``fn(cond)`` in place of ``cond``.

    ``fn`` is a fixed, parameter-free map (e.g. the space-to-depth squeeze that brings a
    feature-map condition to a multiscale level's resolution). Its VJP carries the
    condition's cotangent back, so gradients still reach whatever produced ``cond``.
    """

    inner: AbstractLayer
    fn: Callable = eqx.field(static=True)

    def _map(self, cond):
        return None if cond is None else self.fn(cond)

    def forward(self, x, cond=None):
        return self.inner.forward(x, self._map(cond))

    def inverse_and_log_det(self, y, cond=None):
        return self.inner.inverse_and_log_det(y, self._map(cond))

    def _walk(self, method, value, dvalue, dlogdet, cond):
        if cond is None:
            mapped, pull = None, None
        else:
            mapped, pull = jax.vjp(self.fn, cond)
        value, dvalue, dinner, dmapped = getattr(self.inner, method)(value, dvalue, dlogdet, mapped)
        dcond = None if pull is None or dmapped is None else pull(dmapped)[0]
        return value, dvalue, eqx.tree_at(lambda m: m.inner, self, dinner), dcond

    def backward(self, y, dy, dlogdet, cond=None):
        return self._walk("backward", y, dy, dlogdet, cond)

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        return self._walk("inverse_backward", x, dx, dlogdet, cond)

    def initialize(self, x, cond=None):
        inner, y = self.inner.initialize(x, self._map(cond))
        return MapCond(inner, self.fn), y
