"""HINT networks (Kruse et al., 2021): single-scale and multiscale."""

from __future__ import annotations

import equinox as eqx

from .. import _engine
from .._checks import check_cond, check_layout
from .._flow import AbstractFlow
from .._layer import AbstractLayer
from ..layers import ActNorm, Chain, HaarSqueeze, HINTCoupling, Squeeze, Stack
from ..layers.hint import PERMUTES
from ._multiscale import multiscale

SQUEEZES = {"haar": HaarSqueeze, "space_to_depth": Squeeze}


def hint_step(channels: int, hidden: int, spatial_dims: int, permute: str, *, key) -> Chain:
    """One HINT flow step: ActNorm, then a recursive HINT coupling."""
    return Chain([ActNorm(channels), HINTCoupling(channels, hidden, spatial_dims, key=key, permute=permute)])


def check_options(name, spatial_dims, allowed, permute=None, squeeze=None):
    """Constructor checks shared by the HINT-family networks."""
    if spatial_dims not in allowed:
        raise ValueError(f"{name}: spatial_dims must be one of {allowed}, got {spatial_dims}.")
    if permute is not None and permute not in PERMUTES:
        raise ValueError(f"{name}: permute must be one of {PERMUTES}, got {permute!r}.")
    if squeeze is not None and squeeze not in SQUEEZES:
        raise ValueError(f"{name}: squeeze must be one of {tuple(SQUEEZES)}, got {squeeze!r}.")


class HINT(AbstractFlow):
    """``depth`` steps of ActNorm and a recursive :class:`~invjax.layers.HINTCoupling`.

    Args:
        in_channels: ``C`` (the size ``D`` of vectors); at least 2.
        depth: number of steps.
        hidden: hidden width of the couplings' conditioners.
        key: PRNG key.
        spatial_dims: 0 for vectors ``(B, D)``, 1, 2 (images) or 3 (volumes).
        permute: the couplings' permutation, ``"full"`` (default), ``"both"``,
            ``"lower"`` or ``"none"`` (see :class:`~invjax.layers.HINTCoupling`).
        backprop: ``"invertible"`` (default) or ``"autodiff"``.

    Shapes: ``x``: ``(B, C, *spatial)`` -> ``z``: same, ``logdet``: ``(B,)``.

    Example:
        >>> import jax, invjax as ij
        >>> flow = ij.nets.HINT(in_channels=8, depth=2, hidden=16, key=jax.random.key(0), spatial_dims=0)
        >>> flow.log_prob(jax.numpy.zeros((3, 8))).shape
        (3,)
    """

    body: AbstractLayer
    in_channels: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    backprop: str = eqx.field(static=True)

    def __init__(self, in_channels: int, depth: int, hidden: int, *, key, spatial_dims: int = 2,
                 permute: str = "full", backprop: str = "invertible"):
        check_options("HINT", spatial_dims, (0, 1, 2, 3), permute=permute)
        if in_channels < 2:
            raise ValueError(f"HINT needs in_channels >= 2 to split, got {in_channels}.")
        make = lambda k: hint_step(in_channels, hidden, spatial_dims, permute, key=k)
        self.body = Stack(make, depth, key=key)
        self.in_channels, self.depth, self.hidden, self.spatial_dims = in_channels, depth, hidden, spatial_dims
        self.backprop = _engine.check_mode(backprop)

    def _check_input(self, x, cond):
        check_layout("HINT", x, self.in_channels, self.spatial_dims)
        check_cond("HINT", cond, x.shape[0], expected=False)


class MultiscaleHINT(AbstractFlow):
    """HINT at ``levels`` scales: squeeze (Haar by default), ``depth`` HINT steps, split.

    Structured as :class:`Glow` with HINT steps: after each level but the last, half of
    the channels go to the latent.

    Args:
        in_channels: ``C``.
        levels: number of scales; spatial sizes must be divisible by ``2**levels``.
        depth: HINT steps per level.
        hidden: hidden width of the couplings' conditioners.
        key: PRNG key.
        spatial_dims: 1, 2 (images) or 3 (volumes).
        permute: the couplings' permutation (default ``"full"``).
        squeeze: ``"haar"`` (default, as the seed's package) or ``"space_to_depth"``.
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
                 permute: str = "full", squeeze: str = "haar", backprop: str = "invertible"):
        check_options("MultiscaleHINT", spatial_dims, (1, 2, 3), permute=permute, squeeze=squeeze)
        if levels < 1 or in_channels < 1:
            raise ValueError(f"MultiscaleHINT needs levels >= 1 and in_channels >= 1, got {levels}, {in_channels}.")

        def make_steps(channels, level, key):
            return Stack(lambda k: hint_step(channels, hidden, spatial_dims, permute, key=k), depth, key=key)

        self.body = multiscale(make_steps, in_channels, levels, spatial_dims, SQUEEZES[squeeze](), key=key)
        self.in_channels, self.levels, self.depth = in_channels, levels, depth
        self.hidden, self.spatial_dims = hidden, spatial_dims
        self.backprop = _engine.check_mode(backprop)

    def _check_input(self, x, cond):
        check_layout("MultiscaleHINT", x, self.in_channels, self.spatial_dims, divisible_by=2**self.levels)
        check_cond("MultiscaleHINT", cond, x.shape[0], expected=False)
