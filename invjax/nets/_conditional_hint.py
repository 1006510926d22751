"""Conditional HINT (Kruse et al., 2021): a joint flow of ``(x, y)`` whose triangular
structure gives the posterior ``p(x | y)``; single-scale and multiscale."""


from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from .._backprop import AbstractBackprop, Invertible
from .._checks import (
    as_checked_arrays,
    check_array,
    check_cond,
    check_dtype,
    check_initialize_batch,
    check_layout,
    check_spatial_dims,
)
from .._distributions import AbstractDistribution, StandardNormal
from .._flow import AbstractFlow, check_flow_options
from .._layer import AbstractLayer
from ..layers import HaarSqueeze, Stack
from ..layers._lane import set_lanes
from ..layers._conditional_hint import conditional_hint_step
from ..layers._conditioners import check_make_conditioner
from ..layers._hint import check_permute
from ..layers._scales import AbstractScale, SigmoidScale, check_scale
from ..layers._spline import RationalQuadraticSpline, check_transform
from ._multiscale import multiscale
from ._options import check_layer_class, check_positive


class AbstractJointFlow(AbstractFlow):
    """A flow of ``(x, y)`` whose ``y`` lane does not depend on ``x``, read as ``p(x | y)``.

    The body runs on ``v = concat([y, x], axis=1)`` and returns ``concat([z_y, z_x])``.
    Because ``z_y`` depends on ``y`` only, ``p(x | y) = base(z_x) |det dz_x/dx|``: the
    conditional methods (``forward``, ``inverse``, ``log_prob``, ``sample``, with ``y`` as
    ``cond``) use the same body with the ``y`` lane's log-determinant switched off; the
    joint methods (``forward_joint``, ``inverse_joint``, ``log_prob_joint``) use it whole;
    ``forward_y`` and ``inverse_y`` run the ``y`` lane alone (the ``x`` lane switched off).
    Every call is one pass of the engine, so all of them are memory-frugal. ``base`` is the
    distribution of ``z_x``; ``z_y`` is standard normal.

    The condition ``y`` is a feature map with the spatial sizes of ``x``
    (``cond_spatial = True``; for vectors, a vector).
    """

    body: eqx.AbstractVar[AbstractLayer]
    backprop: eqx.AbstractVar[AbstractBackprop]
    in_channels: eqx.AbstractVar[int]
    cond_channels: eqx.AbstractVar[int]
    spatial_dims: eqx.AbstractVar[int]
    divisible_by: eqx.AbstractVar[int]


    cond_spatial: ClassVar[bool] = True

    def _check_lane(self, v, channels, what):
        check_layout(type(self).__name__, v, channels, self.spatial_dims, divisible_by=self.divisible_by, what=what)

    def _check_input(self, x, cond):
        """The checked ``(x, y)`` as JAX arrays (NumPy data converted as JAX would)."""
        name = type(self).__name__
        self._check_lane(x, self.in_channels, "x")
        check_cond(name, cond, x, self.cond_channels, cond_spatial=True)
        return as_checked_arrays(name, self, x, cond)

    def _join(self, x, y):
        return jnp.concatenate([y, x], axis=1)

    def _part(self, w):
        return w[:, self.cond_channels :], w[:, : self.cond_channels]

    def _conditional_body(self):
        return set_lanes(self.body, "y", counts=False)

    def forward(self, x, cond=None):
        """``(z_x, log|det dz_x/dx|)`` given ``y = cond``."""
        x, cond = self._check_input(x, cond)
        w, logdet = self.backprop.forward(self._conditional_body(), self._join(x, cond), None)
        return self._part(w)[0], logdet

    def inverse_and_log_det(self, z, cond=None):
        """``(x, log|det dx/dz_x|)`` given ``y = cond``: a posterior draw for ``z ~ base``."""
        z, cond = self._check_input(z, cond)
        z_y, _ = self.forward_y(cond)
        w, logdet = self.backprop.inverse_and_log_det(self._conditional_body(), self._join(z, z_y), None)
        return self._part(w)[0], logdet

    def _y_lane(self, run, v, what):
        """``run`` (the engine's forward or inverse) on the ``y`` lane alone, the ``x`` lane switched off."""
        check_array(type(self).__name__, v, what)
        self._check_lane(v, self.cond_channels, what)
        check_dtype(type(self).__name__, v, self, what)
        v = jnp.asarray(v)
        placeholder = jnp.zeros((v.shape[0], self.in_channels, *v.shape[2:]), self.dtype)
        w, logdet = run(set_lanes(self.body, "x", active=False), self._join(placeholder, v), None)
        return self._part(w)[1], logdet

    def forward_y(self, y):
        """``(z_y, log|det dz_y/dy|)``: the ``y`` lane alone (the ``x`` lane switched off)."""
        return self._y_lane(self.backprop.forward, y, "y")

    def inverse_y(self, z_y):
        """``y`` for the ``y`` lane's latent ``z_y``: the inverse of :meth:`forward_y`,
        InvertibleNetworks.jl's ``inverse_Y``; one pass of the engine on the ``y`` lane alone.

        Args:
            z_y: ``(B, C_y, *spatial)``.

        Returns:
            ``y``: the shape of ``z_y``.
        """
        return self._y_lane(self.backprop.inverse_and_log_det, z_y, "z_y")[0]

    def forward_joint(self, x, y):
        """``(z_x, z_y, log|det d(z_x, z_y)/d(x, y)|)``."""
        x, y = self._check_input(x, y)
        w, logdet = self.backprop.forward(self.body, self._join(x, y), None)
        return (*self._part(w), logdet)

    def inverse_joint(self, z_x, z_y):
        """``(x, y, log|det d(x, y)/d(z_x, z_y)|)``: a draw from the joint for latents ``z_x, z_y``."""
        z_x, z_y = self._check_input(z_x, z_y)
        w, logdet = self.backprop.inverse_and_log_det(self.body, self._join(z_x, z_y), None)
        return (*self._part(w), logdet)

    def log_prob_joint(self, x, y):
        """``log p(x, y)``, per sample: the joint objective InvertibleNetworks.jl trains with."""
        z_x, z_y, logdet = self.forward_joint(x, y)
        return self.base.log_prob(z_x) + StandardNormal().log_prob(z_y) + logdet

    def initialize(self, x, cond=None):
        """ActNorm data initialisation of both lanes on a batch ``(x, y)``."""
        x, cond = self._check_input(x, cond)
        check_initialize_batch(type(self).__name__, x, cond)
        body, _ = self.body.initialize(self._join(x, cond))
        return eqx.tree_at(lambda f: f.body, self, body)


def _check_step_options(name, permute, scale, transform, make_conditioner):
    check_permute(name, permute)
    check_scale(name, scale)
    check_transform(name, transform)
    check_make_conditioner(name, make_conditioner)


def _check_sizes(name, in_channels, cond_channels, minimum, **sizes):
    check_positive(name, **sizes)
    if not all(isinstance(c, int) and c >= minimum for c in (in_channels, cond_channels)):
        raise ValueError(
            f"{name} needs in_channels and cond_channels >= {minimum}, got {in_channels!r} and {cond_channels!r}."
        )


class ConditionalHINT(AbstractJointFlow):
    """InvertibleNetworks.jl's conditional HINT: ``depth`` joint steps on ``(x, y)``.

    A model of the joint ``p(x, y)`` whose triangular structure gives the posterior:
    ``log_prob(x, y)`` is ``log p(x | y)`` and ``sample(key, shape, y)`` draws from it;
    ``log_prob_joint`` is ``log p(x, y)``. Train with either.

    Args:
        in_channels: ``C_x`` (the size of ``x`` vectors); at least 2.
        depth: number of steps (:class:`~invjax.layers.ConditionalHINTStep`).
        hidden: hidden width of the couplings' conditioners.
        cond_channels: ``C_y``; at least 2.
        key: PRNG key.
        spatial_dims: 0 for vectors, 1, 2 (images, default) or 3 (volumes).
        permute: the lane HINT couplings' permutation, ``"lower"`` (default), ``"none"``
            (InvertibleNetworks.jl's), ``"both"`` or ``"full"`` (see
            :class:`~invjax.layers.HINTCoupling`).
        scale: every coupling's scale, a value (default ``ij.layers.SigmoidScale()``, in
            ``(0.5, 2)``, identity at initialisation); InvertibleNetworks.jl's
            ``activation=`` (e.g. ``SigmoidLayer(low=0.5, high=1)`` is
            ``ij.layers.SigmoidScale(0.5, 1.0, centred=False)``).
        transform: ``None`` (default: affine couplings) or a spline value,
            ``ij.layers.RationalQuadraticSpline(bins, bound)``: every coupling is then a
            :class:`~invjax.layers.SplineCoupling` (Neural Spline Flows; ``scale`` unused).
        make_conditioner: ``None`` (default) or a function ``(in_channels, out_channels, *,
            key) -> module`` building every coupling's conditioner (see
            :class:`~invjax.layers.HINTCoupling`; e.g. InvertibleNetworks.jl's 3-3-3 blocks).
        base: the distribution of ``z_x`` (default ``ij.StandardNormal()``).
        backprop: ``ij.Invertible()`` (default) or ``ij.Autodiff()``.

    Shapes: ``x``: ``(B, C_x, *S)``, ``cond = y``: ``(B, C_y, *S)`` -> ``z``: shape of
    ``x``, ``logdet``: ``(B,)``.

    Example:
        >>> import jax, jax.numpy as jnp, invjax as ij
        >>> flow = ij.nets.ConditionalHINT(2, 2, 16, cond_channels=3, key=jax.random.key(0), spatial_dims=0)
        >>> y = jnp.ones((5, 3))
        >>> flow.sample(jax.random.key(1), (5, 2), y).shape
        (5, 2)
    """

    body: AbstractLayer
    base: AbstractDistribution
    backprop: AbstractBackprop
    in_channels: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    cond_channels: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    permute: str = eqx.field(static=True)
    scale: AbstractScale
    transform: RationalQuadraticSpline | None

    divisible_by: ClassVar[int] = 1

    def __init__(self, in_channels: int, depth: int, hidden: int, *, cond_channels: int, key,
                 spatial_dims: int = 2, permute: str = "lower", scale: AbstractScale = SigmoidScale(),
                 transform: RationalQuadraticSpline | None = None, make_conditioner=None, base=StandardNormal(),
                 backprop=Invertible()):
        name = "ConditionalHINT"
        check_spatial_dims(name, spatial_dims, (0, 1, 2, 3))
        _check_sizes(name, in_channels, cond_channels, 2, depth=depth, hidden=hidden)
        _check_step_options(name, permute, scale, transform, make_conditioner)
        make = lambda k: conditional_hint_step(in_channels, cond_channels, hidden, key=k, spatial_dims=spatial_dims,
                                               permute=permute, scale=scale, transform=transform,
                                               make_conditioner=make_conditioner)
        self.body = Stack(make, depth, key=key)
        self.base, self.backprop = check_flow_options(name, base, backprop)
        self.in_channels, self.depth, self.hidden = in_channels, depth, hidden
        self.cond_channels, self.spatial_dims, self.permute, self.scale = cond_channels, spatial_dims, permute, scale
        self.transform = transform


class MultiscaleConditionalHINT(AbstractJointFlow):
    """Conditional HINT at ``levels`` scales, as InvertibleNetworks.jl's
    ``NetworkMultiScaleConditionalHINT``.

    Each level squeezes ``x`` and ``y``, runs ``depth`` joint steps and factors out half
    of each lane (``split_scales=True``; ``False`` keeps every channel). Methods and shapes as
    :class:`ConditionalHINT`; spatial sizes must be divisible by ``2**levels`` and
    single-channel images are fine.

    Args:
        in_channels: ``C_x``.
        levels: number of scales.
        depth: joint steps per level.
        hidden: hidden width of the couplings' conditioners.
        cond_channels: ``C_y``.
        key: PRNG key.
        spatial_dims: 1, 2 (images, default) or 3 (volumes).
        squeeze: the squeeze, a layer class: ``ij.layers.HaarSqueeze`` (default, as
            :class:`MultiscaleHINT`), ``ij.layers.Squeeze``, or InvertibleNetworks.jl's
            patterns (its default here is ``ShuffleLayer``'s checkerboard:
            ``ij.layers.CheckerboardSqueeze``); each lane is squeezed on its own.
        permute: the lane HINT couplings' permutation (default ``"lower"``), as
            :class:`ConditionalHINT`'s.
        scale: every coupling's scale, a value (default ``ij.layers.SigmoidScale()``), as
            :class:`ConditionalHINT`'s (InvertibleNetworks.jl's ``activation=``).
        transform: ``None`` (default) or ``ij.layers.RationalQuadraticSpline(bins, bound)``,
            as :class:`ConditionalHINT`'s.
        split_scales: ``True`` (default): factor half of each lane out after every level
            but the last; ``False`` (InvertibleNetworks.jl's default): squeeze at every
            level and keep every channel.
        make_conditioner: ``None`` (default) or a function ``(in_channels, out_channels, *,
            key) -> module`` building every coupling's conditioner (see
            :class:`~invjax.layers.HINTCoupling`; e.g. InvertibleNetworks.jl's 3-3-3 blocks).
        base: the distribution of ``z_x`` (default ``ij.StandardNormal()``).
        backprop: ``ij.Invertible()`` (default) or ``ij.Autodiff()``.
    """

    body: AbstractLayer
    base: AbstractDistribution
    backprop: AbstractBackprop
    in_channels: int = eqx.field(static=True)
    levels: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    cond_channels: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    squeeze: type = eqx.field(static=True)
    permute: str = eqx.field(static=True)
    scale: AbstractScale
    split_scales: bool = eqx.field(static=True)
    transform: RationalQuadraticSpline | None

    def __init__(self, in_channels: int, levels: int, depth: int, hidden: int, *, cond_channels: int, key,
                 spatial_dims: int = 2, squeeze: type = HaarSqueeze, permute: str = "lower",
                 scale: AbstractScale = SigmoidScale(), split_scales: bool = True,
                 transform: RationalQuadraticSpline | None = None, make_conditioner=None,
                 base=StandardNormal(), backprop=Invertible()):
        name = "MultiscaleConditionalHINT"
        check_spatial_dims(name, spatial_dims, (1, 2, 3))
        _check_sizes(name, in_channels, cond_channels, 1, levels=levels, depth=depth, hidden=hidden)
        check_layer_class(name, "squeeze", squeeze)
        _check_step_options(name, permute, scale, transform, make_conditioner)

        def step(lanes, _, key):
            cy, cx = lanes
            return conditional_hint_step(cx, cy, hidden, key=key, spatial_dims=spatial_dims, permute=permute,
                                         scale=scale, transform=transform, make_conditioner=make_conditioner)

        self.body = multiscale(step, (cond_channels, in_channels), levels, depth, spatial_dims, squeeze(), key=key,
                               factor_out=bool(split_scales))
        self.base, self.backprop = check_flow_options(name, base, backprop)
        self.in_channels, self.levels, self.depth, self.hidden = in_channels, levels, depth, hidden
        self.cond_channels, self.spatial_dims, self.squeeze = cond_channels, spatial_dims, squeeze
        self.permute, self.scale, self.split_scales = permute, scale, bool(split_scales)
        self.transform = transform

    @property
    def divisible_by(self) -> int:
        return 2**self.levels
