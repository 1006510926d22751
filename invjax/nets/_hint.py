"""HINT networks (Kruse et al., 2021): single-scale and multiscale, unconditional or conditional."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx

from .._backprop import AbstractBackprop, Invertible
from .._checks import check_spatial_dims
from .._distributions import AbstractDistribution, StandardNormal
from .._flow import AbstractNetwork, check_flow_options
from .._layer import AbstractLayer
from ..layers import ActNorm, Chain, HaarSqueeze, HINTCoupling, Stack
from ..layers._conditioners import check_make_conditioner
from ..layers._hint import check_permute
from ..layers._scales import AbstractScale, SigmoidScale, check_scale
from ..layers._spline import RationalQuadraticSpline, check_transform
from ._multiscale import multiscale
from ._options import check_cond_channels, check_layer_class, check_positive


def hint_step(in_channels: int, hidden: int, *, key, spatial_dims: int = 2, permute: str = "full",
              cond_channels: int = 0, scale: AbstractScale = SigmoidScale(),
              transform: RationalQuadraticSpline | None = None, make_conditioner=None) -> Chain:
    """One HINT flow step: ActNorm, then a recursive HINT coupling."""
    coupling = HINTCoupling(in_channels, hidden, key=key, spatial_dims=spatial_dims, permute=permute,
                            cond_channels=cond_channels, scale=scale, transform=transform,
                            make_conditioner=make_conditioner)
    return Chain([ActNorm(in_channels), coupling])


class HINT(AbstractNetwork):
    """``depth`` steps of ActNorm and a recursive :class:`~invjax.layers.HINTCoupling`.

    Args:
        in_channels: ``C`` (the size of vectors); at least 2.
        depth: number of steps.
        hidden: hidden width of the couplings' conditioners.
        key: PRNG key.
        spatial_dims: 0 for vectors ``(B, C)``, 1, 2 (images, default) or 3 (volumes).
        cond_channels: ``K``; if positive every coupling also sees a condition (``p(x | cond)``).
        cond_spatial: ``False`` (default) for a vector condition ``(B, K)``; ``True`` for a
            feature map ``(B, K, *spatial)`` of the input's spatial sizes.
        permute: the couplings' permutation, ``"full"`` (default), ``"both"``,
            ``"lower"`` or ``"none"`` (see :class:`~invjax.layers.HINTCoupling`).
        scale: every coupling's scale, a value (default ``ij.layers.SigmoidScale()``, in
            ``(0.5, 2)``, identity at initialisation); InvertibleNetworks.jl's
            ``activation=`` (e.g. ``SigmoidLayer(low=0.5, high=1)`` is
            ``ij.layers.SigmoidScale(0.5, 1.0, centred=False)``; ``ExpClampLayer()`` is
            ``ij.layers.ExpClampScale()``).
        transform: ``None`` (default: affine couplings) or a spline value,
            ``ij.layers.RationalQuadraticSpline(bins, bound)``: every coupling is then a
            :class:`~invjax.layers.SplineCoupling` (Neural Spline Flows; ``scale`` unused).
        make_conditioner: ``None`` (default: each coupling's default conditioner) or a
            function ``(in_channels, out_channels, *, key) -> module`` that builds every
            coupling's conditioner, a per-sample module (see :class:`~invjax.layers.AffineCoupling`);
            e.g. InvertibleNetworks.jl's 3-3-3 blocks: ``lambda i, o, key:
            ij.layers.ResidualBlock(i, o, hidden, key=key, middle_kernel=3)``. ``hidden``
            is then unused. Called at construction only (not stored).
        base: the base distribution (default ``ij.StandardNormal()``).
        backprop: ``ij.Invertible()`` (default) or ``ij.Autodiff()``.

    Shapes: ``x``: ``(B, C, *spatial)`` -> ``z``: same, ``logdet``: ``(B,)``.

    Example:
        >>> import jax, invjax as ij
        >>> flow = ij.nets.HINT(in_channels=8, depth=2, hidden=16, key=jax.random.key(0), spatial_dims=0)
        >>> flow.log_prob(jax.numpy.zeros((3, 8))).shape
        (3,)
    """

    body: AbstractLayer
    base: AbstractDistribution
    backprop: AbstractBackprop
    in_channels: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    cond_channels: int = eqx.field(static=True)
    cond_spatial: bool = eqx.field(static=True)
    permute: str = eqx.field(static=True)
    scale: AbstractScale
    transform: RationalQuadraticSpline | None

    divisible_by: ClassVar[int] = 1

    def __init__(self, in_channels: int, depth: int, hidden: int, *, key, spatial_dims: int = 2,
                 cond_channels: int = 0, cond_spatial: bool = False, permute: str = "full",
                 scale: AbstractScale = SigmoidScale(), transform: RationalQuadraticSpline | None = None,
                 make_conditioner=None, base=StandardNormal(), backprop=Invertible()):
        check_spatial_dims("HINT", spatial_dims, (0, 1, 2, 3))
        check_make_conditioner("HINT", make_conditioner)
        check_positive("HINT", depth=depth, hidden=hidden)
        check_permute("HINT", permute)
        check_scale("HINT", scale)
        self.transform = check_transform("HINT", transform)
        check_cond_channels("HINT", cond_channels)
        if not isinstance(in_channels, int) or in_channels < 2:
            raise ValueError(f"HINT needs in_channels >= 2 to split, got {in_channels!r}.")
        cond_spatial = bool(cond_spatial) and spatial_dims > 0
        make = lambda k: hint_step(in_channels, hidden, key=k, spatial_dims=spatial_dims, permute=permute,
                                   cond_channels=cond_channels, scale=scale, transform=transform,
                                   make_conditioner=make_conditioner)
        self.body = Stack(make, depth, key=key)
        self.base, self.backprop = check_flow_options("HINT", base, backprop)
        self.in_channels, self.depth, self.hidden, self.spatial_dims = in_channels, depth, hidden, spatial_dims
        self.cond_channels, self.cond_spatial, self.permute, self.scale = cond_channels, cond_spatial, permute, scale


class MultiscaleHINT(AbstractNetwork):
    """HINT at ``levels`` scales: squeeze, ``depth`` HINT steps, split.

    Structured as :class:`Glow` with HINT steps: after each level but the last, half of
    the channels go to the latent.

    Args:
        in_channels: ``C``.
        levels: number of scales; spatial sizes must be divisible by ``2**levels``.
        depth: HINT steps per level.
        hidden: hidden width of the couplings' conditioners.
        key: PRNG key.
        spatial_dims: 1, 2 (images, default) or 3 (volumes).
        cond_channels: ``K``; if positive every coupling also sees a condition (``p(x | cond)``).
        cond_spatial: ``False`` (default) for a vector condition ``(B, K)``; ``True`` for a
            feature map ``(B, K, *spatial)`` of the input's spatial sizes, squeezed along
            with the levels.
        permute: the couplings' permutation (default ``"full"``).
        scale: every coupling's scale, a value (default ``ij.layers.SigmoidScale()``, in
            ``(0.5, 2)``, identity at initialisation); InvertibleNetworks.jl's
            ``activation=`` (e.g. ``SigmoidLayer(low=0.5, high=1)`` is
            ``ij.layers.SigmoidScale(0.5, 1.0, centred=False)``; ``ExpClampLayer()`` is
            ``ij.layers.ExpClampScale()``).
        squeeze: the squeeze, a layer class: ``ij.layers.HaarSqueeze`` (default, as
            InvertibleNetworks.jl's ``wavelet_squeeze``), ``ij.layers.Squeeze``, or
            InvertibleNetworks.jl's patterns (``ij.layers.CheckerboardSqueeze``, ...).
        split_scales: ``True`` (default): factor half of the channels out after every
            level but the last; ``False`` (InvertibleNetworks.jl's default): squeeze at
            every level and keep every channel (level ``i`` runs on ``C 2**(n (i + 1))``).
        transform: ``None`` (default: affine couplings) or a spline value,
            ``ij.layers.RationalQuadraticSpline(bins, bound)``: every coupling is then a
            :class:`~invjax.layers.SplineCoupling` (Neural Spline Flows; ``scale`` unused).
        make_conditioner: ``None`` (default) or a function ``(in_channels, out_channels, *,
            key) -> module`` building every coupling's conditioner (see
            :class:`~invjax.layers.HINTCoupling`; e.g. InvertibleNetworks.jl's 3-3-3 blocks).
        base: the base distribution (default ``ij.StandardNormal()``).
        backprop: ``ij.Invertible()`` (default) or ``ij.Autodiff()``.

    Shapes: ``x``: ``(B, C, *spatial)`` -> ``z``: same, ``logdet``: ``(B,)``.
    """

    body: AbstractLayer
    base: AbstractDistribution
    backprop: AbstractBackprop
    in_channels: int = eqx.field(static=True)
    levels: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    cond_channels: int = eqx.field(static=True)
    cond_spatial: bool = eqx.field(static=True)
    permute: str = eqx.field(static=True)
    squeeze: type = eqx.field(static=True)
    scale: AbstractScale
    split_scales: bool = eqx.field(static=True)
    transform: RationalQuadraticSpline | None

    def __init__(self, in_channels: int, levels: int, depth: int, hidden: int, *, key, spatial_dims: int = 2,
                 cond_channels: int = 0, cond_spatial: bool = False, permute: str = "full",
                 squeeze: type = HaarSqueeze, scale: AbstractScale = SigmoidScale(), split_scales: bool = True,
                 transform: RationalQuadraticSpline | None = None, make_conditioner=None, base=StandardNormal(),
                 backprop=Invertible()):
        name = "MultiscaleHINT"
        check_spatial_dims(name, spatial_dims, (1, 2, 3))
        check_positive(name, in_channels=in_channels, levels=levels, depth=depth, hidden=hidden)
        check_permute(name, permute)
        check_layer_class(name, "squeeze", squeeze)
        check_cond_channels(name, cond_channels)
        check_scale(name, scale)
        self.transform = check_transform(name, transform)
        check_make_conditioner(name, make_conditioner)

        def step(channels, level_cond_channels, key):
            return hint_step(channels, hidden, key=key, spatial_dims=spatial_dims, permute=permute,
                             cond_channels=level_cond_channels, scale=scale, transform=transform,
                             make_conditioner=make_conditioner)

        self.body = multiscale(step, in_channels, levels, depth, spatial_dims, squeeze(), key=key,
                               cond_channels=cond_channels, cond_spatial=cond_spatial, factor_out=bool(split_scales))
        self.base, self.backprop = check_flow_options(name, base, backprop)
        self.in_channels, self.levels, self.depth, self.hidden = in_channels, levels, depth, hidden
        self.spatial_dims, self.cond_channels, self.cond_spatial = spatial_dims, cond_channels, bool(cond_spatial)
        self.permute, self.squeeze, self.scale, self.split_scales = permute, squeeze, scale, bool(split_scales)

    @property
    def divisible_by(self) -> int:
        return 2**self.levels
