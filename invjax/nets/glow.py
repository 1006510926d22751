"""Glow (Kingma and Dhariwal, 2018): multiscale flow for images and volumes, and its conditional form."""

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
    HaarSqueeze,
    Squeeze,
    Stack,
)
from ._multiscale import multiscale

_SQUEEZES = {"space_to_depth": Squeeze, "haar": HaarSqueeze}
_CONVS = {"lu": lambda c, key: Conv1x1LU(c, key=key), "householder": lambda c, key: Conv1x1(c, key=key)}


def glow_step(channels: int, hidden: int, spatial_dims: int, conv: str, *, key, cond_channels: int = 0) -> Chain:
    """One flow step: ActNorm, invertible 1x1 convolution, affine coupling."""
    k1, k2 = jr.split(key)
    coupling = AffineCoupling(channels, hidden, spatial_dims, key=k2, cond_channels=cond_channels)
    return Chain([ActNorm(channels), _CONVS[conv](channels, k1), coupling])


def _glow_body(in_channels, levels, depth, hidden, spatial_dims, conv, squeeze, cond_channels, cond_spatial, key):
    name = "ConditionalGlow" if cond_channels else "Glow"
    if spatial_dims not in (1, 2, 3):
        raise ValueError(
            f"{name}: spatial_dims must be 1 (signals), 2 (images) or 3 (volumes), got {spatial_dims}; "
            f"for vectors use RealNVP."
        )
    if conv not in _CONVS:
        raise ValueError(f"{name}: conv must be one of {tuple(_CONVS)}, got {conv!r}.")
    if squeeze not in _SQUEEZES:
        raise ValueError(f"{name}: squeeze must be one of {tuple(_SQUEEZES)}, got {squeeze!r}.")
    if levels < 1 or in_channels < 1:
        raise ValueError(f"{name} needs levels >= 1 and in_channels >= 1, got {levels}, {in_channels}.")

    def make_steps(channels, level, key):
        # A feature-map condition has been squeezed level + 1 times by then.
        k = cond_channels * 2 ** (spatial_dims * (level + 1)) if cond_spatial else cond_channels
        make = lambda key: glow_step(channels, hidden, spatial_dims, conv, key=key, cond_channels=k)
        return Stack(make, depth, key=key)

    return multiscale(make_steps, in_channels, levels, spatial_dims, _SQUEEZES[squeeze](), key=key,
                      squeeze_cond=cond_spatial)


class Glow(AbstractFlow):
    """Glow: ``levels`` scales of ``depth`` steps (ActNorm, 1x1 conv, affine coupling).

    After each level but the last, half of the channels are factored out to the latent.

    Args:
        in_channels: ``C`` of the input.
        levels: number of scales; every spatial size must be divisible by ``2**levels``.
        depth: flow steps per level.
        hidden: channels of the coupling conditioners.
        key: PRNG key.
        spatial_dims: 1 for signals ``(B, C, W)``, 2 for images ``(B, C, H, W)``, 3 for
            volumes ``(B, C, D, H, W)``.
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

    def __init__(self, in_channels: int, levels: int, depth: int, hidden: int, *, key, spatial_dims: int = 2,
                 conv: str = "lu", squeeze: str = "space_to_depth", backprop: str = "invertible"):
        self.body = _glow_body(in_channels, levels, depth, hidden, spatial_dims, conv, squeeze, 0, False, key)
        self.in_channels, self.levels, self.depth = in_channels, levels, depth
        self.hidden, self.spatial_dims = hidden, spatial_dims
        self.backprop = _engine.check_mode(backprop)

    def _check_input(self, x, cond):
        check_layout("Glow", x, self.in_channels, self.spatial_dims, divisible_by=2**self.levels)
        check_cond("Glow", cond, x.shape[0], expected=False)


class ConditionalGlow(AbstractFlow):
    """Glow whose every coupling also sees a condition: a model of ``p(x | cond)``.

    Args:
        in_channels: ``C`` of the input.
        levels: number of scales (see :class:`Glow`).
        depth: flow steps per level.
        hidden: channels of the coupling conditioners.
        key: PRNG key.
        spatial_dims: 1, 2 or 3 (see :class:`Glow`).
        conv: ``"lu"`` or ``"householder"``.
        squeeze: ``"space_to_depth"`` or ``"haar"``.
        backprop: ``"invertible"`` (default) or ``"autodiff"``.
        cond_channels: ``K``, the channels (or features) of the condition.
        cond_spatial: ``False`` for a vector condition ``(B, K)``, broadcast over space;
            ``True`` for a feature map ``(B, K, *spatial)`` of the input's spatial size,
            squeezed along with the levels.

    Shapes: ``x``: ``(B, C, H, W)``, ``cond``: ``(B, K)`` or ``(B, K, H, W)`` ->
    ``z``: shape of ``x``, ``logdet``: ``(B,)``. ``cond`` is the last argument of every
    method and receives gradients.
    """

    body: AbstractLayer
    in_channels: int = eqx.field(static=True)
    cond_channels: int = eqx.field(static=True)
    cond_spatial: bool = eqx.field(static=True)
    levels: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    backprop: str = eqx.field(static=True)

    def __init__(self, in_channels: int, cond_channels: int, levels: int, depth: int, hidden: int, *, key,
                 cond_spatial: bool = False, spatial_dims: int = 2, conv: str = "lu",
                 squeeze: str = "space_to_depth", backprop: str = "invertible"):
        if cond_channels < 1:
            raise ValueError(f"ConditionalGlow needs cond_channels >= 1, got {cond_channels}.")
        self.body = _glow_body(in_channels, levels, depth, hidden, spatial_dims, conv, squeeze,
                               cond_channels, cond_spatial, key)
        self.in_channels, self.cond_channels, self.cond_spatial = in_channels, cond_channels, cond_spatial
        self.levels, self.depth, self.hidden, self.spatial_dims = levels, depth, hidden, spatial_dims
        self.backprop = _engine.check_mode(backprop)

    def _check_input(self, x, cond):
        check_layout("ConditionalGlow", x, self.in_channels, self.spatial_dims, divisible_by=2**self.levels)
        check_cond("ConditionalGlow", cond, x.shape[0], expected=True)
        if self.cond_spatial:
            if cond.shape[2:] != x.shape[2:] or cond.shape[1] != self.cond_channels:
                raise ValueError(
                    f"ConditionalGlow: expected cond of shape (B, {self.cond_channels}, "
                    f"{', '.join(map(str, x.shape[2:]))}); got shape {tuple(cond.shape)}."
                )
        else:
            check_layout("ConditionalGlow", cond, self.cond_channels, 0, what="cond")
