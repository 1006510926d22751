"""Glow (Kingma and Dhariwal, 2018): multiscale flow for images and volumes."""

from __future__ import annotations

import equinox as eqx
import jax.random as jr

from .. import _engine
from .._checks import check_cond, check_layout
from .._flow import AbstractFlow
from .._layer import AbstractLayer
from ..layers import (
    ActNorm,
    AffineCoupling,
    Chain,
    Conv1x1,
    Conv1x1LU,
    FactorOut,
    HaarSqueeze,
    Invert,
    Squeeze,
    Stack,
)

_SQUEEZES = {"space_to_depth": Squeeze, "haar": HaarSqueeze}
_CONVS = {"lu": lambda c, key: Conv1x1LU(c, key=key), "householder": lambda c, key: Conv1x1(c, key=key)}


def glow_step(channels: int, hidden: int, spatial_dims: int, conv: str, *, key) -> Chain:
    """One flow step: ActNorm, invertible 1x1 convolution, affine coupling."""
    k1, k2 = jr.split(key)
    return Chain(
        [ActNorm(channels), _CONVS[conv](channels, k1), AffineCoupling(channels, hidden, spatial_dims, key=k2)]
    )


def multiscale(make_steps, channels: int, levels: int, spatial_dims: int, squeeze: AbstractLayer, *, key):
    """The multiscale body shared by Glow-like networks.

    Each level squeezes, runs ``make_steps(channels, key)`` and factors out half of the
    channels, which go straight to the latent; the last level keeps all. Every level ends
    with the inverse squeeze, so the latent has the input's shape and the factored-out
    halves sit at their place in it.
    """
    keys = jr.split(key, levels)

    def level(i, channels):
        channels = channels * 2**spatial_dims
        steps = make_steps(channels, keys[i])
        if i == levels - 1:
            return Chain([squeeze, steps, Invert(squeeze)])
        kept = channels // 2
        return Chain([squeeze, steps, FactorOut(level(i + 1, kept), kept), Invert(squeeze)])

    return level(0, channels)


class Glow(AbstractFlow):
    """Glow: ``levels`` scales of ``depth`` steps (ActNorm, 1x1 conv, affine coupling).

    After each level but the last, half of the channels are factored out to the latent.

    Args:
        in_channels: ``C`` of the input.
        levels: number of scales; every spatial size must be divisible by ``2**levels``.
        depth: flow steps per level.
        hidden: channels of the coupling conditioners.
        key: PRNG key.
        spatial_dims: 2 for images ``(B, C, H, W)``, 3 for volumes ``(B, C, D, H, W)``.
        conv: ``"lu"`` (Glow) or ``"householder"`` (InvertibleNetworks.jl).
        squeeze: ``"space_to_depth"`` or ``"haar"`` (orthonormal wavelet).
        backprop: ``"invertible"`` (default) or ``"autodiff"``.

    Shapes: ``x``: ``(B, C, H, W)`` -> ``z``: same shape, ``logdet``: ``(B,)``.

    Example:
        >>> import jax, invjax as ij
        >>> flow = ij.nets.Glow(in_channels=1, levels=2, depth=2, hidden=8, key=jax.random.key(0))
        >>> flow.log_prob(jax.numpy.zeros((2, 1, 8, 8))).shape
        (2,)
    """

    body: AbstractLayer
    in_channels: int = eqx.field(static=True)
    levels: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    backprop: str = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        levels: int,
        depth: int,
        hidden: int,
        *,
        key,
        spatial_dims: int = 2,
        conv: str = "lu",
        squeeze: str = "space_to_depth",
        backprop: str = "invertible",
    ):
        if spatial_dims not in (2, 3):
            raise ValueError(f"Glow: spatial_dims must be 2 (images) or 3 (volumes), got {spatial_dims}.")
        if conv not in _CONVS:
            raise ValueError(f"Glow: conv must be one of {tuple(_CONVS)}, got {conv!r}.")
        if squeeze not in _SQUEEZES:
            raise ValueError(f"Glow: squeeze must be one of {tuple(_SQUEEZES)}, got {squeeze!r}.")
        if levels < 1 or in_channels < 1:
            raise ValueError(f"Glow needs levels >= 1 and in_channels >= 1, got {levels}, {in_channels}.")

        def make_steps(channels, key):
            return Stack(lambda k: glow_step(channels, hidden, spatial_dims, conv, key=k), depth, key=key)

        self.body = multiscale(make_steps, in_channels, levels, spatial_dims, _SQUEEZES[squeeze](), key=key)
        self.in_channels, self.levels, self.depth = in_channels, levels, depth
        self.hidden, self.spatial_dims = hidden, spatial_dims
        self.backprop = _engine.check_mode(backprop)

    def _check_input(self, x, cond):
        check_layout("Glow", x, self.in_channels, self.spatial_dims, divisible_by=2**self.levels)
        check_cond("Glow", cond, x.shape[0], expected=False)
