"""``refine_posterior``: physics-based latent correction of an amortized posterior for one observation.

Siahkoohi, Rizzuti, Orozco and Herrmann (2023), "Reliable amortized variational inference
with physics-based latent distribution correction" (Geophysics). An amortized posterior
``theta = G(z; x)``, ``z ~ N(0, I)``, trained on simulations, is biased for an observation
off its training distribution (other noise, another operator). Keep ``G`` fixed and learn
a cheap map of its latent, ``z = loc + exp(log_scale) * eps`` with ``eps ~ N(0, I)``, by
reverse KL against ``p(z | x_o) ~ p(x_o | G(z; x_o)) N(z; 0, I)``: the physics' data misfit
of the mapped samples plus the standard normal on the corrected latent, minus the map's
log-determinant. The amortized posterior acts as the prior of a Bayesian update by the
physics, and the gradient runs through ``G``'s inverse direction, memory-frugal like any
invjax flow's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import check_int, check_key
from ._distributions import standard_normal_log_prob
from ._ensemble import Ensemble
from ._flow import AbstractFlow
from ._posterior import Posterior
from ._step import make_step
from ._strict import AbstractStrictModule


class LatentCorrection(AbstractStrictModule):
    """``z = loc + exp(log_scale) * eps``, elementwise over one latent of ``shape``; the identity at first."""

    loc: Array
    log_scale: Array

    def __init__(self, shape: tuple[int, ...], dtype=None):
        dtype = dtype or jnp.result_type(float)
        self.loc = jnp.zeros(shape, dtype)
        self.log_scale = jnp.zeros(shape, dtype)

    def __call__(self, eps: Float[Array, "B ..."]) -> Float[Array, "B ..."]:
        return self.loc + jnp.exp(self.log_scale) * eps

    def log_det(self) -> Array:
        return jnp.sum(self.log_scale)


class RefinedPosterior(AbstractStrictModule):
    """An amortized flow for one observation with a corrected latent: ``theta = G(loc + scale * eps; x_o)``.

    Returned by :func:`invjax.refine_posterior`.

    Attributes:
        flow: the amortized flow ``G`` (fixed).
        correction: the learned :class:`LatentCorrection`.
        observation: ``(1, *observation_shape)`` the observation it serves.
    """

    flow: AbstractFlow
    correction: LatentCorrection
    observation: Array

    def _cond(self, n: int):
        return jnp.broadcast_to(self.observation, (n, *self.observation.shape[1:]))

    def sample(self, key: PRNGKeyArray, n: int) -> Array:
        """``(n, *shape)`` draws of the corrected posterior."""
        check_key("RefinedPosterior.sample", key)
        eps = jr.normal(key, (n, *self.correction.loc.shape), self.correction.loc.dtype)
        return self.flow.inverse(self.correction(eps), self._cond(n))

    def log_prob(self, theta: Float[Array, "N ..."]) -> Float[Array, " N"]:
        """The corrected posterior's log density: ``G``'s change of variables with the corrected latent."""
        z, log_det = self.flow.forward(theta, self._cond(theta.shape[0]))
        eps = (z - self.correction.loc) * jnp.exp(-self.correction.log_scale)
        return standard_normal_log_prob(eps) - self.correction.log_det() + log_det


def latent_kl(correction: LatentCorrection, flow: AbstractFlow, cond, log_likelihood: Callable, eps) -> Array:
    """The reverse-KL objective (up to a constant) for draws ``eps``: misfit + latent prior - log-determinant."""
    z = correction(eps)
    theta = flow.inverse(z, cond)
    return jnp.mean(-log_likelihood(theta) - standard_normal_log_prob(z)) - correction.log_det()


def refine_posterior(
    posterior,
    x_o,
    log_likelihood: Callable,
    *,
    key: PRNGKeyArray,
    steps: int = 1000,
    batch_size: int = 16,
    optimizer: optax.GradientTransformation | None = None,
    shape: tuple[int, ...] | None = None,
) -> tuple[RefinedPosterior, list[float]]:
    """Correct an amortized posterior's latent for one observation with the physics (reverse KL).

    Minimises, over ``loc`` and ``log_scale``,
    ``E_eps[-log p(x_o | G(z; x_o)) - log N(z; 0, I)] - sum(log_scale)`` with
    ``z = loc + exp(log_scale) * eps``: the reverse KL from the corrected latent to
    ``p(z | x_o)``, whose pushforward by ``G`` is ``p(x_o | theta) q(theta | x_o)``, the
    amortized posterior updated by the physics. ``G`` stays fixed; the gradient flows
    through its inverse direction.

    Args:
        posterior: a :class:`invjax.Posterior` of one flow (``members=1``), or a conditional
            invjax flow (``Standardized``, ``Summarized`` ...) that maps a latent to
            parameters given the observation.
        x_o: the observation, of one condition's shape (or with a batch axis of 1).
        log_likelihood: ``log_likelihood(theta) -> (B,)``, ``log p(x_o | theta)`` for a
            batch of parameters: the physics (a forward operator and a noise model),
            differentiable in JAX.
        key: a PRNG key.
        steps: optimisation steps.
        batch_size: latent draws per step.
        optimizer: an optax transformation; default Adam(1e-2).
        shape: one parameter's (one latent's) shape; taken from a ``Posterior``.

    Returns:
        ``(refined, losses)``: a :class:`RefinedPosterior` (``sample(key, n)``,
        ``log_prob(theta)``) and the objective at every step.
    """
    check_key("refine_posterior", key)
    if isinstance(posterior, Posterior):
        shape = shape or tuple(posterior.lower.shape)
        observation_shape, flow = posterior.observation_shape, posterior.model
    else:
        flow, observation_shape = posterior, None
    if isinstance(flow, Ensemble):
        raise ValueError("refine_posterior: the posterior is an ensemble (a mixture has no single latent); train it "
                         "with members=1, or refine one member: Posterior(model.flows[k], ...).")
    if not isinstance(flow, AbstractFlow):
        raise ValueError(f"refine_posterior: expected a Posterior or an invjax flow, got {type(flow).__name__}.")
    if shape is None:
        raise ValueError("refine_posterior: give shape=, one parameter's shape (a Posterior knows it).")
    if not callable(log_likelihood):
        raise ValueError(f"refine_posterior: log_likelihood must be callable, got {type(log_likelihood).__name__}.")
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        check_int("refine_posterior", name, value, 1)
    x_o = jnp.asarray(x_o, flow.dtype)
    if observation_shape is None:  # a batch axis of 1, or one observation
        observation_shape = x_o.shape[1:] if x_o.ndim >= 2 and x_o.shape[0] == 1 else x_o.shape
    x_o = x_o.reshape(-1, *observation_shape) if x_o.size == math.prod(observation_shape) else x_o
    if x_o.shape != (1, *observation_shape):
        raise ValueError(f"refine_posterior: expected an observation of shape {observation_shape}, got {x_o.shape}.")
    cond = jnp.broadcast_to(x_o, (batch_size, *x_o.shape[1:]))
    misfit = log_likelihood(jnp.zeros((1, *shape), flow.dtype))
    if jnp.shape(misfit) != (1,):
        raise ValueError(f"refine_posterior: log_likelihood must map (B, *shape) parameters to (B,), gave "
                         f"{jnp.shape(misfit)} for B = 1.")

    def loss(correction, flow, step_key):
        eps = jr.normal(step_key, (batch_size, *shape), flow.dtype)
        return latent_kl(correction, flow, cond, log_likelihood, eps)

    init, step = make_step(loss, optimizer or optax.adam(1e-2))
    correction = LatentCorrection(tuple(shape), flow.dtype)
    state, losses = init(correction), []
    for i in range(steps):
        correction, state, value = step(correction, state, flow, jr.fold_in(key, i))
        losses.append(value)
    losses = [float(v) for v in jax.device_get(losses)]
    if not math.isfinite(losses[-1]):
        raise ValueError(f"refine_posterior: the objective became {losses[-1]}; lower the learning rate or check "
                         "log_likelihood on the posterior's draws.")
    return RefinedPosterior(flow, correction, x_o), losses


__all__ = ["LatentCorrection", "RefinedPosterior", "refine_posterior"]
