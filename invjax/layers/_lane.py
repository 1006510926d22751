"""Lane: tag a layer as part of one lane of a two-lane (joint ``(x, y)``) network.

An internal of the conditional HINT step (:mod:`invjax.layers._conditional_hint`) and the joint
flows (:mod:`invjax.nets._conditional_hint`), not a public layer.
"""

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

    def _with(self, inner):
        return eqx.tree_at(lambda s: s.inner, self, inner)

    def _apply(self, apply, v):
        if not self.active:
            return v, batch_logdet(0.0, v)
        v, logdet = apply(self.inner, v)
        return v, logdet if self.counts else jnp.zeros_like(logdet)

    def forward(self, x, cond=None):
        return self._apply(lambda inner, v: inner.forward(v, cond), x)

    def inverse_and_log_det(self, y, cond=None):
        return self._apply(lambda inner, v: inner.inverse_and_log_det(v, cond), y)

    def _walk(self, pull, value, dvalue, dlogdet):
        if not self.active:
            return value, dvalue, self, None  # no parameters: the cotangent is empty
        if not self.counts:
            dlogdet = jnp.zeros_like(dlogdet)
        value, dvalue, dinner, dcond = pull(self.inner, dlogdet)
        return value, dvalue, self._with(dinner), dcond

    def backward(self, y, dy, dlogdet, cond=None):
        return self._walk(lambda inner, dl: inner.backward(y, dy, dl, cond), y, dy, dlogdet)

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        return self._walk(lambda inner, dl: inner.inverse_backward(x, dx, dl, cond), x, dx, dlogdet)

    def initialize(self, x, cond=None):
        if not self.active:
            return self, x
        inner, y = self.inner.initialize(x, cond)
        return self._with(inner), y

    def initialize_inverse(self, y, cond=None):
        if not self.active:
            return self, y
        inner, x = self.inner.initialize_inverse(y, cond)
        return self._with(inner), x


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
