"""HINT's recursive coupling (Kruse et al., 2021), as in InvertibleNetworks.jl."""

from __future__ import annotations

import equinox as eqx
import jax.random as jr

from .._layer import AbstractLayer
from ._chain import Chain
from ._composite import AbstractComposite
from ._conditioners import check_make_conditioner
from ._conjugate import Conjugate
from ._conv1x1 import Conv1x1
from ._coupling import check_split, make_coupling
from ._on_channels import OnChannels
from ._scales import AbstractScale, SigmoidScale, check_scale
from ._spline import RationalQuadraticSpline, check_transform

PERMUTES = ("none", "lower", "both", "full")


def check_permute(name: str, permute) -> str:
    if permute not in PERMUTES:
        raise ValueError(f"{name}: permute must be one of {PERMUTES}, got {permute!r}.")
    return permute


def _hint(channels, hidden, spatial_dims, cond_channels, permute, min_channels, scale, transform, make_conditioner,
          key) -> AbstractLayer:
    """The recursion on ``channels`` channels; every coupling has the scale ``scale`` (or is
    a spline coupling, where ``transform`` is a spline)."""
    k_perm, k_coupling, k_upper, k_lower = jr.split(key, 4)
    half = channels // 2
    recurse = channels > min_channels
    # Recursive calls are unpermuted, as in InvertibleNetworks.jl.
    sub = lambda c, k: _hint(c, hidden, spatial_dims, cond_channels, "none", min_channels, scale, transform,
                             make_conditioner, k)
    layers = []
    if permute == "lower":
        layers.append(OnChannels(Conv1x1(channels - half, key=k_perm), half, channels))
    if recurse:
        layers.append(OnChannels(sub(channels - half, k_lower), half, channels))
    # The lower half is coupled to the *input* upper half, so the upper recursion comes after.
    layers.append(make_coupling(channels, hidden, spatial_dims=spatial_dims, key=k_coupling,
                                cond_channels=cond_channels, scale=scale, transform=transform,
                                make_conditioner=make_conditioner))
    if recurse:
        layers.append(OnChannels(sub(half, k_upper), 0, half))
    body = Chain(layers)
    if permute == "full":
        body = Chain([Conv1x1(channels, key=k_perm), body])
    elif permute == "both":
        body = Conjugate(Conv1x1(channels, key=k_perm), body)
    return body


class HINTCoupling(AbstractComposite):
    """The hierarchical coupling of HINT: split, recurse on both halves, couple.

    For input halves ``(x_a, x_b)``: ``y_a = H(x_a)`` and
    ``y_b = C(H(x_b) | x_a)``, where ``H`` is this layer again on half the channels (down
    to ``min_channels``, where it is a single affine coupling) and ``C`` an
    :class:`AffineCoupling` of the lower half given the upper one. Every channel ends up
    conditioned on others at every scale of the channel hierarchy, which gives the Jacobian
    its recursive triangular structure. Every node of the recursion has its own
    parameters (InvertibleNetworks.jl shares one coupling per recursion level).

    Args:
        in_channels: ``C`` (at least 2).
        hidden: hidden width of the couplings' conditioners.
        key: PRNG key.
        spatial_dims: 0 (vectors), 1, 2 (default) or 3.
        permute: InvertibleNetworks.jl's options. ``"none"``; ``"lower"``: a Householder 1x1
            convolution of the lower half before the coupling; ``"full"``: one of all
            channels before it; ``"both"``: one of all channels before and its inverse
            after (the output stays in the input's channel frame).
        min_channels: halves are split again while they have more channels than this
            (4 in InvertibleNetworks.jl).
        cond_channels: ``K``; if positive every coupling also sees ``cond`` (as in
            :class:`AffineCoupling`).
        scale: every coupling's scale, a value (as :class:`AffineCoupling`'s): default
            ``ij.layers.SigmoidScale()`` (in ``(0.5, 2)``, identity at initialisation);
            InvertibleNetworks.jl's ``activation=SigmoidLayer(low=, high=)`` is
            ``ij.layers.SigmoidScale(low, high, centred=False)``, its ``ExpClampLayer()``
            ``ij.layers.ExpClampScale()``.
        transform: ``None`` (default: affine couplings, with ``scale``) or a spline value,
            ``ij.layers.RationalQuadraticSpline(bins, bound)``: every coupling is then a
            :class:`SplineCoupling` (``scale`` unused).
        make_conditioner: ``None`` (default: each coupling's default conditioner) or a
            function ``(in_channels, out_channels, *, key) -> module`` that builds every
            coupling's conditioner, a per-sample module (see :class:`~invjax.layers.AffineCoupling`);
            e.g. InvertibleNetworks.jl's 3-3-3 blocks: ``lambda i, o, key:
            ij.layers.ResidualBlock(i, o, hidden, key=key, middle_kernel=3)``. ``hidden``
            is then unused. Called at construction only (not stored).

    Shapes: ``(B, C, *spatial)`` -> same. logdet: the couplings' log-scales, per sample.
    """

    body: AbstractLayer
    in_channels: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    permute: str = eqx.field(static=True)
    min_channels: int = eqx.field(static=True)
    cond_channels: int = eqx.field(static=True)
    scale: AbstractScale
    transform: RationalQuadraticSpline | None

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        *,
        key,
        spatial_dims: int = 2,
        permute: str = "none",
        min_channels: int = 4,
        cond_channels: int = 0,
        scale: AbstractScale = SigmoidScale(),
        transform: RationalQuadraticSpline | None = None,
        make_conditioner=None,
    ):
        check_permute("HINTCoupling", permute)
        self.scale = check_scale("HINTCoupling", scale)
        self.transform = check_transform("HINTCoupling", transform)
        check_split("HINTCoupling", in_channels, spatial_dims)
        if min_channels < 2:
            raise ValueError(f"HINTCoupling: min_channels must be at least 2, got {min_channels}.")
        check_make_conditioner("HINTCoupling", make_conditioner)
        self.body = _hint(in_channels, hidden, spatial_dims, cond_channels, permute, min_channels, scale, transform,
                          make_conditioner, key)
        self.in_channels, self.hidden, self.spatial_dims, self.permute = in_channels, hidden, spatial_dims, permute
        self.min_channels, self.cond_channels = min_channels, cond_channels
