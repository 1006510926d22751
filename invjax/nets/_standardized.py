"""Standardization (z-scoring) of parameters and observations, inside the model."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_array, check_key
from .._flow import AbstractFlow, AbstractWrappedFlow
from ._summaries import DeepSet, SetTransformer, TimeSeriesNetwork
from ._summarized import Summarized

_SERIES_AND_SETS = (DeepSet, SetTransformer, TimeSeriesNetwork)


def _frozen(value, what: str, positive: bool = False):
    """A statistic as stored: a float or nested tuples of floats (hashable, static); ``None`` stays."""
    if value is None:
        return None
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, jax.errors.TracerArrayConversionError) as error:
        raise ValueError(f"Standardized: {what} must be numbers known when the model is built (not traced), "
                         f"got {type(value).__name__}: {str(error)[:120]}") from error
    if not np.isfinite(v).all():
        raise ValueError(f"Standardized: {what} must be finite, got {np.count_nonzero(~np.isfinite(v))} NaN or Inf.")
    if positive and not (v > 0).all():
        raise ValueError(f"Standardized: {what} must be > 0 everywhere, got a minimum of {v.min()}.")
    return float(v) if v.ndim == 0 else _tuples(v.tolist())


def _tuples(v):
    return tuple(_tuples(a) for a in v) if isinstance(v, list) else v


def _affine(name: str, a, mean, std, what: str):
    """``(mean, std)`` as arrays of ``a``'s dtype, checked to broadcast to one sample of ``a``."""
    mean = jnp.asarray(0.0 if mean is None else mean, a.dtype)
    std = jnp.asarray(1.0 if std is None else std, a.dtype)
    sample = tuple(a.shape[1:])
    for stat in (mean, std):
        aligned = sample[len(sample) - len(stat.shape):] if stat.shape else ()
        if len(stat.shape) > len(sample) or any(a not in (1, b) for a, b in zip(stat.shape, aligned, strict=True)):
            raise ValueError(f"{name}: {what} statistics of shape {stat.shape} do not broadcast to one sample of "
                             f"{what}, of shape {sample} ({what} of shape {tuple(a.shape)}, batch first).")
    return mean, std


def _statistics(a, axes, mask_last: bool):
    """``(mean, std)`` of ``a`` over ``axes`` (batch included), keeping one-sized per-sample axes.

    With ``mask_last``, the last column of ``a`` is a mask: only rows with mask 1 count,
    and the mask column itself gets mean 0 and std 1. A constant feature gets std 1.
    """
    a = np.asarray(a, dtype=np.float64)
    axes = tuple(sorted({0, *(np.atleast_1d(axes).tolist())}))
    if any(not -a.ndim <= ax < a.ndim for ax in axes):
        raise ValueError(f"Standardized: axes {axes} out of range for an array of shape {a.shape}.")
    if mask_last:
        weight = (a[..., -1:] > 0.5).astype(np.float64)
        values = a[..., :-1]
    else:
        weight, values = np.ones_like(a[..., :1]), a
    count = np.maximum(np.sum(np.broadcast_to(weight, values.shape), axis=axes, keepdims=True), 1)
    mean = np.sum(values * weight, axis=axes, keepdims=True) / count
    std = np.sqrt(np.sum((values - mean) ** 2 * weight, axis=axes, keepdims=True) / count)
    std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    if mask_last:
        mean = np.concatenate([mean, np.zeros_like(mean[..., :1])], axis=-1)
        std = np.concatenate([std, np.ones_like(std[..., :1])], axis=-1)
    return mean[0], std[0]


class Standardized(AbstractWrappedFlow):
    """``flow`` on standardized parameters and observations, speaking the user's units.

    Parameters ``x`` and observations ``y`` of very different scales (a rate of 1e-3 beside
    a count of 1e4) slow training down or stall it; sbi's z-scoring and BayesFlow's
    standardization fix that. ``Standardized`` keeps it inside the model, so ``log_prob``,
    ``sample`` and ``ij.fit`` take and give values in the user's units:

    - ``u = (x - x_mean) / x_std``, an affine bijection: ``log_prob(x, y) =
      flow.log_prob(u, y') - sum(log x_std)`` (summed over one sample's elements);
      ``sample`` returns ``x_mean + x_std * u`` for ``u`` drawn from ``flow``;
    - ``y' = (y - y_mean) / y_std``: the condition is rescaled (no Jacobian: ``y`` is
      not a variable of the density).

    The statistics are hyper-parameters, not parameters: static fields (nested tuples of
    Python floats), which no optimizer, weight decay or ``eqx.filter`` ever sees and which
    have no gradient; they are cast to the input's dtype at every call. Build them from
    data or from the simulator with :meth:`from_data` and :meth:`from_simulator`.

    Args:
        flow: any invjax flow, or a ``Summarized`` model (``y`` is then the raw observation).
        x_mean: ``None`` (0), a number, or an array that broadcasts to one sample of ``x``
            (e.g. ``(D,)`` for ``(B, D)``; ``(C, 1, 1)`` per channel of images).
        x_std: the same, ``> 0`` everywhere; ``None`` is 1.
        y_mean: the same for the condition ``y``; ``None`` for an unconditional flow.
        y_std: the same for the condition ``y``.

    Shapes: ``x``: ``(B, *x_shape)``; ``y``: ``(B, *y_shape)``; ``log_prob``: ``(B,)``.

    Example:
        >>> import jax, jax.numpy as jnp, invjax as ij
        >>> flow = ij.nets.RealNVP(2, depth=2, hidden=8, key=jax.random.key(0))
        >>> model = ij.nets.Standardized(flow, x_mean=jnp.array([100.0, -3.0]), x_std=jnp.array([10.0, 0.1]))
        >>> model.sample(jax.random.key(1), (5000, 2)).mean(0).round(0)
        Array([100.,  -3.], dtype=float32)
    """

    flow: AbstractFlow
    x_mean: float | tuple | None = eqx.field(static=True)
    x_std: float | tuple | None = eqx.field(static=True)
    y_mean: float | tuple | None = eqx.field(static=True)
    y_std: float | tuple | None = eqx.field(static=True)

    def __init__(self, flow: AbstractFlow, x_mean=None, x_std=None, y_mean=None, y_std=None):
        if not isinstance(flow, AbstractFlow):
            raise ValueError(f"Standardized: flow must be an invjax flow (or Summarized model), "
                             f"got {type(flow).__name__}.")
        self.flow = flow
        self.x_mean, self.y_mean = _frozen(x_mean, "x_mean"), _frozen(y_mean, "y_mean")
        self.x_std, self.y_std = _frozen(x_std, "x_std", True), _frozen(y_std, "y_std", True)

    @classmethod
    def from_data(cls, flow: AbstractFlow, x, y=None, *, x_axes=0, y_axes=None) -> Standardized:
        """The model standardized by the mean and standard deviation of samples ``(x, y)``.

        Args:
            flow: any invjax flow, or a ``Summarized`` model.
            x: ``(N, *x_shape)`` parameters (or data, for an unconditional flow).
            y: ``(N, *y_shape)`` observations, or ``None`` (``y`` is not standardized).
            x_axes: the axes of ``x`` to pool statistics over, besides the batch axis 0:
                ``0``, one statistic per element of a sample; ``(0, 2, 3)`` one per
                channel of images.
            y_axes: the same for ``y``. Default ``0``, except for a ``Summarized`` model
                whose summary network is a :class:`DeepSet`, :class:`SetTransformer` or
                :class:`TimeSeriesNetwork`: every axis but the last (one statistic per
                feature, pooled over the elements or time steps, so a set stays
                exchangeable); when it is ``masked``, only the elements that are there
                count and the mask column stays as it is.

        A constant feature (standard deviation 0) is only shifted (its std is set to 1).
        """
        summary = getattr(flow, "summary", None) if isinstance(flow, Summarized) else None
        structured = isinstance(summary, _SERIES_AND_SETS)
        if y_axes is None:
            y_axes = tuple(range(np.ndim(y) - 1)) if structured and y is not None else 0
        x_stats = _statistics(x, x_axes, False)
        y_stats = (None, None) if y is None else _statistics(y, y_axes, structured and summary.masked)
        return cls(flow, *x_stats, *y_stats)

    @classmethod
    def from_simulator(cls, flow: AbstractFlow, simulate, *, key: PRNGKeyArray, n: int = 10_000,
                       x_axes=0, y_axes=None) -> Standardized:
        """:meth:`from_data` on ``n`` pairs ``simulate(key, n) -> (x, y)`` (or ``x``)."""
        check_key("Standardized.from_simulator", key)
        drawn = simulate(key, n)
        x, y = drawn if isinstance(drawn, tuple | list) else (drawn, None)
        return cls.from_data(flow, x, y, x_axes=x_axes, y_axes=y_axes)

    def _x_affine(self, a, what: str = "x"):
        """``(x_mean, x_std, sum(log x_std))`` for inputs like ``a`` (checked)."""
        check_array("Standardized", a, what)
        mean, std = _affine("Standardized", a, self.x_mean, self.x_std, "x")
        return mean, std, jnp.sum(jnp.broadcast_to(jnp.log(std), a.shape[1:]))

    def condition(self, y):
        """The standardized condition ``(y - y_mean) / y_std`` (``y`` itself when it is not standardized)."""
        if self.y_mean is None and self.y_std is None:
            return y
        if y is None:
            raise ValueError("Standardized: the model standardizes the condition y, but y is None; pass y "
                             "(the last argument).")
        y = jnp.asarray(y)
        y = y if jnp.issubdtype(y.dtype, jnp.floating) else y.astype(self.dtype)
        mean, std = _affine("Standardized", y, self.y_mean, self.y_std, "y")
        return (y - mean) / std

    def forward(self, x: Float[Array, "B ..."], cond=None):
        """``(z, logdet)``: the flow's latent of the standardized ``x``; ``logdet`` includes ``-sum(log x_std)``."""
        mean, std, log_std = self._x_affine(x)
        z, logdet = self.flow.forward((x - mean) / std, self.condition(cond))
        return z, logdet - log_std

    def inverse_and_log_det(self, z: Float[Array, "B ..."], cond=None):
        """``(x, log|det dx/dz|)`` in the user's units: ``x = x_mean + x_std * flow.inverse(z)``."""
        mean, std, log_std = self._x_affine(z, "z")
        u, logdet = self.flow.inverse_and_log_det(z, self.condition(cond))
        return mean + std * u, logdet + log_std

    def initialize(self, x: Float[Array, "B ..."], cond=None) -> Standardized:
        """ActNorm data initialisation of the flow on the standardized batch; returns a new model."""
        mean, std, _ = self._x_affine(x)
        return eqx.tree_at(lambda m: m.flow, self, self.flow.initialize((x - mean) / std, self.condition(cond)))
