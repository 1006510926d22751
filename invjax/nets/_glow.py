"""Glow (Kingma and Dhariwal, 2018): multiscale flow for signals, images and volumes,
unconditional or conditional."""

from __future__ import annotations

import equinox as eqx
import jax.random as jr

from .._backprop import AbstractBackprop, Invertible
from .._checks import check_spatial_dims
from .._distributions import AbstractDistribution, StandardNormal
from .._flow import AbstractNetwork, check_flow_options
from .._layer import AbstractLayer
from ..layers import ActNorm, Chain, Conv1x1LU, Squeeze, Stack
from ..layers._conditioners import check_make_conditioner
from ..layers._coupling import make_coupling
from ..layers._scales import AbstractScale, SigmoidScale, check_scale
from ..layers._spline import RationalQuadraticSpline, check_transform
from ._multiscale import multiscale
from ._options import check_cond_channels, check_layer_class, check_positive


def glow_step(in_channels: int, hidden: int, *, key, spatial_dims: int = 2, conv: type = Conv1x1LU,
              cond_channels: int = 0, scale: AbstractScale = SigmoidScale(),
              transform: RationalQuadraticSpline | None = None, make_conditioner=None) -> Chain:
    """One flow step: ActNorm, invertible 1x1 convolution, affine coupling (spline coupling
    where ``transform`` is a spline)."""
    k1, k2 = jr.split(key)
    coupling = make_coupling(in_channels, hidden, spatial_dims=spatial_dims, key=k2, cond_channels=cond_channels,
                             scale=scale, transform=transform, make_conditioner=make_conditioner)
    return Chain([ActNorm(in_channels), conv(in_channels, key=k1), coupling])


class Glow(AbstractNetwork):
    """Glow: ``levels`` scales of ``depth`` steps (ActNorm, 1x1 conv, affine coupling).

    Each level squeezes, runs its steps, and (but the last) factors half of the channels
    out to the latent. With ``cond_channels > 0`` every coupling also sees a condition: a
    model of ``p(x | cond)``. With ``split_scales=False`` (InvertibleNetworks.jl's
    default for ``NetworkGlow``) nothing is squeezed or factored out: ``levels * depth``
    steps run at full resolution, on vectors too (``spatial_dims=0``, dense conditioners:
    InvertibleNetworks.jl's ``dense=true``).

    Args:
        in_channels: ``C`` of the input.
        levels: number of scales; every spatial size must be divisible by ``2**levels``.
        depth: flow steps per level.
        hidden: channels of the coupling conditioners.
        key: PRNG key.
        spatial_dims: 1 for signals ``(B, C, W)``, 2 for images ``(B, C, H, W)`` (default),
            3 for volumes ``(B, C, D, H, W)``; 0 for vectors ``(B, C)`` with
            ``split_scales=False``.
        cond_channels: ``K``, the channels of the condition; 0 (default) for none.
        cond_spatial: ``False`` (default) for a vector condition ``(B, K)``, broadcast over
            space; ``True`` for a feature map ``(B, K, *spatial)`` of the input's spatial
            sizes, squeezed along with the levels.
        conv: the 1x1 convolution, a layer class: ``ij.layers.Conv1x1LU`` (Glow's, default)
            or ``ij.layers.Conv1x1`` (Householder, InvertibleNetworks.jl's).
        squeeze: the squeeze, a layer class: ``ij.layers.Squeeze`` (space-to-depth, Glow's,
            default), ``ij.layers.HaarSqueeze`` (orthonormal wavelet) or one of
            InvertibleNetworks.jl's: ``ij.layers.CheckerboardSqueeze`` (its default
            ``ShuffleLayer()``), ``ColumnSqueeze``, ``PatchSqueeze``, ``SubbandHaarSqueeze``.
        scale: the couplings' scale, a value (default ``ij.layers.SigmoidScale()``, in
            ``(0.5, 2)``, identity at initialisation); InvertibleNetworks.jl's
            ``glow_seismic.jl`` is ``ij.layers.SigmoidScale(0.5, 1.0, centred=False)``.
        transform: ``None`` (default: affine couplings) or a spline value,
            ``ij.layers.RationalQuadraticSpline(bins, bound)``: every coupling is then a
            :class:`~invjax.layers.SplineCoupling` (Neural Spline Flows; ``scale`` unused).
        make_conditioner: ``None`` (default: ``hidden``-wide MLPs for vectors, residual
            conv blocks otherwise) or a function ``(in_channels, out_channels, *, key) ->
            module`` building every coupling's conditioner, e.g. sbi's residual network for
            vectors, ``lambda i, o, *, key: ij.layers.ResidualMLP(i, o, 64, key=key)``. Its
            input is the coupling's first half (and the condition), one sample at a time.
        split_scales: ``True`` (default): squeeze and factor out at every level; ``False``:
            one scale, ``levels * depth`` steps (needs ``C >= 2``).
        base: the base distribution (default ``ij.StandardNormal()``).
        backprop: ``ij.Invertible()`` (default) or ``ij.Autodiff()``.

    Shapes: ``x``: ``(B, C, *spatial)``, ``cond``: ``(B, K)`` or ``(B, K, *spatial)`` ->
    ``z``: shape of ``x``, ``logdet``: ``(B,)``. ``cond`` receives gradients.

    Example:
        >>> import jax, invjax as ij
        >>> flow = ij.nets.Glow(in_channels=1, levels=2, depth=2, hidden=8, key=jax.random.key(0))
        >>> flow.log_prob(jax.numpy.zeros((2, 1, 8, 8))).shape
        (2,)
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
    conv: type = eqx.field(static=True)
    squeeze: type = eqx.field(static=True)
    scale: AbstractScale
    split_scales: bool = eqx.field(static=True)
    transform: RationalQuadraticSpline | None

    def __init__(self, in_channels: int, levels: int, depth: int, hidden: int, *, key, spatial_dims: int = 2,
                 cond_channels: int = 0, cond_spatial: bool = False, conv: type = Conv1x1LU,
                 squeeze: type = Squeeze, scale: AbstractScale = SigmoidScale(), split_scales: bool = True,
                 transform: RationalQuadraticSpline | None = None, make_conditioner=None, base=StandardNormal(),
                 backprop=Invertible()):
        name = "Glow"
        if split_scales:
            check_spatial_dims(name, spatial_dims, (1, 2, 3), " For vectors use RealNVP, or split_scales=False.")
        else:
            check_spatial_dims(name, spatial_dims, (0, 1, 2, 3))
            if not isinstance(in_channels, int) or in_channels < 2:
                raise ValueError(f"Glow with split_scales=False needs in_channels >= 2 to split, got {in_channels!r}.")
        check_positive(name, in_channels=in_channels, levels=levels, depth=depth, hidden=hidden)
        check_cond_channels(name, cond_channels)
        check_layer_class(name, "conv", conv)
        check_layer_class(name, "squeeze", squeeze)
        check_scale(name, scale)
        self.transform = check_transform(name, transform)
        check_make_conditioner(name, make_conditioner)

        def step(channels, level_cond_channels, key):
            return glow_step(channels, hidden, key=key, spatial_dims=spatial_dims, conv=conv,
                             cond_channels=level_cond_channels, scale=scale, transform=transform,
                             make_conditioner=make_conditioner)

        cond_spatial = bool(cond_spatial) and spatial_dims > 0
        if split_scales:
            self.body = multiscale(step, in_channels, levels, depth, spatial_dims, squeeze(), key=key,
                                   cond_channels=cond_channels, cond_spatial=cond_spatial)
        else:
            self.body = Stack(lambda k: step(in_channels, cond_channels, k), levels * depth, key=key)
        self.base, self.backprop = check_flow_options(name, base, backprop)
        self.in_channels, self.levels, self.depth, self.hidden = in_channels, levels, depth, hidden
        self.spatial_dims, self.cond_channels, self.cond_spatial = spatial_dims, cond_channels, bool(cond_spatial)
        self.conv, self.squeeze, self.scale, self.split_scales = conv, squeeze, scale, bool(split_scales)

    @property
    def divisible_by(self) -> int:
        return 2**self.levels if self.split_scales else 1
