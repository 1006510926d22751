"""Chain: layers applied one after another."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx

from .._layer import AbstractLayer, add_cotangents


class Chain(AbstractLayer):
    """Composition ``layers[-1] o ... o layers[0]``; log-determinants add up.

    Args:
        layers: a non-empty sequence of layers.

    Shapes: whatever the layers do in turn.
    """

    layers: tuple[AbstractLayer, ...]

    def __init__(self, layers: Sequence[AbstractLayer]):
        layers = tuple(layers)
        if not layers:
            raise ValueError("Chain needs at least one layer, got none.")
        for layer in layers:
            if not isinstance(layer, AbstractLayer):
                raise ValueError(f"Chain takes invjax layers, got {type(layer).__name__}.")
        self.layers = layers

    def forward(self, x, cond=None):
        total = 0.0
        for layer in self.layers:
            x, logdet = layer.forward(x, cond)
            total = total + logdet
        return x, total

    def inverse_and_log_det(self, y, cond=None):
        total = 0.0
        for layer in reversed(self.layers):
            y, logdet = layer.inverse_and_log_det(y, cond)
            total = total + logdet
        return y, total

    def _walk(self, order, method, value, dvalue, dlogdet, cond):
        # Every layer sees the same dlogdet: the total is the sum of the layers' terms.
        dlayers, dcond = [None] * len(self.layers), None
        for i in order:
            value, dvalue, dlayers[i], dc = getattr(self.layers[i], method)(value, dvalue, dlogdet, cond)
            dcond = add_cotangents(dcond, dc)
        return value, dvalue, eqx.tree_at(lambda c: c.layers, self, tuple(dlayers)), dcond

    def backward(self, y, dy, dlogdet, cond=None):
        order = reversed(range(len(self.layers)))
        return self._walk(order, "backward", y, dy, dlogdet, cond)

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        order = range(len(self.layers))
        return self._walk(order, "inverse_backward", x, dx, dlogdet, cond)

    def initialize(self, x, cond=None):
        new = []
        for layer in self.layers:
            layer, x = layer.initialize(x, cond)
            new.append(layer)
        return Chain(new), x
