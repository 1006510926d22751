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

    def _order(self, reverse: bool):
        return reversed(range(len(self.layers))) if reverse else range(len(self.layers))

    def _run(self, apply, v, reverse):
        total = 0.0
        for i in self._order(reverse):
            v, logdet = apply(self.layers[i], v)
            total = total + logdet
        return v, total

    def forward(self, x, cond=None):
        return self._run(lambda layer, v: layer.forward(v, cond), x, reverse=False)

    def inverse_and_log_det(self, y, cond=None):
        return self._run(lambda layer, v: layer.inverse_and_log_det(v, cond), y, reverse=True)

    def _walk(self, pull, value, dvalue, reverse):
        # Every layer sees the same dlogdet: the total is the sum of the layers' terms.
        dlayers, dcond = [None] * len(self.layers), None
        for i in self._order(reverse):
            value, dvalue, dlayers[i], dc = pull(self.layers[i], value, dvalue)
            dcond = add_cotangents(dcond, dc)
        return value, dvalue, eqx.tree_at(lambda c: c.layers, self, tuple(dlayers)), dcond

    def backward(self, y, dy, dlogdet, cond=None):
        return self._walk(lambda layer, v, dv: layer.backward(v, dv, dlogdet, cond), y, dy, reverse=True)

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        return self._walk(lambda layer, v, dv: layer.inverse_backward(v, dv, dlogdet, cond), x, dx, reverse=False)

    def _initialized(self, init, v, reverse):
        new = list(self.layers)
        for i in self._order(reverse):
            new[i], v = init(self.layers[i], v)
        return Chain(new), v

    def initialize(self, x, cond=None):
        return self._initialized(lambda layer, v: layer.initialize(v, cond), x, reverse=False)

    def initialize_inverse(self, y, cond=None):
        return self._initialized(lambda layer, v: layer.initialize_inverse(v, cond), y, reverse=True)
