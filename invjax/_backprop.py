"""How a flow is differentiated: a value held by the flow, as diffrax's ``adjoint=``.

``Invertible()`` (the default) rebuilds activations in the backward pass; ``Autodiff()``
is plain JAX autodiff. The choice is a pytree *leaf* of the flow, not a static field, so
switching it keeps the flow's pytree structure: an optax state made for one works with
the other (``eqx.filter`` drops the leaf, like any non-array). Like Equinox's own modules
with function leaves, flows are jitted with ``eqx.filter_jit``, which treats the choice as
static and compiles each choice once.
"""

from __future__ import annotations

import abc
import dataclasses

from . import _engine


class AbstractBackprop(abc.ABC):
    """How gradients of a flow's body are computed. ``body`` is an invjax layer."""

    @abc.abstractmethod
    def forward(self, body, x, cond):
        """``body.forward(x, cond)`` with this way of differentiating it."""

    @abc.abstractmethod
    def inverse_and_log_det(self, body, z, cond):
        """``body.inverse_and_log_det(z, cond)`` with this way of differentiating it."""


@dataclasses.dataclass(frozen=True)
class Invertible(AbstractBackprop):
    """Reconstruct each layer's input from its output in the backward pass.

    Memory of a gradient step: inputs, parameters and one layer's working set, whatever
    the depth. Reverse mode only (a ``jax.custom_vjp``): for ``jax.jvp`` use ``Autodiff()``.
    """

    def forward(self, body, x, cond):
        return _engine.run_invertible(body, x, cond)

    def inverse_and_log_det(self, body, z, cond):
        from .layers._invert import Invert  # layers import this module's users, not the reverse

        return _engine.run_invertible(Invert(body), z, cond)


@dataclasses.dataclass(frozen=True)
class Autodiff(AbstractBackprop):
    """Plain JAX autodiff: stores activations (memory grows with depth); supports forward
    mode (``jax.jvp``, ``jax.jacfwd``). For checking gradients, debugging and benchmarks."""

    def forward(self, body, x, cond):
        return body.forward(x, cond)

    def inverse_and_log_det(self, body, z, cond):
        return body.inverse_and_log_det(z, cond)


def check_backprop(name: str, backprop) -> AbstractBackprop:
    if not isinstance(backprop, AbstractBackprop):
        hint = ""
        if isinstance(backprop, str):
            hint = f" Use ij.{'Autodiff' if backprop == 'autodiff' else 'Invertible'}()."
        raise ValueError(f"{name}: backprop must be ij.Invertible() or ij.Autodiff(), got {backprop!r}.{hint}")
    return backprop
