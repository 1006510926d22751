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

    def _with(self, inner):
        return eqx.tree_at(lambda m: m.inner, self, inner)

    def forward(self, x, cond=None):
        return self.inner.forward(x, self._map(cond))

    def inverse_and_log_det(self, y, cond=None):
        return self.inner.inverse_and_log_det(y, self._map(cond))

    def _walk(self, pull, cond):
        if cond is None:
            mapped, pull_cond = None, None
        else:
            mapped, pull_cond = jax.vjp(self.fn, cond)
        value, dvalue, dinner, dmapped = pull(self.inner, mapped)
        dcond = None if pull_cond is None or dmapped is None else pull_cond(dmapped)[0]
        return value, dvalue, self._with(dinner), dcond

    def backward(self, y, dy, dlogdet, cond=None):
        return self._walk(lambda inner, c: inner.backward(y, dy, dlogdet, c), cond)

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        return self._walk(lambda inner, c: inner.inverse_backward(x, dx, dlogdet, c), cond)

    def initialize(self, x, cond=None):
        inner, y = self.inner.initialize(x, self._map(cond))
        return self._with(inner), y

    def initialize_inverse(self, y, cond=None):
        inner, x = self.inner.initialize_inverse(y, self._map(cond))
        return self._with(inner), x
