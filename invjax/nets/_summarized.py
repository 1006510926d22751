"""A summary network in front of a conditional flow (amortized posterior inference)."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_array
from .._distributions import AbstractDistribution
from .._flow import AbstractFlow


def _is_stateful(module) -> bool:
    return isinstance(module, (eqx.nn.StateIndex, eqx.nn.State, eqx.nn.BatchNorm))


class Summarized(AbstractFlow):
    """``flow`` conditioned on ``summary(y)``: learn ``p(x | y)`` from raw observations.

    ``summary`` is any Equinox module (or callable pytree) that maps *one* observation to
    the flow's condition, the Equinox convention; it is vmapped over the batch here. One
    ``jax.grad`` of a loss of ``log_prob(x, y)`` trains both: the flow through the
    invertible backward, the summary network by ordinary autodiff (the flow's backward
    returns the cotangent of the condition).

    A summary network with dropout (``eqx.nn.Dropout``, or any module whose ``__call__``
    takes ``key=``) is *stochastic*: ``model.with_key(key)`` returns the model that runs
    it with a fresh key per sample (what ``ij.fit`` does at every training step, with a
    new key each step); without a key it runs in inference mode
    (``eqx.nn.inference_mode``: dropout off), so ``log_prob`` and ``sample`` of a trained
    model are deterministic. Stateful layers (``eqx.nn.BatchNorm``, anything holding an
    ``eqx.nn.State``) are refused: their state cannot follow a flow's pure methods; use
    ``eqx.nn.LayerNorm`` or ``eqx.nn.GroupNorm`` instead.

    Args:
        flow: a conditional flow (``Glow``, ``RealNVP``, ``HINT`` with ``cond_channels > 0``,
            ``ConditionalHINT``, ... or ``Flow(body, conditional=True)``).
        summary: ``y_i -> c_i`` for one sample; ``c_i`` must have the shape the flow's
            ``cond`` has per sample.
        stochastic: whether ``summary`` takes ``key=`` (dropout); default: whether it
            contains an ``eqx.nn.Dropout`` with ``p > 0``.
        key: the key of a stochastic summary network; normally ``None`` and set per step
            by ``with_key``.

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
    key: jax.Array | None
    stochastic: bool = eqx.field(static=True)

    @property
    def base(self) -> AbstractDistribution:
        """The flow's base distribution."""
        return self.flow.base

    def __init__(self, flow: AbstractFlow, summary: Callable, *, stochastic: bool | None = None, key=None):
        if not isinstance(flow, AbstractFlow):
            raise ValueError(f"Summarized: flow must be an invjax flow, got {type(flow).__name__}.")
        if not callable(summary):
            raise ValueError(f"Summarized: summary must be callable (an Equinox module), got {type(summary).__name__}.")
        stateful = [type(m).__name__ for m in jax.tree.leaves(summary, is_leaf=_is_stateful) if _is_stateful(m)]
        if stateful:
            raise ValueError(
                f"Summarized: the summary network holds state ({', '.join(sorted(set(stateful)))}), which a flow's "
                f"pure log_prob and sample cannot carry; use a stateless normalisation such as eqx.nn.LayerNorm "
                f"or eqx.nn.GroupNorm instead of eqx.nn.BatchNorm."
            )
        if stochastic is None:
            stochastic = any(isinstance(m, eqx.nn.Dropout) and m.p > 0
                             for m in jax.tree.leaves(summary, is_leaf=lambda m: isinstance(m, eqx.nn.Dropout)))
        self.flow = flow
        self.summary = summary
        self.stochastic = bool(stochastic)
        self.key = key

    def with_key(self, key) -> Summarized:
        """This model with the key its stochastic summary network draws from (a new model).

        ``ij.fit`` calls it at every training step with a fresh key; a deterministic
        summary network ignores it.
        """
        return eqx.tree_at(lambda m: m.key, self, key, is_leaf=lambda v: v is None)

    def condition(self, y: Array) -> Array:
        """``summary`` applied to every observation: ``(B, *y_shape) -> (B, *cond_shape)``."""
        if y is None:
            raise ValueError("Summarized: the observation y is required (the last argument), got None.")
        if not hasattr(y, "shape") or len(y.shape) < 1:
            raise ValueError(f"Summarized: y must be an array with a batch axis, got {type(y).__name__}.")
        y = jnp.asarray(y)
        if not self.stochastic:
            summarize = jax.vmap(self.summary)
        elif self.key is None:  # evaluation: dropout off, deterministic
            summarize = jax.vmap(eqx.nn.inference_mode(self.summary))
        else:
            summarize = lambda y: jax.vmap(lambda y_i, k: self.summary(y_i, key=k))(
                y, jax.random.split(self.key, y.shape[0]))
        try:  # a mismatch names the observation, not a dot_general deep inside the summary network
            return summarize(y)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"Summarized: the summary network fails on one observation of shape {y.shape[1:]} "
                f"(y of shape {y.shape}, batch first): {type(error).__name__}: {str(error)[:300]}"
            ) from error

    def _cond(self, x, y, what: str = "x"):
        check_array("Summarized", x, what)
        cond = self.condition(y)
        if cond.shape[0] != x.shape[0]:
            raise ValueError(f"Summarized: y has batch size {cond.shape[0]}, {what} has {x.shape[0]}.")
        return cond

    def forward(self, x: Float[Array, "B ..."], y: Array):
        """``(z, logdet)`` of the flow given ``summary(y)``."""
        return self.flow.forward(x, self._cond(x, y))

    def inverse_and_log_det(self, z: Float[Array, "B ..."], y: Array):
        """``(x, log|det dx/dz|)`` given ``summary(y)``."""
        return self.flow.inverse_and_log_det(z, self._cond(z, y, "z"))

    def initialize(self, x: Float[Array, "B ..."], y: Array) -> Summarized:
        """ActNorm data initialisation of the flow on ``(x, summary(y))``; returns a new model."""
        flow = self.flow.initialize(x, self._cond(x, y))
        return eqx.tree_at(lambda m: m.flow, self, flow)
