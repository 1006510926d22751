"""Conjugate: ``outer^-1 o inner o outer``, one set of parameters for both uses of ``outer``."""

from __future__ import annotations

import equinox as eqx

from .._layer import AbstractLayer, add_cotangents
from ._chain import Chain
from ._invert import Invert


class Conjugate(AbstractLayer):
    """Run ``inner`` in the frame of ``outer``: ``y = outer^-1(inner(outer(x)))``.

    HINT's ``permute="both"`` is this with ``outer`` a 1x1 convolution. ``outer`` appears
    twice but is one set of parameters; its cotangent sums both uses. (A ``Chain`` of
    ``outer``, ``inner`` and ``Invert(outer)`` would hold two copies that an optimizer
    would let drift apart.)

    Shapes: those of ``inner``, which must keep the shape ``outer`` produces.
    """

    outer: AbstractLayer
    inner: AbstractLayer

    def _chain(self):
        return Chain([self.outer, self.inner, Invert(self.outer)])

    def forward(self, x, cond=None):
        return self._chain().forward(x, cond)

    def inverse_and_log_det(self, y, cond=None):
        return self._chain().inverse_and_log_det(y, cond)

    def _fold(self, result):
        value, dvalue, dchain, dcond = result
        first, inner, last = dchain.layers
        douter = add_cotangents(first, last.layer)
        return value, dvalue, eqx.tree_at(lambda c: (c.outer, c.inner), self, (douter, inner)), dcond

    def backward(self, y, dy, dlogdet, cond=None):
        return self._fold(self._chain().backward(y, dy, dlogdet, cond))

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        return self._fold(self._chain().inverse_backward(x, dx, dlogdet, cond))

    # ``outer`` is initialised once, on the data it sees first in that direction; its
    # second use is its inverse, which then undoes it exactly.
    def initialize(self, x, cond=None):
        outer, v = self.outer.initialize(x, cond)
        inner, v = self.inner.initialize(v, cond)
        return Conjugate(outer, inner), outer.inverse(v, cond)

    def initialize_inverse(self, y, cond=None):
        outer, v = self.outer.initialize(y, cond)
        inner, v = self.inner.initialize_inverse(v, cond)
        return Conjugate(outer, inner), outer.inverse(v, cond)
