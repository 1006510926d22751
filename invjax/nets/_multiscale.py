"""The multiscale body shared by Glow, multiscale HINT and multiscale conditional HINT."""

from __future__ import annotations

import jax.random as jr

from .._layer import AbstractLayer
from ..layers import Chain, Conjugate, FactorOut, Invert, MapCond, Permute, Stack
from ..layers._squeeze import SqueezeLanes, space_to_depth


def _kept_first(lanes):
    """The channel order that brings every lane's first half to the front, lane by lane."""
    kept, out, offset = [], [], 0
    for c in lanes:
        kept += range(offset, offset + c // 2)
        out += range(offset + c // 2, offset + c)
        offset += c
    return kept + out


def multiscale(make_step, channels, levels: int, depth: int, spatial_dims: int, squeeze: AbstractLayer, *, key,
               cond_channels: int = 0, cond_spatial: bool = False, factor_out: bool = True) -> AbstractLayer:
    """``levels`` scales: squeeze, a :class:`Stack` of ``depth`` steps
    ``make_step(channels, cond_channels, key)``, factor out half.

    The last level keeps all its channels; with ``factor_out=False`` every level does
    (InvertibleNetworks.jl's ``split_scales=false``: squeeze at every level, factor out
    nothing, so level ``i`` runs on ``C 2**(n (i + 1))`` channels). Every level ends with the inverse squeeze, so
    the latent has the input's shape and the factored-out halves sit at their place in it.

    ``channels`` is an int, or a tuple of lane sizes for a two-lane network whose state is
    the lanes concatenated along the channels (the conditional HINT's ``(y, x)``): each
    lane is squeezed on its own (:class:`~invjax.layers._squeeze.SqueezeLanes`), so the
    lanes stay apart whatever the squeeze's channel order, and half of *each* lane is
    factored out (a fixed reordering, conjugated around the split, brings the kept halves
    together). ``make_step`` gets the squeezed channels in the same form, and the
    condition's channels at that level: a feature-map condition (``cond_spatial``) is
    squeezed along with each level (:class:`~invjax.layers.MapCond`), so it has
    ``cond_channels * 2**(spatial_dims * (level + 1))`` channels there.
    """
    single = isinstance(channels, int)
    keys = jr.split(key, levels)
    squeeze_cond = bool(cond_channels) and cond_spatial

    def level(i, lanes):
        squeeze_ = squeeze if single else SqueezeLanes(squeeze, lanes)
        lanes = tuple(c * 2**spatial_dims for c in lanes)
        k = cond_channels * 2 ** (spatial_dims * (i + 1)) if squeeze_cond else cond_channels
        sizes = lanes[0] if single else lanes
        steps = Stack(lambda key: make_step(sizes, k, key), depth, key=keys[i])
        if i == levels - 1:
            chain = Chain([squeeze_, steps, Invert(squeeze_)])
        elif not factor_out:
            chain = Chain([squeeze_, steps, level(i + 1, lanes), Invert(squeeze_)])
        else:
            kept = tuple(c // 2 for c in lanes)
            split = FactorOut(level(i + 1, kept), sum(kept))
            if not single:
                split = Conjugate(Permute(sum(lanes), permutation=_kept_first(lanes)), split)
            chain = Chain([squeeze_, steps, split, Invert(squeeze_)])
        return MapCond(chain, space_to_depth) if squeeze_cond else chain

    return level(0, (channels,) if single else tuple(channels))
