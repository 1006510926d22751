"""``Ensemble``: the equal-weight mixture of flows trained for the same density (sbi's ``NeuralPosteriorEnsemble``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import check_key
from ._flow import AbstractFlow
from ._strict import AbstractStrictModule


class Ensemble(AbstractStrictModule):
    """The mixture ``q(x | cond) = (1 / K) sum_k q_k(x | cond)`` of ``K`` flows.

    Train ``K`` flows for the same density (the same data, each from its own key: its own
    initialisation and batch order), then use them as one. Each ends over-fitted to the
    training set in its own way; the mixture averages much of that out. On the sbibm
    gaussian_linear task at 10^5 simulations (``benchmarks/sbi_kl.py``) the KL divergence of
    one flow from the exact posterior was 0.029 to 0.031 nats, that of the mixture of 3 such
    flows 0.015. Sampling and ``log_prob`` cost ``K`` flows' work. An ensemble is not a
    bijection (no ``forward``): train its members one by one (:func:`invjax.fit`), then
    build it; :func:`invjax.sample_within` and
    :func:`invjax.diagnostics.posterior_draws` take it like a flow.

    Args:
        flows: a non-empty sequence of invjax flows (or ``Summarized``, ``Standardized``,
            ``Constrained`` models) of the same inputs, all conditional or all not.

    Shapes: ``log_prob``: ``(B, ...) -> (B,)``; ``sample(key, shape, cond)`` -> ``shape``.

    Example:
        >>> import jax, invjax as ij
        >>> keys = jax.random.split(jax.random.key(0), 3)
        >>> model = ij.Ensemble([ij.nets.RealNVP(2, depth=2, hidden=8, key=k) for k in keys])
        >>> model.sample(jax.random.key(1), (5, 2)).shape
        (5, 2)
    """

    flows: tuple[AbstractFlow, ...]

    def __init__(self, flows: Sequence[AbstractFlow]):
        if isinstance(flows, AbstractFlow) or not isinstance(flows, Sequence):
            raise ValueError(f"Ensemble: flows must be a sequence of invjax flows, got {type(flows).__name__}.")
        flows = tuple(flows)
        if not flows:
            raise ValueError("Ensemble: flows must hold at least one flow, got none.")
        for i, flow in enumerate(flows):
            if not isinstance(flow, AbstractFlow):
                raise ValueError(f"Ensemble: flows[{i}] must be an invjax flow (or Summarized model), got "
                                 f"{type(flow).__name__}.")
        self.flows = flows

    def log_prob(self, x: Float[Array, "B ..."], cond=None) -> Float[Array, " B"]:
        """``logsumexp_k log q_k(x | cond) - log K``, per sample."""
        logs = jnp.stack([flow.log_prob(x, cond) for flow in self.flows])
        return jax.nn.logsumexp(logs, axis=0) - math.log(len(self.flows))

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...], cond=None) -> Array:
        """``shape`` samples (batch first): each from a member chosen uniformly at random.

        Every member draws the whole batch and each sample keeps its chosen member's draw,
        so the cost is ``K`` flows' sampling. With one member, ``flows[0].sample(key, ...)``.
        """
        check_key("Ensemble.sample", key)
        return self.mix(key, lambda flow, k: flow.sample(k, shape, cond))

    def mix(self, key: PRNGKeyArray, draw, batch_ndim: int = 1) -> Array:
        """The mixture's draws from ``draw(flow, key) -> (*batch, *event)``, one member's draws: member ``k``
        draws with the ``k + 1``-th of ``jax.random.split(key, K + 1)`` and each of the ``batch_ndim`` leading
        positions keeps a member's draw chosen uniformly with the first. With one member, ``draw(flows[0], key)``."""
        if len(self.flows) == 1:
            return draw(self.flows[0], key)
        k_pick, *keys = jax.random.split(key, len(self.flows) + 1)
        draws = jnp.stack([draw(flow, k) for flow, k in zip(self.flows, keys, strict=True)])
        return choose(k_pick, draws, batch_ndim)

    @property
    def dtype(self):
        """The floating dtype of the members' parameters (that of samples)."""
        return self.flows[0].dtype


def choose(key: PRNGKeyArray, draws: Array, batch_ndim: int = 1) -> Array:
    """``draws``: ``(K, *batch, *event)``, one batch of samples per member (``batch_ndim`` axes of batch); returns
    ``(*batch, *event)``, each sample from a member drawn uniformly at random."""
    pick = jax.random.randint(key, draws.shape[1:1 + batch_ndim], 0, draws.shape[0])
    index = pick.reshape(1, *pick.shape, *[1] * (draws.ndim - 1 - batch_ndim))
    return jnp.take_along_axis(draws, index, axis=0)[0]
