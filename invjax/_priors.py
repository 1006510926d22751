"""Priors for amortized inference: distributions over parameter vectors ``(N, D)`` with a support.

A prior is what :func:`invjax.fit_posterior` samples parameters from (when it simulates)
and what bounds the posterior's draws. The two here cover the common cases; any object
with ``sample(key, shape)`` works too, with ``lower`` and ``upper`` attributes where its
support is a box (``-inf`` / ``inf`` where unbounded).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._distributions import AbstractDistribution


def _vector(name: str, what: str, value, dim: int | None = None) -> np.ndarray:
    v = np.asarray(value, np.float64)
    if v.ndim > 1 or (dim is not None and v.ndim == 1 and v.shape[0] != dim) or not v.size:
        raise ValueError(f"{name}: {what} must be a number or a vector (D,){'' if dim is None else f' with D = {dim}'}"
                         f", got shape {v.shape}.")
    return v


def _check_theta(name: str, theta, dim: int):
    if jnp.ndim(theta) != 2 or jnp.shape(theta)[1] != dim:
        raise ValueError(f"{name}: expected parameters of shape (N, {dim}), got shape {jnp.shape(theta)}.")


class BoxUniform(AbstractDistribution):
    """The uniform distribution on the box ``lower < theta < upper`` (sbi's ``BoxUniform``).

    Args:
        lower: ``(D,)`` lower bounds (or a number, with ``dim``).
        upper: ``(D,)`` upper bounds (or a number, with ``dim``); each above its lower bound.
        dim: the dimension ``D`` when both bounds are numbers.

    Example:
        >>> import jax, invjax as ij
        >>> prior = ij.BoxUniform(-1.0, 1.0, dim=2)
        >>> prior.sample(jax.random.key(0), (5, 2)).shape
        (5, 2)
    """

    lower: Array
    upper: Array

    def __init__(self, lower, upper, *, dim: int | None = None):
        lo, hi = _vector("BoxUniform", "lower", lower), _vector("BoxUniform", "upper", upper)
        size = max(lo.size, hi.size, 1 if dim is None else dim)
        if (lo.ndim == 1 and lo.size != size) or (hi.ndim == 1 and hi.size != size):
            raise ValueError(f"BoxUniform: lower and upper must have the same length, got {lo.shape} and {hi.shape}"
                             + ("" if dim is None else f" with dim={dim}") + ".")
        lo, hi = np.broadcast_to(lo, (size,)), np.broadcast_to(hi, (size,))
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
            raise ValueError(f"BoxUniform: expected finite bounds with lower < upper, got lower={lo}, upper={hi}.")
        self.lower, self.upper = jnp.asarray(lo, jnp.float32), jnp.asarray(hi, jnp.float32)

    def log_prob(self, theta: Float[Array, "N D"]) -> Float[Array, " N"]:
        """``-log(volume)`` inside the box, ``-inf`` outside."""
        _check_theta("BoxUniform.log_prob", theta, self.lower.shape[0])
        inside = jnp.all((theta > self.lower) & (theta < self.upper), axis=1)
        return jnp.where(inside, -jnp.sum(jnp.log(self.upper - self.lower)), -jnp.inf)

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        shape = tuple(shape)
        if len(shape) != 2 or shape[1] != self.lower.shape[0]:
            raise ValueError(f"BoxUniform.sample: shape must be (N, {self.lower.shape[0]}), got {shape}.")
        return jr.uniform(key, shape, dtype, self.lower.astype(dtype), self.upper.astype(dtype))


class Normal(AbstractDistribution):
    """The Gaussian ``N(mean, cov)`` on ``R^D`` (unbounded: ``lower = -inf``, ``upper = inf``).

    Args:
        mean: ``(D,)``.
        std: a number or ``(D,)``: independent coordinates with these standard deviations.
        cov: ``(D, D)`` symmetric positive definite covariance (instead of ``std``).
    """

    mean: Array
    chol: Array

    def __init__(self, mean, std=None, *, cov=None):
        mu = _vector("Normal", "mean", mean)
        mu = mu.reshape(-1)
        d = mu.shape[0]
        if (std is None) == (cov is None):
            raise ValueError("Normal: give exactly one of std and cov.")
        if cov is not None:
            c = np.asarray(cov, np.float64)
            if c.shape != (d, d) or not np.allclose(c, c.T):
                raise ValueError(f"Normal: cov must be a symmetric ({d}, {d}) matrix, got shape {c.shape}.")
            try:
                chol = np.linalg.cholesky(c)
            except np.linalg.LinAlgError:
                raise ValueError("Normal: cov must be positive definite.") from None
        else:
            s = np.broadcast_to(_vector("Normal", "std", std, d), (d,))
            if not np.all(s > 0):
                raise ValueError(f"Normal: std must be positive, got {s}.")
            chol = np.diag(s)
        self.mean, self.chol = jnp.asarray(mu, jnp.float32), jnp.asarray(chol, jnp.float32)

    @property
    def lower(self) -> Array:
        return jnp.full(self.mean.shape, -jnp.inf)

    @property
    def upper(self) -> Array:
        return jnp.full(self.mean.shape, jnp.inf)

    def log_prob(self, theta: Float[Array, "N D"]) -> Float[Array, " N"]:
        d = self.mean.shape[0]
        _check_theta("Normal.log_prob", theta, d)
        u = jnp.linalg.solve(self.chol, (theta - self.mean).T).T
        return (-0.5 * jnp.sum(u**2, 1) - jnp.sum(jnp.log(jnp.diag(self.chol)))
                - 0.5 * d * math.log(2 * math.pi))

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        shape = tuple(shape)
        if len(shape) != 2 or shape[1] != self.mean.shape[0]:
            raise ValueError(f"Normal.sample: shape must be (N, {self.mean.shape[0]}), got {shape}.")
        return (self.mean + jr.normal(key, shape, dtype) @ self.chol.T).astype(dtype)


def prior_bounds(name: str, prior, dim: int) -> tuple[Array, Array]:
    """``(lower, upper)`` of ``prior``'s support as ``(D,)`` vectors: its box, else ``+-inf``."""
    if not callable(getattr(prior, "sample", None)):
        raise ValueError(f"{name}: prior must have sample(key, shape) (e.g. ij.BoxUniform or ij.Normal), "
                         f"got {type(prior).__name__}.")
    bounds = []
    for what, default in (("lower", -np.inf), ("upper", np.inf)):
        value = getattr(prior, what, default)
        v = np.broadcast_to(_vector(name, f"the prior's {what}", value, dim), (dim,))
        bounds.append(jnp.asarray(v, jnp.float32))
    if not bool(jnp.all(bounds[0] < bounds[1])):
        raise ValueError(f"{name}: the prior's lower bounds must be below its upper bounds.")
    return bounds[0], bounds[1]
