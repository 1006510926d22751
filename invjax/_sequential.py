"""``fit_sequential``: rounds of simulations for one observation, from a truncated prior (TSNPE).

Deistler, Goncalves and Macke (2022), "Truncated proposals for scalable and hassle-free
simulation-based inference" (sbi's ``RestrictedPrior``): round 1 simulates from the prior;
each later round from the prior restricted to the current posterior's highest-density
region for the observation, ``{theta : log q(theta | x_o) >= tau}`` with ``tau`` the
``quantile`` of ``log q`` over the posterior's own draws; every round retrains on all the
simulations so far. The restricted prior is proportional to the prior on its support, so
the posterior needs no correction there: it is the amortized posterior, made sharp where
``x_o`` needs it. The price: it is no longer amortized; it serves ``x_o``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, PRNGKeyArray

from ._checks import check_int, check_key
from ._posterior import Posterior, _prior_dim, fit_posterior


def highest_density_threshold(posterior: Posterior, x_o, *, key: PRNGKeyArray, quantile: float = 1e-4,
                              draws: int = 10_000) -> Array:
    """``tau``: the ``quantile`` of ``log q(theta | x_o)`` over ``draws`` of ``q(. | x_o)``.

    ``{theta : log q(theta | x_o) >= tau}`` is then the region holding ``1 - quantile`` of
    the posterior's mass.
    """
    theta = posterior.sample(key, draws, x_o)
    return jnp.quantile(posterior.log_prob(theta, x_o), quantile)


def truncated_prior_draws(prior, posterior: Posterior, x_o, n: int, threshold, *, key: PRNGKeyArray,
                          dim: int, max_rounds: int = 100) -> Array:
    """``n`` draws of ``prior`` restricted to ``log q(theta | x_o) >= threshold``, by rejection.

    Raises:
        ValueError: when ``max_rounds`` rounds of ``max(n, 1000)`` prior draws do not give
            ``n`` inside the region, naming the share that landed inside.
    """
    chunk, kept, seen = max(n, 1000), [], 0
    for r in range(max_rounds):
        theta = prior.sample(jr.fold_in(key, r), (chunk, dim))
        inside = posterior.log_prob(theta, x_o) >= threshold
        kept.append(theta[inside])
        seen += chunk
        if sum(len(k) for k in kept) >= n:
            return jnp.concatenate(kept)[:n]
    share = sum(len(k) for k in kept) / seen
    raise ValueError(f"fit_sequential: {share:.2%} of {seen} prior draws fell in the posterior's highest-density region, "
                     f"fewer than the {n} this round needs; lower the rounds' budget or raise max_rounds.")


def fit_sequential(
    simulator: Callable,
    x_o,
    *,
    prior,
    key: PRNGKeyArray,
    budget: int,
    rounds: int = 4,
    quantile: float = 1e-4,
    threshold_draws: int = 10_000,
    max_rounds: int = 100,
    **settings,
) -> Posterior:
    """The posterior of one observation ``x_o`` from ``rounds`` rounds of simulations (truncated proposals, TSNPE).

    Round 1 draws ``budget // rounds`` (plus the remainder) parameters from ``prior``;
    round ``r > 1`` draws ``budget // rounds`` from the prior restricted to the current
    posterior's highest-density region at ``x_o`` (rejection from the prior: a draw is kept
    when ``log q(theta | x_o) >= tau``, ``tau`` the ``quantile`` of ``log q`` over
    ``threshold_draws`` posterior draws), simulates them, and retrains
    (:func:`invjax.fit_posterior`) on every simulation so far. The restricted prior is
    proportional to the prior on its support, so no proposal correction is needed.

    Args:
        simulator: ``simulator(key, theta) -> x`` for ``(N, D)`` parameters.
        x_o: the observation, of the simulator's shape for one parameter.
        prior: as for :func:`invjax.fit_posterior`, with ``sample(key, shape)``.
        key: a PRNG key.
        budget: the simulations over all rounds.
        rounds: the number of rounds (1 is :func:`invjax.fit_posterior` with ``budget``).
        quantile: the posterior mass left outside the region (Deistler et al.: ``1e-4``).
        threshold_draws: the posterior draws that estimate ``tau``.
        max_rounds: rejection rounds of prior draws per simulation round.
        **settings: :func:`invjax.fit_posterior`'s settings (``members``, ``depth``,
            ``rates``, ``summary``, ...), the same for every round.

    Returns:
        The last round's :class:`invjax.Posterior`; use it for ``x_o`` (its draws stay
        inside the prior's box; near ``x_o`` it is trained on all the simulations).
    """
    check_key("fit_sequential", key)
    for name, value, low in (("budget", budget, 2), ("rounds", rounds, 1), ("threshold_draws", threshold_draws, 10)):
        check_int("fit_sequential", name, value, low)
    if budget < 2 * rounds:
        raise ValueError(f"fit_sequential: budget {budget} is too small for {rounds} rounds (at least 2 per round).")
    if not (isinstance(quantile, float | int) and 0 <= quantile < 1):
        raise ValueError(f"fit_sequential: quantile must be in [0, 1), got {quantile!r}.")
    if not callable(simulator):
        raise ValueError(f"fit_sequential: simulator must be callable as simulator(key, theta), got "
                         f"{type(simulator).__name__}.")
    for name in ("simulator", "budget", "theta", "x", "key", "prior"):
        if name in settings:
            raise ValueError(f"fit_sequential: {name}= is set by fit_sequential itself; pass it once, as its argument.")
    dim = _prior_dim(prior)
    if dim is None:
        raise ValueError("fit_sequential: cannot tell the prior's dimension; give a prior with lower/upper or mean "
                         "vectors (ij.BoxUniform, ij.Normal) or a dim attribute.")
    x_o = jnp.asarray(x_o)
    per_round = budget // rounds
    thetas, xs, posterior = [], [], None
    for r in range(rounds):
        k_draw, k_sim, k_threshold, k_fit = jr.split(jr.fold_in(key, r), 4)
        n = per_round + (budget - rounds * per_round if r == 0 else 0)
        if posterior is None:
            theta = prior.sample(k_draw, (n, dim))
        else:
            tau = highest_density_threshold(posterior, x_o, key=k_threshold, quantile=quantile, draws=threshold_draws)
            theta = truncated_prior_draws(prior, posterior, x_o, n, tau, key=k_draw, dim=dim, max_rounds=max_rounds)
        x = simulator(k_sim, theta)
        thetas.append(theta)
        xs.append(jnp.asarray(x))
        if r == 0 and xs[0].shape[1:] != x_o.shape and xs[0].shape[1:] != x_o.shape[1:]:
            raise ValueError(f"fit_sequential: x_o has shape {x_o.shape}, the simulations {xs[0].shape[1:]} each.")
        posterior = fit_posterior(jnp.concatenate(thetas), jnp.concatenate(xs), prior=prior, key=k_fit, **settings)
    return posterior


__all__ = ["fit_sequential", "highest_density_threshold", "truncated_prior_draws"]
