"""Affine, additive (Dinh et al., 2017) and rational-quadratic spline (Durkan et al., 2019)
coupling layers, with a fused backward."""


import abc

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_layout, check_spatial_dims
from .._layer import AbstractLayer
from ._util import split_channels, sum_per_sample
from ._conditioners import build_conditioner, default_conditioner
from ._scales import AbstractScale, SigmoidScale, check_scale
from ._spline import RationalQuadraticSpline, check_transform


class AbstractCoupling(AbstractLayer):
    """Keep the first ``split`` channels (``channels // 2`` by default), transform the rest given them.

    ``y1 = x1``, ``y2 = T(x2; h)`` with ``h = conditioner(x1)``. Subclasses give ``T``
    and its inverse; the class provides forward, inverse and the fused backward: from
    ``y`` it runs the conditioner once on ``y1 = x1``, inverts ``T`` with that result and
    takes the VJP from the same evaluation (design note 3 in ``docs/engine.md``).
    """

    conditioner: eqx.AbstractVar[eqx.Module]
    in_channels: eqx.AbstractVar[int]
    spatial_dims: eqx.AbstractVar[int]
    cond_channels: eqx.AbstractVar[int]
    split: eqx.AbstractVar[int]

    @abc.abstractmethod
    def _transform(self, h, x2):
        """``(y2, logdet)`` from the conditioner output ``h`` and ``x2``."""

    @abc.abstractmethod
    def _inverse_transform(self, h, y2):
        """``(x2, logdet of the inverse)``."""

    def _check(self, x):
        check_layout(type(self).__name__, x, self.in_channels, self.spatial_dims)

    def _conditioner_out(self, x1, cond):
        return jax.vmap(self.conditioner)(_with_cond(type(self).__name__, x1, cond, self.cond_channels))

    def _split(self, v):
        return split_channels(v, self.split)

    def _apply(self, v, cond, transform):
        self._check(v)
        a, b = self._split(v)
        b, logdet = transform(self._conditioner_out(a, cond), b)
        return jnp.concatenate([a, b], axis=1), logdet

    def forward(self, x, cond=None):
        return self._apply(x, cond, self._transform)

    def inverse_and_log_det(self, y, cond=None):
        return self._apply(y, cond, self._inverse_transform)

    def _fused(self, v, dv, dlogdet, cond, rebuild, differentiate):
        # v is one side of the map (y in the backward, x in the inverse backward);
        # rebuild gives the other side's second half, differentiate is the map whose VJP
        # we need. The conditioner runs once, for both.
        self._check(v)
        a, b = self._split(v)
        da, db = self._split(dv)
        h, pull_conditioner = eqx.filter_vjp(type(self)._conditioner_out, self, a, cond)
        other, _ = rebuild(h, b)
        _, pull_transform = jax.vjp(differentiate, h, other)
        dh, dother = pull_transform((db, dlogdet))
        dlayer, da_conditioner, dcond = pull_conditioner(dh)
        value = jnp.concatenate([a, other], axis=1)
        return value, jnp.concatenate([da + da_conditioner, dother], axis=1), dlayer, dcond

    def backward(self, y, dy, dlogdet, cond=None):
        return self._fused(y, dy, dlogdet, cond, self._inverse_transform, self._transform)

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        return self._fused(x, dx, dlogdet, cond, self._transform, self._inverse_transform)

    # A new coupling is the identity map (zero-initialised conditioner output): nothing
    # to fit to data.
    def initialize(self, x, cond=None):
        return self, self.forward(x, cond)[0]

    def initialize_inverse(self, y, cond=None):
        return self, self.inverse(y, cond)


def _with_cond(name, x1, cond, cond_channels):
    """The conditioner's input: ``x1`` with the condition's channels appended.

    A vector condition ``(B, K)`` is broadcast over the spatial axes; a feature map
    ``(B, K, *spatial)`` must have ``x1``'s spatial sizes.
    """
    if cond_channels == 0:
        return x1
    if cond is None:
        raise ValueError(f"{name} is conditional ({cond_channels} condition channels): cond is required.")
    expected = f"(B, {cond_channels}) or (B, {cond_channels}, {', '.join(map(str, x1.shape[2:]))})"
    if cond.shape[0] != x1.shape[0] or cond.shape[1] != cond_channels:
        raise ValueError(f"{name}: expected cond of shape {expected}; got shape {tuple(cond.shape)}.")
    if cond.ndim == 2:
        cond = jnp.broadcast_to(cond.reshape(cond.shape + (1,) * (x1.ndim - 2)), cond.shape + x1.shape[2:])
    elif cond.shape[2:] != x1.shape[2:]:
        raise ValueError(f"{name}: expected cond of shape {expected}; got shape {tuple(cond.shape)}.")
    return jnp.concatenate([x1, cond.astype(x1.dtype)], axis=1)


def _set_sizes(coupling, in_channels, hidden, spatial_dims, conditioner, cond_channels, split, per_element, key):
    """Check and store a coupling's sizes; build its default conditioner, ``per_element``
    outputs for each transformed channel, if none is given."""
    half = check_split(type(coupling).__name__, in_channels, spatial_dims, split)
    coupling.in_channels, coupling.spatial_dims = in_channels, spatial_dims
    coupling.cond_channels, coupling.split = cond_channels, half
    if conditioner is None:
        conditioner = default_conditioner(half + cond_channels, per_element * (in_channels - half), hidden,
                                          spatial_dims, key=key)
    coupling.conditioner = conditioner


def check_split(name, in_channels, spatial_dims, split=None):
    """Validate a coupling's sizes; returns the number of kept channels."""
    if in_channels < 2:
        raise ValueError(f"{name} needs at least 2 channels to split, got in_channels={in_channels}.")
    check_spatial_dims(name, spatial_dims, (0, 1, 2, 3))
    split = in_channels // 2 if split is None else split
    if not 1 <= split < in_channels:
        raise ValueError(f"{name}: split must satisfy 1 <= split < in_channels ({in_channels}), got {split}.")
    return split


class AffineCoupling(AbstractCoupling):
    """``y2 = s * x2 + t`` with a bounded scale ``s = scale(a)``.

    By default ``s = 0.5 + 1.5 * sigmoid(a + c)``, ``c`` chosen so that ``a = 0`` gives
    ``s = 1`` (:class:`SigmoidScale`). Bounding ``s`` keeps every inverse well
    conditioned, so activations reconstructed through a deep network stay accurate in
    float32 (as Glow's and InvertibleNetworks.jl's sigmoid scales do).

    Args:
        in_channels: ``C`` (at least 2); the first ``C // 2`` condition the rest.
        hidden: hidden width of the default conditioner.
        key: PRNG key.
        spatial_dims: 0 for vectors ``(B, C)`` (:class:`MLP` conditioner), 1 for signals,
            2 for images (default), 3 for volumes (:class:`ResidualBlock` conditioner).
        conditioner: optional per-sample module mapping ``(C // 2 + K, *spatial)`` to
            ``(2 * (C - C // 2), *spatial)``; replaces the default.
        scale: how the raw output becomes ``s``, a value: ``ij.layers.SigmoidScale(low,
            high)`` (default ``(0.5, 2.0)``, centred) or ``ij.layers.ExpClampScale(clamp)``
            (InvertibleNetworks.jl's ``activation``).
        cond_channels: ``K``; if positive the layer is conditional: ``cond`` of shape
            ``(B, K)`` (broadcast over space) or ``(B, K, *spatial)`` joins the
            conditioner's input, and receives gradients.
        split: how many leading channels are kept and condition the others
            (default ``C // 2``); the conditional HINT couples its ``x`` lane to its
            ``y`` lane this way.

    Shapes: ``(B, C, *spatial)`` -> same. logdet: ``sum(log s)`` per sample.
    """

    conditioner: eqx.Module
    in_channels: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    scale: AbstractScale
    cond_channels: int = eqx.field(static=True)
    split: int = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        *,
        key,
        spatial_dims: int = 2,
        conditioner: eqx.Module | None = None,
        scale: AbstractScale = SigmoidScale(),
        cond_channels: int = 0,
        split: int | None = None,
    ):
        self.scale = check_scale("AffineCoupling", scale)
        _set_sizes(self, in_channels, hidden, spatial_dims, conditioner, cond_channels, split, 2, key)

    def _scale_shift(self, h):
        raw, shift = jnp.split(h, 2, axis=1)
        return (*self.scale(raw), shift)

    def _transform(self, h, x2):
        scale, log_scale, shift = self._scale_shift(h)
        return x2 * scale + shift, sum_per_sample(log_scale)

    def _inverse_transform(self, h, y2):
        scale, log_scale, shift = self._scale_shift(h)
        return (y2 - shift) / scale, -sum_per_sample(log_scale)


class AdditiveCoupling(AbstractCoupling):
    """``y2 = x2 + t(x1)``: volume preserving (NICE), logdet 0.

    Arguments as :class:`AffineCoupling`; a custom conditioner maps
    ``(split + K, *spatial)`` to ``(C - split, *spatial)``.
    """

    conditioner: eqx.Module
    in_channels: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    cond_channels: int = eqx.field(static=True)
    split: int = eqx.field(static=True)

    def __init__(
        self, in_channels: int, hidden: int, *, key, spatial_dims: int = 2, conditioner=None, cond_channels: int = 0,
        split: int | None = None,
    ):
        _set_sizes(self, in_channels, hidden, spatial_dims, conditioner, cond_channels, split, 1, key)

    def _transform(self, h, x2):
        return x2 + h, jnp.zeros(x2.shape[:1], x2.dtype)

    def _inverse_transform(self, h, y2):
        return y2 - h, jnp.zeros(y2.shape[:1], y2.dtype)


class SplineCoupling(AbstractCoupling):
    """``y2 = RQS(x2; h(x1))``: a rational-quadratic spline coupling (Durkan et al., 2019).

    Each transformed element gets its own monotone spline (:class:`RationalQuadraticSpline`:
    ``K`` bins on ``[-B, B]``, the identity outside) whose ``3K - 1`` parameters the
    conditioner computes from the kept channels. Inverse and log-determinant are analytic
    (a quadratic's root per element; the sum of ``log dy/dx`` over the transformed
    channels). A new coupling is the identity (zero conditioner output: equal bins, unit
    derivatives). The backward is :class:`AbstractCoupling`'s fused one.

    Args:
        in_channels: ``C`` (at least 2); the first ``C // 2`` condition the rest.
        hidden: hidden width of the default conditioner.
        key: PRNG key.
        spatial_dims: 0 for vectors ``(B, C)``, 1 for signals, 2 for images (default), 3
            for volumes.
        conditioner: optional per-sample module mapping ``(split + K, *spatial)`` to
            ``((3 bins - 1) * (C - split), *spatial)`` (parameter-major: the first
            ``C - split`` channels are every element's first width parameter, and so on);
            replaces the default.
        spline: the spline, a value (default ``ij.layers.RationalQuadraticSpline(bins=8,
            bound=3.0)``).
        cond_channels: ``K``; if positive the layer is conditional (as :class:`AffineCoupling`).
        split: how many leading channels are kept (default ``C // 2``).

    Shapes: ``(B, C, *spatial)`` -> same. logdet: ``sum(log dy2/dx2)`` per sample.
    """

    conditioner: eqx.Module
    in_channels: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    spline: RationalQuadraticSpline
    cond_channels: int = eqx.field(static=True)
    split: int = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        *,
        key,
        spatial_dims: int = 2,
        conditioner: eqx.Module | None = None,
        spline: RationalQuadraticSpline = RationalQuadraticSpline(),
        cond_channels: int = 0,
        split: int | None = None,
    ):
        if not isinstance(spline, RationalQuadraticSpline):
            raise ValueError(f"SplineCoupling: spline must be an ij.layers.RationalQuadraticSpline, got {spline!r}.")
        self.spline = spline
        _set_sizes(self, in_channels, hidden, spatial_dims, conditioner, cond_channels, split,
                   spline.params_per_element, key)

    def _params(self, h, v):
        """The conditioner output ``(B, P n, *spatial)`` as ``(B, P, n, *spatial)``, ``P = 3K - 1``."""
        count = self.spline.params_per_element
        if h.shape[1] != count * v.shape[1]:
            raise ValueError(f"SplineCoupling: the conditioner gave {h.shape[1]} channels; a spline of "
                             f"{self.spline.bins} bins needs (3 * bins - 1) * {v.shape[1]} = {count * v.shape[1]}.")
        return h.reshape(h.shape[:1] + (count, v.shape[1]) + h.shape[2:])

    def _transform(self, h, x2):
        y2, log_derivative = self.spline(self._params(h, x2), x2)
        return y2, sum_per_sample(log_derivative)

    def _inverse_transform(self, h, y2):
        x2, log_derivative = self.spline.inverse(self._params(h, y2), y2)
        return x2, sum_per_sample(log_derivative)


def make_coupling(in_channels: int, hidden: int, *, key, spatial_dims: int, cond_channels: int = 0,
                  split: int | None = None, scale: AbstractScale = SigmoidScale(),
                  transform: RationalQuadraticSpline | None = None, make_conditioner=None) -> AbstractCoupling:
    """The coupling a network or composite layer builds: an :class:`AffineCoupling` with
    ``scale`` (``transform=None``) or a :class:`SplineCoupling` with the spline ``transform``;
    its conditioner from ``make_conditioner`` (``None``: the coupling's default)."""
    check_transform("make_coupling", transform)
    half = in_channels // 2 if split is None else split
    per_element = 2 if transform is None else transform.params_per_element
    conditioner = build_conditioner(make_conditioner, half + cond_channels, per_element * (in_channels - half), key)
    common = dict(spatial_dims=spatial_dims, key=key, cond_channels=cond_channels, split=split, conditioner=conditioner)
    if transform is None:
        return AffineCoupling(in_channels, hidden, scale=scale, **common)
    return SplineCoupling(in_channels, hidden, spline=transform, **common)
