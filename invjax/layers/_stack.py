"""Stack: ``depth`` layers of one structure, parameters stacked, run by ``lax.scan``.

Building the layers with ``eqx.filter_vmap`` over keys and running them with a scan
keeps compile time independent of depth; the engine's backward is a reverse scan whose
carry is ``(y, dy, dcond)``, so memory is independent of depth too.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax import lax

from .._layer import AbstractLayer, add_cotangents


class Stack(AbstractLayer):
    """``depth`` layers built by ``make_layer(key)``, applied in order.

    Args:
        make_layer: ``key -> layer``; called once per layer under ``eqx.filter_vmap``,
            so its hyper-parameters (static fields) must not depend on the key.
        depth: number of layers, at least 1.
        key: a JAX PRNG key, split into one key per layer.

    Attributes:
        layer: one layer whose array leaves carry a leading axis of size ``depth``
            (``jax.tree.map(lambda a: a[i], stack.layer)`` is the ``i``-th layer).
    """

    layer: AbstractLayer
    depth: int = eqx.field(static=True)

    def __init__(self, make_layer: Callable[[jax.Array], AbstractLayer], depth: int, *, key):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"Stack depth must be a positive integer, got {depth!r}.")
        self.layer = eqx.filter_vmap(make_layer)(jr.split(key, depth))
        self.depth = depth

    def _scan(self, step, carry, reverse=False):
        params, static = eqx.partition(self.layer, eqx.is_array)

        def body(carry, p):
            return step(eqx.combine(p, static), carry)

        return lax.scan(body, carry, params, reverse=reverse)

    def _run(self, apply, v, reverse):
        def step(layer, carry):
            v, total = carry
            v, logdet = apply(layer, v)
            return (v, total + logdet), None

        total = jnp.zeros(v.shape[:1], v.dtype)
        (v, total), _ = self._scan(step, (v, total), reverse)
        return v, total

    def forward(self, x, cond=None):
        return self._run(lambda layer, v: layer.forward(v, cond), x, reverse=False)

    def inverse_and_log_det(self, y, cond=None):
        return self._run(lambda layer, v: layer.inverse_and_log_det(v, cond), y, reverse=True)

    def _walk(self, pull, value, dvalue, cond, reverse):
        def step(layer, carry):
            value, dvalue, dcond = carry
            value, dvalue, dlayer, dc = pull(layer, value, dvalue)
            return (value, dvalue, add_cotangents(dcond, dc)), dlayer

        dcond = None if cond is None else jax.tree.map(jnp.zeros_like, cond)
        (value, dvalue, dcond), dlayers = self._scan(step, (value, dvalue, dcond), reverse)
        return value, dvalue, eqx.tree_at(lambda s: s.layer, self, dlayers), dcond

    def backward(self, y, dy, dlogdet, cond=None):
        return self._walk(lambda layer, v, dv: layer.backward(v, dv, dlogdet, cond), y, dy, cond, reverse=True)

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        pull = lambda layer, v, dv: layer.inverse_backward(v, dv, dlogdet, cond)  # noqa: E731
        return self._walk(pull, x, dx, cond, reverse=False)

    def _initialized(self, init, v, reverse):
        def step(layer, v):
            layer, v = init(layer, v)
            return v, eqx.filter(layer, eqx.is_array)

        v, params = self._scan(step, v, reverse)
        static = eqx.filter(self.layer, eqx.is_array, inverse=True)
        return eqx.tree_at(lambda s: s.layer, self, eqx.combine(params, static)), v

    def initialize(self, x, cond=None):
        return self._initialized(lambda layer, v: layer.initialize(v, cond), x, reverse=False)

    def initialize_inverse(self, y, cond=None):
        return self._initialized(lambda layer, v: layer.initialize_inverse(v, cond), y, reverse=True)
