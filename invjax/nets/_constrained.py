"""Any flow on a box of bounds: the flow runs on the reals, :class:`invjax.layers.Bounded` maps them in."""

from __future__ import annotations

import equinox as eqx
import numpy as np
from jaxtyping import Array, Float

from .._flow import AbstractFlow, AbstractNetwork, AbstractWrappedFlow
from ..layers._bounded import Bounded


def _network(flow):
    """The network at the heart of ``flow`` (through ``Summarized`` and ``Constrained``), or ``None``."""
    while not isinstance(flow, AbstractNetwork) and isinstance(getattr(flow, "flow", None), AbstractFlow):
        flow = flow.flow
    return flow if isinstance(flow, AbstractNetwork) else None


class Constrained(AbstractWrappedFlow):
    """``flow`` on a bounded space: a density on ``lower < x < upper``, samples never outside.

    A flow puts mass on every real; a prior on a box (a uniform prior, positive scales) does
    not. ``Constrained`` runs ``flow`` on ``y = t(x)``, where ``t`` is the elementwise
    bijection :class:`invjax.layers.Bounded` from the bounds onto the reals (logit on an
    interval, softplus or log on a half-line, the identity where unbounded):

    - ``log_prob(x, cond) = flow.log_prob(t(x), cond) + log|det t'(x)|``;
    - ``sample(key, shape, cond) = t^{-1}(flow.sample(key, shape, cond))``, strictly inside
      the bounds in float32 for any finite latent;
    - ``forward``, ``inverse_and_log_det``, ``sample_and_log_prob`` the same way, and
      ``initialize(x, cond)`` initialises ``flow`` on ``t(x)``.

    It wraps any flow, conditional or not, a ``Summarized`` model included (``cond`` is then
    the observation). ``t`` runs outside the invertible backward: it is elementwise, so what
    autodiff keeps of it is one array of the input's size; the flow inside keeps its memory
    behaviour. Values on a bound are moved inside by one float; values outside raise a
    ``ValueError`` outside ``jax.jit`` and have ``log_prob = -inf`` under it
    (:class:`invjax.layers.Bounded` gives the numerics).

    Args:
        flow: any invjax flow, or a ``Summarized`` model.
        lower: a number, or a vector ``(D,)`` of per-dimension bounds (then ``x`` is
            ``(B, D)``); ``-inf`` where unbounded. Default ``-inf``.
        upper: the same for the upper bounds; default ``inf``.
        one_sided: ``"softplus"`` (default) or ``"exp"``: the map of a half-line.

    Shapes: ``x``: the flow's input, ``(B, D)`` for per-dimension bounds (any layout for
    scalar bounds); ``cond`` as for ``flow``.

    Example:
        >>> import jax, jax.numpy as jnp, invjax as ij
        >>> flow = ij.nets.RealNVP(3, depth=2, hidden=8, key=jax.random.key(0))
        >>> lower, upper = jnp.array([0.0, 0.0, -jnp.inf]), jnp.array([1.0, jnp.inf, jnp.inf])
        >>> model = ij.nets.Constrained(flow, lower, upper)
        >>> x = model.sample(jax.random.key(1), (1000, 3))
        >>> bool((x[:, 0] > 0).all() and (x[:, 0] < 1).all() and (x[:, 1] > 0).all())
        True
    """

    flow: AbstractFlow
    bounds: Bounded

    def __init__(self, flow: AbstractFlow, lower=-np.inf, upper=np.inf, *, one_sided: str = "softplus"):
        if not isinstance(flow, AbstractFlow):
            raise ValueError(f"Constrained: flow must be an invjax flow (or Summarized model), "
                             f"got {type(flow).__name__}.")
        bounds = Bounded(lower, upper, one_sided=one_sided)
        network, d = _network(flow), bounds.size
        if d is not None and network is not None:
            name = type(network).__name__
            if network.spatial_dims not in (None, 0):
                raise ValueError(
                    f"Constrained: per-dimension bounds (D = {d}) need a flow on vectors (B, D), but {name} takes "
                    f"inputs with {network.spatial_dims} spatial axes; give scalar bounds for images or volumes."
                )
            if network.in_channels is not None and network.in_channels != d:
                raise ValueError(f"Constrained: {d} bounds per sample, but {name} takes vectors of "
                                 f"{network.in_channels} dimensions, (B, {network.in_channels}).")
        self.flow, self.bounds = flow, bounds

    def forward(self, x: Float[Array, "B ..."], cond=None):
        """``(z, logdet)``: ``z`` the flow's latent of ``t(x)``, ``logdet`` both maps' log-determinants."""
        y, logdet_t = self.bounds.to_unbounded(x, "Constrained")
        z, logdet = self.flow.forward(y, cond)
        return z, logdet + logdet_t

    def inverse_and_log_det(self, z: Float[Array, "B ..."], cond=None):
        """``(x, log|det dx/dz|)``: the flow's inverse, then ``t^{-1}`` into the bounds."""
        y, logdet = self.flow.inverse_and_log_det(z, cond)
        x, logdet_t = self.bounds.to_bounded(y, "Constrained")
        return x, logdet + logdet_t

    def initialize(self, x: Float[Array, "B ..."], cond=None) -> Constrained:
        """ActNorm data initialisation of the flow on ``t(x)``; returns a new model."""
        flow = self.flow.initialize(self.bounds.to_unbounded(x, "Constrained")[0], cond)
        return eqx.tree_at(lambda m: m.flow, self, flow)
