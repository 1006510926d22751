"""Lane: tag a layer as part of one lane of a two-lane (joint ``(x, y)``) network."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._layer import AbstractLayer
from ._util import batch_logdet


class Lane(AbstractLayer):
    """``inner``, tagged with the lane it belongs to, and two switches a network can flip.

    The conditional HINT runs ``x`` and ``y`` through one joint body. The density of ``x``
    given ``y`` needs the body's log-determinant without the ``y`` lane's terms, and the
    latent ``z_y`` of an observed ``y`` needs the ``y`` lane alone. Both are the same body
    with these static switches set (:func:`set_lanes`), so the parameters stay shared.

    Args:
        inner: the layer (``None`` once switched off by :func:`set_lanes`).
        lane: its lane's name (``"x"`` or ``"y"``).
        active: if ``False`` the layer is the identity.
        counts: if ``False`` the layer's log-determinant is left out (reported as 0).
    """

    inner: AbstractLayer | None
    lane: str = eqx.field(static=True)
    active: bool = eqx.field(static=True, default=True)
    counts: bool = eqx.field(static=True, default=True)

    def _apply(self, method, v, cond):
        if not self.active:
            return v, batch_logdet(0.0, v)
        v, logdet = getattr(self.inner, method)(v, cond)
        return v, logdet if self.counts else jnp.zeros_like(logdet)

    def forward(self, x, cond=None):
        return self._apply("forward", x, cond)

    def inverse_and_log_det(self, y, cond=None):
        return self._apply("inverse_and_log_det", y, cond)

    def _walk(self, method, value, dvalue, dlogdet, cond):
        if not self.active:
            return value, dvalue, self, None  # no parameters: the cotangent is empty
        if not self.counts:
            dlogdet = jnp.zeros_like(dlogdet)
        value, dvalue, dinner, dcond = getattr(self.inner, method)(value, dvalue, dlogdet, cond)
        return value, dvalue, eqx.tree_at(lambda s: s.inner, self, dinner), dcond

    def backward(self, y, dy, dlogdet, cond=None):
        return self._walk("backward", y, dy, dlogdet, cond)

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        return self._walk("inverse_backward", x, dx, dlogdet, cond)

    def initialize(self, x, cond=None):
        if not self.active:
            return self, x
        inner, y = self.inner.initialize(x, cond)
        return eqx.tree_at(lambda s: s.inner, self, inner), y


def set_lanes(body, lane: str, *, active: bool | None = None, counts: bool | None = None):
    """A copy of ``body`` whose :class:`Lane` layers of ``lane`` have the given switches.

    The copy shares every parameter array with ``body``, except that a switched-off lane
    drops its layers, so a gradient through the copy has no (zero) entries for them.
    """

    def update(node):
        if isinstance(node, Lane) and node.lane == lane:
            on = node.active if active is None else active
            return Lane(node.inner if on else None, node.lane, on, node.counts if counts is None else counts)
        return node

    return jax.tree.map(update, body, is_leaf=lambda n: isinstance(n, Lane))
