"""A summary network in front of a conditional flow (amortized posterior inference)."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
from jaxtyping import Array, Float

from .._distributions import AbstractDistribution
from .._flow import AbstractFlow


class Summarized(AbstractFlow):
    """``flow`` conditioned on ``summary(y)``: learn ``p(x | y)`` from raw observations.

    ``summary`` is any Equinox module (or callable pytree) that maps *one* observation to
    the flow's condition, the Equinox convention; it is vmapped over the batch here. One
    ``jax.grad`` of a loss of ``log_prob(x, y)`` trains both: the flow through the
    invertible backward, the summary network by ordinary autodiff (the flow's backward
    returns the cotangent of the condition).

    Args:
        flow: a conditional flow (``Glow``, ``RealNVP``, ``HINT`` with ``cond_channels > 0``,
            ``ConditionalHINT``, ... or ``Flow(body, conditional=True)``).
        summary: ``y_i -> c_i`` for one sample; ``c_i`` must have the shape the flow's
            ``cond`` has per sample.

    Shapes: ``x``: ``(B, *x_shape)``; ``y``: ``(B, *y_shape)``; ``summary(y[i])``:
    the flow's per-sample condition shape.

    Example:
        >>> import jax, equinox as eqx, invjax as ij
        >>> k1, k2 = jax.random.split(jax.random.key(0))
        >>> flow = ij.nets.RealNVP(2, depth=2, hidden=16, cond_channels=4, key=k1)
        >>> summary = eqx.nn.MLP(10, 4, width_size=16, depth=1, key=k2)
        >>> model = ij.nets.Summarized(flow, summary)
        >>> model.log_prob(jax.numpy.zeros((8, 2)), jax.numpy.zeros((8, 10))).shape
        (8,)
    """

    flow: AbstractFlow
    summary: Callable

    @property
    def base(self) -> AbstractDistribution:
        """The flow's base distribution."""
        return self.flow.base

    def __init__(self, flow: AbstractFlow, summary: Callable):
        if not isinstance(flow, AbstractFlow):
            raise ValueError(f"Summarized: flow must be an invjax flow, got {type(flow).__name__}.")
        if not callable(summary):
            raise ValueError(f"Summarized: summary must be callable (an Equinox module), got {type(summary).__name__}.")
        self.flow = flow
        self.summary = summary

    def condition(self, y: Array) -> Array:
        """``summary`` applied to every observation: ``(B, *y_shape) -> (B, *cond_shape)``."""
        if y is None:
            raise ValueError("Summarized: the observation y is required (the last argument), got None.")
        if not hasattr(y, "shape") or len(y.shape) < 1:
            raise ValueError(f"Summarized: y must be an array with a batch axis, got {type(y).__name__}.")
        return jax.vmap(self.summary)(y)

    def _cond(self, y, batch: int):
        cond = self.condition(y)
        if cond.shape[0] != batch:
            raise ValueError(f"Summarized: y has batch size {cond.shape[0]}, the input has {batch}.")
        return cond

    def forward(self, x: Float[Array, "B ..."], y: Array):
        """``(z, logdet)`` of the flow given ``summary(y)``."""
        return self.flow.forward(x, self._cond(y, x.shape[0]))

    def inverse_and_log_det(self, z: Float[Array, "B ..."], y: Array):
        """``(x, log|det dx/dz|)`` given ``summary(y)``."""
        return self.flow.inverse_and_log_det(z, self._cond(y, z.shape[0]))

    def initialize(self, x: Float[Array, "B ..."], y: Array) -> Summarized:
        """ActNorm data initialisation of the flow on ``(x, summary(y))``; returns a new model."""
        flow = self.flow.initialize(x, self._cond(y, x.shape[0]))
        return eqx.tree_at(lambda m: m.flow, self, flow)
