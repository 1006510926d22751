"""RealNVP for vectors (Dinh et al., 2017), unconditional or conditional."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.random as jr

from .._backprop import AbstractBackprop, Invertible
from .._distributions import AbstractDistribution, StandardNormal
from .._flow import AbstractNetwork, check_flow_options
from .._layer import AbstractLayer
from ..layers import ActNorm, Chain, Permute, Stack
from ..layers._coupling import make_coupling
from ..layers._scales import AbstractScale, SigmoidScale, check_scale
from ..layers._spline import RationalQuadraticSpline, check_transform
from ._options import check_cond_channels, check_positive


class RealNVP(AbstractNetwork):
    """``depth`` steps of ActNorm, a fixed permutation (the two halves trade places, each shuffled
    within; ``ij.layers.Permute(swap_halves=True)``) and an affine (or spline) coupling.

    With ``cond_channels > 0`` every coupling's MLP also sees a condition ``(B, K)``: a
    model of ``p(x | cond)``.

    Args:
        in_channels: ``C``, the size of the vectors (at least 2).
        depth: number of steps.
        hidden: width of the coupling MLPs.
        key: PRNG key.
        cond_channels: ``K``, the size of the condition vectors; 0 (default) for none.
        scale: the couplings' scale, a value (default ``ij.layers.SigmoidScale()``; or
            ``ij.layers.ExpClampScale()``).
        transform: ``None`` (default: affine couplings) or a spline value,
            ``ij.layers.RationalQuadraticSpline(bins, bound)``: every coupling is then a
            :class:`~invjax.layers.SplineCoupling` (Neural Spline Flows; ``scale`` unused).
        base: the base distribution (default ``ij.StandardNormal()``).
        backprop: ``ij.Invertible()`` (default) or ``ij.Autodiff()``.

    Shapes: ``x``: ``(B, C)``, ``cond``: ``(B, K)`` -> ``z``: ``(B, C)``, ``logdet``: ``(B,)``.

    Example:
        >>> import jax, invjax as ij
        >>> flow = ij.nets.RealNVP(in_channels=2, depth=4, hidden=32, key=jax.random.key(0))
        >>> flow.sample(jax.random.key(1), (5, 2)).shape
        (5, 2)
    """

    body: AbstractLayer
    base: AbstractDistribution
    backprop: AbstractBackprop
    in_channels: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    cond_channels: int = eqx.field(static=True)
    scale: AbstractScale
    transform: RationalQuadraticSpline | None

    spatial_dims: ClassVar[int] = 0
    divisible_by: ClassVar[int] = 1
    cond_spatial: ClassVar[bool] = False

    def __init__(self, in_channels: int, depth: int, hidden: int, *, key, cond_channels: int = 0,
                 scale: AbstractScale = SigmoidScale(), transform: RationalQuadraticSpline | None = None,
                 base=StandardNormal(), backprop=Invertible()):
        check_positive("RealNVP", depth=depth, hidden=hidden)
        if not isinstance(in_channels, int) or in_channels < 2:
            raise ValueError(f"RealNVP needs in_channels >= 2 to split, got {in_channels!r}.")
        check_cond_channels("RealNVP", cond_channels)
        self.scale = check_scale("RealNVP", scale)
        self.transform = check_transform("RealNVP", transform)

        def step(key):
            k1, k2 = jr.split(key)
            coupling = make_coupling(in_channels, hidden, spatial_dims=0, key=k2, cond_channels=cond_channels,
                                     scale=scale, transform=transform)
            # The halves trade places every step (shuffled within): every feature is
            # transformed at least every other step (a fully random order can leave one
            # untouched, blind to the rest and to the condition). Two features: a swap.
            return Chain([ActNorm(in_channels), Permute(in_channels, key=k1, swap_halves=True), coupling])

        self.body = Stack(step, depth, key=key)
        self.base, self.backprop = check_flow_options("RealNVP", base, backprop)
        self.in_channels, self.depth, self.hidden, self.cond_channels = in_channels, depth, hidden, cond_channels
