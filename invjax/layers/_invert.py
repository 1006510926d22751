"""Invert: a layer run backwards (e.g. an unsqueeze from a squeeze)."""

from __future__ import annotations

import equinox as eqx

from .._layer import AbstractLayer


class Invert(AbstractLayer):
    """The inverse of ``layer`` as a layer: ``forward`` is ``layer``'s inverse.

    Every method maps to its mirror: the backward is ``layer``'s inverse backward (so an
    inverted composite still reconstructs instead of storing), and ``initialize`` is
    ``layer``'s ``initialize_inverse`` (an inverted ActNorm standardises its output).
    """

    layer: AbstractLayer

    def forward(self, x, cond=None):
        return self.layer.inverse_and_log_det(x, cond)

    def inverse_and_log_det(self, y, cond=None):
        return self.layer.forward(y, cond)

    def _wrap(self, result):
        value, dvalue, dlayer, dcond = result
        return value, dvalue, eqx.tree_at(lambda i: i.layer, self, dlayer), dcond

    def backward(self, y, dy, dlogdet, cond=None):
        return self._wrap(self.layer.inverse_backward(y, dy, dlogdet, cond))

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        return self._wrap(self.layer.backward(x, dx, dlogdet, cond))

    def initialize(self, x, cond=None):
        layer, y = self.layer.initialize_inverse(x, cond)
        return Invert(layer), y

    def initialize_inverse(self, y, cond=None):
        layer, x = self.layer.initialize(y, cond)
        return Invert(layer), x
