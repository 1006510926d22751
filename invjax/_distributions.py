"""Base distributions of flows: values a flow takes as ``base=``.

A flow's density is ``log p(x) = base.log_prob(z) + logdet``; samples are
``inverse(base.sample(...))``. Any object with these two methods works (a learned prior,
a heavier-tailed base); the ones here are Equinox modules, so their parameters train with
the flow's.
"""

from __future__ import annotations

import abc
import math

import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._strict import AbstractStrictModule
from .layers._util import sum_per_sample


def standard_normal_log_prob(z: Float[Array, "B ..."]) -> Float[Array, " B"]:
    """Log density of a standard normal, summed over all but the batch axis."""
    return -0.5 * sum_per_sample(z**2) - 0.5 * math.prod(z.shape[1:]) * math.log(2 * math.pi)


class AbstractDistribution(AbstractStrictModule):
    """A distribution over batches: ``log_prob(z) -> (B,)`` and ``sample(key, shape, dtype)``."""

    @abc.abstractmethod
    def log_prob(self, z: Float[Array, "B ..."]) -> Float[Array, " B"]:
        """Log density of each sample of the batch ``z``."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...], dtype) -> Array:
        """A batch of ``shape`` (batch axis first) in ``dtype``."""


class StandardNormal(AbstractDistribution):
    """``N(0, I)`` of any shape; no parameters. The default base of every flow."""

    def log_prob(self, z):
        return standard_normal_log_prob(z)

    def sample(self, key, shape, dtype=jnp.float32):
        return jr.normal(key, tuple(shape), dtype)


class DiagonalNormal(AbstractDistribution):
    """``N(loc, diag(exp(log_scale))^2)`` with a learned mean and scale per element.

    Args:
        shape: the shape of one sample (no batch axis), e.g. ``(2,)`` or ``(3, 8, 8)``;
            or a prefix of it that broadcasts, e.g. ``(3, 1, 1)`` for one mean and scale
            per channel of images of any size.

    Starts as the standard normal (``loc = 0``, ``log_scale = 0``).
    """

    loc: Array
    log_scale: Array

    def __init__(self, shape: tuple[int, ...]):
        if not isinstance(shape, tuple | list) or not all(isinstance(s, int) and s > 0 for s in shape):
            raise ValueError(f"DiagonalNormal: shape must be a tuple of positive ints, got {shape!r}.")
        self.loc = jnp.zeros(tuple(shape))
        self.log_scale = jnp.zeros(tuple(shape))

    def _check(self, z):
        try:
            shape = jnp.broadcast_shapes(z.shape[1:], self.loc.shape)
        except ValueError:
            shape = None
        if shape != tuple(z.shape[1:]):
            raise ValueError(
                f"DiagonalNormal: expected samples of shape (B, {', '.join(map(str, self.loc.shape))}) "
                f"(or a shape those broadcast to); got shape {tuple(z.shape)}."
            )

    def log_prob(self, z):
        self._check(z)
        scale = jnp.exp(self.log_scale)
        u = jnp.broadcast_to((z - self.loc) / scale, z.shape)
        return standard_normal_log_prob(u) - sum_per_sample(jnp.broadcast_to(self.log_scale, z.shape))

    def sample(self, key, shape, dtype=jnp.float32):
        eps = jr.normal(key, tuple(shape), dtype)
        self._check(eps)
        return (self.loc + jnp.exp(self.log_scale) * eps).astype(dtype)


def check_base(name: str, base) -> AbstractDistribution:
    if not (callable(getattr(base, "log_prob", None)) and callable(getattr(base, "sample", None))):
        raise ValueError(
            f"{name}: base must have log_prob(z) and sample(key, shape, dtype) (e.g. ij.StandardNormal()), "
            f"got {type(base).__name__}."
        )
    return base
