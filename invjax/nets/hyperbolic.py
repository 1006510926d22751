"""Hyperbolic networks (Lensink, Peters and Haber, 2022), as in InvertibleNetworks.jl."""

from __future__ import annotations

import equinox as eqx
import jax.random as jr

from .. import _engine
from .._checks import check_cond, check_layout
from .._flow import AbstractFlow
from .._layer import AbstractLayer
from ..layers import ActNorm, Chain, HaarSqueeze, HyperbolicLayer, Invert, Stack


class Hyperbolic(AbstractFlow):
    """A network of leapfrog layers that goes down ``levels - 1`` scales and back up.

    Haar squeeze, ActNorm, split into the pair ``(x_prev, x_curr)``; then for each scale
    on the way down ``depth - 1`` hyperbolic layers and one that halves the resolution,
    ``depth`` layers at the coarsest scale, and the mirror image on the way up; finally the
    inverse squeeze, so ``z`` has the shape of ``x``. Only the ActNorm changes volume.
    Runs of same-scale layers are :class:`~invjax.layers.Stack`\\ s: memory and compile
    time do not grow with ``depth``.

    Args:
        in_channels: ``C``.
        levels: number of scales; spatial sizes must be divisible by ``2**levels``.
        depth: hyperbolic layers per scale.
        hidden: channels of each layer's convolution ``W``.
        key: PRNG key.
        spatial_dims: 1, 2 (images) or 3 (volumes).
        alpha: the leapfrog step size.
        backprop: ``"invertible"`` (default) or ``"autodiff"``.

    Shapes: ``x``: ``(B, C, *spatial)`` -> ``z``: same, ``logdet``: ``(B,)``.
    """

    body: AbstractLayer
    in_channels: int = eqx.field(static=True)
    levels: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    backprop: str = eqx.field(static=True)

    def __init__(self, in_channels: int, levels: int, depth: int, hidden: int, *, key, spatial_dims: int = 2,
                 alpha: float = 1.0, backprop: str = "invertible"):
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"Hyperbolic: spatial_dims must be 1, 2 or 3, got {spatial_dims}.")
        if levels < 1 or depth < 1 or in_channels < 1:
            raise ValueError(
                f"Hyperbolic needs levels, depth and in_channels >= 1, got {levels}, {depth}, {in_channels}."
            )
        factor = 2**spatial_dims
        keys = iter(jr.split(key, 4 * levels))

        def layer(channels, action, key):
            return HyperbolicLayer(channels, hidden, key=key, spatial_dims=spatial_dims, action=action, alpha=alpha)

        def same(channels, count):
            return [Stack(lambda k: layer(channels, "same", k), count, key=next(keys))] if count else []

        state = in_channels * factor // 2  # channels of each of the two states
        layers = [HaarSqueeze(), ActNorm(2 * state)]
        for i in range(levels - 1):
            layers += same(state * factor**i, depth - 1) + [layer(state * factor**i, "down", next(keys))]
        layers += same(state * factor ** (levels - 1), depth)
        for i in reversed(range(levels - 1)):
            layers += [layer(state * factor ** (i + 1), "up", next(keys))] + same(state * factor**i, depth - 1)
        self.body = Chain(layers + [Invert(HaarSqueeze())])
        self.in_channels, self.levels, self.depth = in_channels, levels, depth
        self.hidden, self.spatial_dims = hidden, spatial_dims
        self.backprop = _engine.check_mode(backprop)

    def _check_input(self, x, cond):
        check_layout("Hyperbolic", x, self.in_channels, self.spatial_dims, divisible_by=2**self.levels)
        check_cond("Hyperbolic", cond, x.shape[0], expected=False)
