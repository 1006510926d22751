"""Networks: an invertible body plus a standard normal base, differentiated by the engine."""

from __future__ import annotations

import copy
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from . import _engine
from ._checks import check_array, check_cond
from ._layer import AbstractLayer


def standard_normal_log_prob(z: Float[Array, "B ..."]) -> Float[Array, " B"]:
    """Log density of a standard normal, summed over all but the batch axis."""
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * jnp.sum(flat**2, axis=1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)


class AbstractFlow(eqx.Module):
    """A normalizing flow: an invertible ``body`` and a standard normal latent.

    Every method takes a batch; ``cond`` is the last argument and is ``None`` for an
    unconditional flow. Gradients of anything computed by these methods (``jax.grad``,
    ``eqx.filter_grad``) go through the invertible backward unless the flow was made with
    :func:`invjax.with_backprop` ``(flow, "autodiff")``.

    Note:
        The invertible backward is a ``jax.custom_vjp``: reverse mode only. For
        ``jax.jvp`` / ``jax.jacfwd`` use ``with_backprop(flow, "autodiff")``.
    """

    body: eqx.AbstractVar[AbstractLayer]
    backprop: eqx.AbstractVar[str]

    def _check_input(self, x, cond) -> None:
        """Trace-time validation of ``x`` (or ``z``) and ``cond``; networks refine it."""
        check_array(type(self).__name__, x)
        check_cond(type(self).__name__, cond, x.shape[0], expected=False)

    def forward(self, x: Float[Array, "B ..."], cond=None) -> tuple[Array, Float[Array, " B"]]:
        """``(z, logdet)``: the latent (shape of ``x``) and ``log|det dz/dx|`` per sample."""
        self._check_input(x, cond)
        return _engine.forward(self.body, x, cond, self.backprop)

    def inverse_and_log_det(self, z: Float[Array, "B ..."], cond=None) -> tuple[Array, Float[Array, " B"]]:
        """``(x, log|det dx/dz|)``, the inverse map and its log-determinant."""
        self._check_input(z, cond)
        return _engine.inverse_and_log_det(self.body, z, cond, self.backprop)

    def inverse(self, z: Float[Array, "B ..."], cond=None) -> Float[Array, "B ..."]:
        """``x`` such that ``forward(x)[0] == z``."""
        return self.inverse_and_log_det(z, cond)[0]

    def log_prob(self, x: Float[Array, "B ..."], cond=None) -> Float[Array, " B"]:
        """``log p(x) = log N(z; 0, I) + logdet``, per sample."""
        z, logdet = self.forward(x, cond)
        return standard_normal_log_prob(z) + logdet

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...], cond=None) -> Array:
        """Draw ``x = inverse(z)``, ``z ~ N(0, I)`` of ``shape`` (batch first)."""
        return self.inverse(jr.normal(key, tuple(shape), self.dtype), cond)

    def sample_and_log_prob(self, key: PRNGKeyArray, shape: tuple[int, ...], cond=None):
        """``(x, log q(x))`` from one inverse pass: ``log q = log N(z) - log|det dx/dz|``."""
        z = jr.normal(key, tuple(shape), self.dtype)
        x, logdet = self.inverse_and_log_det(z, cond)
        return x, standard_normal_log_prob(z) - logdet

    def initialize(self, x: Float[Array, "B ..."], cond=None) -> AbstractFlow:
        """Data-dependent initialisation (ActNorm) on a batch; returns a new flow.

        A pure function: ``flow = flow.initialize(x_first_batch)``.
        """
        self._check_input(x, cond)
        body, _ = self.body.initialize(x, cond)
        return eqx.tree_at(lambda f: f.body, self, body)

    @property
    def dtype(self):
        """The floating dtype of the parameters (that of samples)."""
        leaves = jax.tree.leaves(eqx.filter(self.body, eqx.is_inexact_array))
        return leaves[0].dtype if leaves else jnp.zeros(()).dtype


class Flow(AbstractFlow):
    """Turn any invjax layer (a custom assembly of layers) into a flow.

    Args:
        body: an :class:`invjax.layers.AbstractLayer`, e.g. a ``Chain`` of ``Stack``\\ s.
        conditional: whether ``cond`` is required (``True``) or refused (``False``).
        backprop: ``"invertible"`` (default) or ``"autodiff"``.

    Example:
        >>> import jax, invjax as ij
        >>> k1, k2 = jax.random.split(jax.random.key(0))
        >>> body = ij.layers.Chain([ij.layers.ActNorm(4), ij.layers.AffineCoupling(4, 16, 0, key=k1)])
        >>> flow = ij.nets.Flow(body)
        >>> flow.log_prob(jax.random.normal(k2, (8, 4))).shape
        (8,)
    """

    body: AbstractLayer
    conditional: bool = eqx.field(static=True)
    backprop: str = eqx.field(static=True)

    def __init__(self, body: AbstractLayer, *, conditional: bool = False, backprop: str = "invertible"):
        if not isinstance(body, AbstractLayer):
            raise ValueError(f"Flow needs an invjax layer as body, got {type(body).__name__}.")
        self.body = body
        self.conditional = conditional
        self.backprop = _engine.check_mode(backprop)

    def _check_input(self, x, cond):
        check_array("Flow", x)
        check_cond("Flow", cond, x.shape[0], expected=self.conditional)


def with_backprop(flow: AbstractFlow, backprop: str) -> AbstractFlow:
    """The same flow (same parameters), differentiated by ``backprop``.

    ``"invertible"`` reconstructs activations in the backward (constant memory in depth);
    ``"autodiff"`` is plain JAX autodiff, which stores them, and supports forward mode
    (``jax.jvp``, ``jax.jacfwd``). Useful to check gradients and in benchmarks.
    """
    _engine.check_mode(backprop)
    if not isinstance(flow, AbstractFlow):
        raise ValueError(f"with_backprop takes an invjax flow, got {type(flow).__name__}.")
    new = copy.copy(flow)
    object.__setattr__(new, "backprop", backprop)  # a static field: not a pytree leaf
    return new
