"""The layer contract every invertible block of invjax satisfies.

A layer maps a batch ``x`` of shape ``(B, C, *spatial)`` to ``y`` of a shape fixed by
the layer (the same for most layers; a squeeze trades space for channels), together with
``log|det dy/dx|`` per sample, shape ``(B,)``. Besides ``forward`` and its inverse, a
layer knows its *backward*: given only its output and the output's cotangent, it
reconstructs its input and returns the cotangents of input, parameters and condition.
That is all the engine (:mod:`invjax._engine`) needs to differentiate a whole network
without storing activations. The default backward inverts, then takes the VJP of
``forward``; layers override it when they can share work between the two (couplings).
The mirror image, ``inverse_backward``, serves gradients through the inverse direction.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
from jaxtyping import Array, Float

Cotangents = tuple  # (x or y, its cotangent, layer cotangent, cond cotangent)


class AbstractLayer(eqx.Module):
    """An invertible layer.

    Subclasses implement :meth:`forward` and :meth:`inverse_and_log_det`; the
    backward passes default to reconstruct-then-VJP.
    """

    @abc.abstractmethod
    def forward(self, x: Float[Array, "B ..."], cond=None) -> tuple[Array, Float[Array, " B"]]:
        """Map ``x`` to ``(y, logdet)``, ``logdet = log|det dy/dx|`` per sample."""

    @abc.abstractmethod
    def inverse_and_log_det(self, y: Float[Array, "B ..."], cond=None) -> tuple[Array, Array]:
        """Map ``y`` back to ``(x, log|det dx/dy|)``; the log-determinant is ``-logdet``."""

    def inverse(self, y: Float[Array, "B ..."], cond=None) -> Array:
        """Map ``y`` back to ``x``."""
        return self.inverse_and_log_det(y, cond)[0]

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
        x = self.inverse(y, cond)
        return (x, *_pullback(type(self).forward, self, x, cond, (dy, dlogdet)))

    def inverse_backward(self, x, dx, dlogdet, cond=None) -> Cotangents:
        """The mirror of :meth:`backward` for the inverse map: rebuild ``y`` from ``x``
        by running forward, then pull ``(dx, dlogdet)`` back through the inverse."""
        y, _ = self.forward(x, cond)
        return (y, *_pullback(type(self).inverse_and_log_det, self, y, cond, (dx, dlogdet)))

    def initialize(self, x, cond=None) -> tuple[AbstractLayer, Array]:
        """Data-dependent initialisation on a batch; returns ``(new_layer, y)``.

        Layers without data-dependent parameters return themselves unchanged.
        """
        y, _ = self.forward(x, cond)
        return self, y


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
