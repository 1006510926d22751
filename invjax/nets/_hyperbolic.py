"""Hyperbolic networks (Lensink, Peters and Haber, 2022), as in InvertibleNetworks.jl."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.random as jr

from .._backprop import AbstractBackprop, Invertible
from .._checks import check_spatial_dims
from .._distributions import AbstractDistribution, StandardNormal
from .._flow import AbstractNetwork, check_flow_options
from .._layer import AbstractLayer
from ..layers import ActNorm, Chain, HaarSqueeze, HyperbolicLayer, Invert, Stack
from ._options import check_positive


class Hyperbolic(AbstractNetwork):
    """A network of leapfrog layers that goes down ``levels - 1`` scales and back up.

    Haar squeeze, ActNorm, split into the pair ``(x_prev, x_curr)``; then for each scale
    on the way down ``depth - 1`` hyperbolic layers and one that halves the resolution,
    ``depth`` layers at the coarsest scale, and the mirror image on the way up; finally the
    inverse squeeze, so ``z`` has the shape of ``x``. Only the ActNorm changes volume.
    Runs of same-scale layers are :class:`~invjax.layers.Stack`\\ s: memory and compile
    time do not grow with ``depth``. Unconditional.

    Args:
        in_channels: ``C``.
        levels: number of scales; spatial sizes must be divisible by ``2**levels``.
        depth: hyperbolic layers per scale.
        hidden: channels of each layer's convolution ``W``.
        key: PRNG key.
        spatial_dims: 1, 2 (images, default) or 3 (volumes).
        alpha: the leapfrog step size.
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
    alpha: float = eqx.field(static=True)

    cond_channels: ClassVar[int] = 0
    cond_spatial: ClassVar[bool] = False

    def __init__(self, in_channels: int, levels: int, depth: int, hidden: int, *, key, spatial_dims: int = 2,
                 alpha: float = 1.0, base=StandardNormal(), backprop=Invertible()):
        check_spatial_dims("Hyperbolic", spatial_dims, (1, 2, 3))
        check_positive("Hyperbolic", in_channels=in_channels, levels=levels, depth=depth, hidden=hidden)
        factor = 2**spatial_dims
        keys = iter(jr.split(key, 4 * levels))

        def layer(channels, action, key):
            return HyperbolicLayer(channels, hidden, key=key, spatial_dims=spatial_dims, action=action, alpha=alpha)

        def same(channels, count):
            return [Stack(lambda k: layer(channels, "same", k), count, key=next(keys))] if count else []

        pair = in_channels * factor  # channels of the two states together, after the first squeeze
        layers = [HaarSqueeze(), ActNorm(pair)]
        for i in range(levels - 1):
            layers += same(pair * factor**i, depth - 1) + [layer(pair * factor**i, "down", next(keys))]
        layers += same(pair * factor ** (levels - 1), depth)
        for i in reversed(range(levels - 1)):
            layers += [layer(pair * factor ** (i + 1), "up", next(keys))] + same(pair * factor**i, depth - 1)
        self.body = Chain(layers + [Invert(HaarSqueeze())])
        self.base, self.backprop = check_flow_options("Hyperbolic", base, backprop)
        self.in_channels, self.levels, self.depth = in_channels, levels, depth
        self.hidden, self.spatial_dims, self.alpha = hidden, spatial_dims, float(alpha)

    @property
    def divisible_by(self) -> int:
        return 2**self.levels
