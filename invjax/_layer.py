"""The layer contract every invertible block of invjax satisfies.

A layer maps a batch ``x`` of shape ``(B, C, *spatial)`` to ``y`` of a shape fixed by
the layer (the same for most layers; a squeeze trades space for channels), together with
``log|det dy/dx|`` per sample, shape ``(B,)``. Besides ``forward`` and its inverse, a
layer knows its *backward*: given only its output and the output's cotangent, it
reconstructs its input and returns the cotangents of input, parameters and condition.
That is all the engine (:mod:`invjax._engine`) needs to differentiate a whole network
without storing activations. The mirror image, ``inverse_backward``, serves gradients
through the inverse direction; ``initialize`` and ``initialize_inverse`` are the
data-dependent initialisation (ActNorm) in either direction.

Every method is abstract here: a layer, and above all a combinator of layers, cannot
forget one (the abstract/final rule of :mod:`invjax._strict`). Layers without sub-layers
and without data-dependent parameters subclass :class:`AbstractBasicLayer`, which
provides the backward passes by reconstruct-then-VJP and an initialisation that changes
nothing.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
from jaxtyping import Array, Float

from ._strict import AbstractStrictModule

Cotangents = tuple  # (x or y, its cotangent, layer cotangent, cond cotangent)


class AbstractLayer(AbstractStrictModule):
    """An invertible layer: ``forward``, its inverse, both backward passes, both initialisations."""

    @abc.abstractmethod
    def forward(self, x: Float[Array, "B ..."], cond=None) -> tuple[Array, Float[Array, " B"]]:
        """Map ``x`` to ``(y, logdet)``, ``logdet = log|det dy/dx|`` per sample."""

    @abc.abstractmethod
    def inverse_and_log_det(self, y: Float[Array, "B ..."], cond=None) -> tuple[Array, Array]:
        """Map ``y`` back to ``(x, log|det dx/dy|)``; the log-determinant is ``-logdet``."""

    @abc.abstractmethod
    def backward(self, y, dy, dlogdet, cond=None) -> Cotangents:
        """Reconstruct the input from the output and pull cotangents back through ``forward``.

        Args:
            y: the layer's output, ``(B, ...)``.
            dy: cotangent of ``y``.
            dlogdet: cotangent of the log-determinant, ``(B,)``.
            cond: the condition or ``None``.

        Returns:
            ``(x, dx, dlayer, dcond)``: the reconstructed input, its cotangent, the
            cotangent of this layer (a pytree like ``self``, ``None`` where a leaf is
            not a floating array) and of ``cond``.
        """

    @abc.abstractmethod
    def inverse_backward(self, x, dx, dlogdet, cond=None) -> Cotangents:
        """The mirror of :meth:`backward` for the inverse map: rebuild ``y`` from ``x``,
        then pull ``(dx, dlogdet)`` back through ``inverse_and_log_det``."""

    @abc.abstractmethod
    def initialize(self, x, cond=None) -> tuple[AbstractLayer, Array]:
        """Data-dependent initialisation on a batch ``x``; returns ``(new_layer, y)``."""

    @abc.abstractmethod
    def initialize_inverse(self, y, cond=None) -> tuple[AbstractLayer, Array]:
        """Data-dependent initialisation for the inverse direction (the layer run by
        ``Invert``): on a batch ``y`` of outputs; returns ``(new_layer, x)``."""

    def inverse(self, y: Float[Array, "B ..."], cond=None) -> Array:
        """Map ``y`` back to ``x``."""
        return self.inverse_and_log_det(y, cond)[0]


def reconstruct_backward(layer: AbstractLayer, y, dy, dlogdet, cond) -> Cotangents:
    """The generic backward: invert, then take the VJP of ``forward`` at the input."""
    x = layer.inverse(y, cond)
    return (x, *_pullback(type(layer).forward, layer, x, cond, (dy, dlogdet)))


def rebuild_inverse_backward(layer: AbstractLayer, x, dx, dlogdet, cond) -> Cotangents:
    """The generic inverse backward: run forward, then take the VJP of the inverse."""
    y, _ = layer.forward(x, cond)
    return (y, *_pullback(type(layer).inverse_and_log_det, layer, y, cond, (dx, dlogdet)))


class AbstractBasicLayer(AbstractLayer):
    """A layer without sub-layers and without data-dependent parameters.

    Subclasses implement :meth:`forward` and :meth:`inverse_and_log_det`; the backward
    passes reconstruct, then take one VJP, and initialisation changes nothing.
    """

    def backward(self, y, dy, dlogdet, cond=None):
        return reconstruct_backward(self, y, dy, dlogdet, cond)

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        return rebuild_inverse_backward(self, x, dx, dlogdet, cond)

    def initialize(self, x, cond=None):
        return self, self.forward(x, cond)[0]

    def initialize_inverse(self, y, cond=None):
        return self, self.inverse(y, cond)


def _pullback(method, layer, inp, cond, cotangent):
    """VJP of ``method(layer, inp, cond)`` at ``cotangent``: ``(dinp, dlayer, dcond)``."""
    _, vjp = eqx.filter_vjp(method, layer, inp, cond)
    dlayer, dinp, dcond = vjp(cotangent)
    return dinp, dlayer, dcond


def add_cotangents(a, b):
    """Sum two cotangent pytrees where either may be ``None`` (no condition)."""
    if a is None:
        return b
    if b is None:
        return a
    return jax.tree.map(lambda u, v: u + v, a, b)
