"""The invertible U-Net (Etmann, Ke and Schönlieb, "iUNets: learnable invertible up- and
downsampling for large-scale inverse problems", 2020)."""

from __future__ import annotations

import equinox as eqx
import jax.random as jr

from .._backprop import AbstractBackprop, Invertible
from .._checks import check_spatial_dims
from .._distributions import AbstractDistribution, StandardNormal
from .._flow import AbstractNetwork, check_flow_options
from .._layer import AbstractLayer
from ..layers import Chain, Conv1x1, Conv1x1LU, Invert, MapCond, OnChannels, Squeeze, Stack
from ..layers._scales import AbstractScale, SigmoidScale, check_scale
from ..layers._spline import RationalQuadraticSpline, check_transform
from ..layers._squeeze import space_to_depth
from ._options import check_cond_channels, check_layer_class, check_positive
from ._glow import glow_step


def learnable_squeeze(in_channels: int, *, key, spatial_dims: int = 2) -> Chain:
    """iUNet's learnable invertible downsampling: an orthogonal convolution of kernel 2 and
    stride 2, written as a space-to-depth squeeze followed by an orthogonal 1x1 convolution
    on the ``C 2**n`` channels (a product of ``C 2**n`` Householder reflections, which spans
    the orthogonal matrices). Its inverse (``Invert``) is the learnable upsampling.

    Shapes: ``(B, C, *S)`` -> ``(B, C 2**n, *S/2)``, ``n = spatial_dims``; logdet 0.
    """
    channels = in_channels * 2**spatial_dims
    return Chain([Squeeze(), Conv1x1(channels, key=key, reflections=channels)])


class IUNet(AbstractNetwork):
    """An invertible U-Net: couplings at every scale, learnable down- and upsampling.

    At each of ``levels`` scales the network runs ``depth`` flow steps (ActNorm, 1x1
    convolution, affine coupling) on the ``C_i`` channels, keeps the first
    ``ceil(C_i / 2)`` channels at this resolution (the skip connection) and sends the
    others down: a learnable orthogonal downsampling (:func:`learnable_squeeze`) gives
    ``floor(C_i / 2) 2**n`` channels at half the resolution, the next scale runs on them,
    a second learnable orthogonal map (its own parameters) brings them back up, and
    ``depth`` more steps mix them with the skip channels. The bottom scale runs ``depth``
    steps. The output has the input's shape, so the network is a flow (``log_prob``,
    ``sample``) and, above all, an invertible backbone for segmentation and reconstruction
    whose training memory stays flat in depth (the backward rebuilds every scale's
    activations instead of storing them; what remains is one flow step's working set at
    the input's resolution). Volume-preserving up to the couplings' and ActNorms'
    log-determinants (the resamplings are orthogonal).

    Beyond InvertibleNetworks.jl's released networks (an open pull request there adds
    one); the learnable resampling is the paper's orthogonal stride-2 convolution.

    Args:
        in_channels: ``C >= 2`` (split at the first scale; pad a one-channel input with
            a zero channel, or squeeze it first).
        levels: number of scales; every spatial size must be divisible by ``2**(levels-1)``.
        depth: flow steps per scale, on the way down and on the way up.
        hidden: channels of the coupling conditioners.
        key: PRNG key.
        spatial_dims: 1 (signals), 2 (images, default) or 3 (volumes).
        cond_channels: ``K``, the condition's channels; 0 (default) for none.
        cond_spatial: ``False`` (default) for a vector condition ``(B, K)``; ``True`` for
            a feature map ``(B, K, *spatial)`` of the input's sizes, squeezed along with
            each downsampling (``K 2**(n i)`` channels at scale ``i``).
        conv: the steps' 1x1 convolution, a layer class (``ij.layers.Conv1x1LU``, default,
            or ``ij.layers.Conv1x1``).
        scale: the couplings' scale, a value (default ``ij.layers.SigmoidScale()``).
        transform: ``None`` (default: affine couplings) or a spline value,
            ``ij.layers.RationalQuadraticSpline(bins, bound)``: every coupling is then a
            :class:`~invjax.layers.SplineCoupling` (``scale`` unused).
        base: the base distribution (default ``ij.StandardNormal()``).
        backprop: ``ij.Invertible()`` (default) or ``ij.Autodiff()``.

    Shapes: ``x``: ``(B, C, *spatial)``, ``cond``: ``(B, K)`` or ``(B, K, *spatial)`` ->
    ``y``: shape of ``x``, ``logdet``: ``(B,)``.

    Example:
        >>> import jax, invjax as ij
        >>> net = ij.nets.IUNet(in_channels=2, levels=3, depth=1, hidden=8, key=jax.random.key(0))
        >>> y, logdet = net.forward(jax.numpy.ones((1, 2, 16, 16)))
        >>> y.shape, logdet.shape
        ((1, 2, 16, 16), (1,))
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
    scale: AbstractScale
    transform: RationalQuadraticSpline | None

    def __init__(self, in_channels: int, levels: int, depth: int, hidden: int, *, key, spatial_dims: int = 2,
                 cond_channels: int = 0, cond_spatial: bool = False, conv: type = Conv1x1LU,
                 scale: AbstractScale = SigmoidScale(), transform: RationalQuadraticSpline | None = None,
                 base=StandardNormal(), backprop=Invertible()):
        name = "IUNet"
        check_spatial_dims(name, spatial_dims, (1, 2, 3))
        check_positive(name, in_channels=in_channels, levels=levels, depth=depth, hidden=hidden)
        if in_channels < 2:
            raise ValueError(f"IUNet needs in_channels >= 2 (half of them skip, half go down), got {in_channels}; "
                             "pad a one-channel input with a zero channel, or squeeze it first.")
        check_cond_channels(name, cond_channels)
        check_layer_class(name, "conv", conv)
        check_scale(name, scale)
        self.transform = check_transform(name, transform)
        cond_spatial = bool(cond_spatial)

        def steps(channels, level, key):
            k = cond_channels * 2 ** (spatial_dims * level) if cond_spatial else cond_channels
            return Stack(lambda key: glow_step(channels, hidden, key=key, spatial_dims=spatial_dims, conv=conv,
                                               cond_channels=k, scale=scale, transform=transform), depth, key=key)

        def at_scale(level, channels, key):
            k_down_steps, k_down, k_inner, k_up, k_up_steps = jr.split(key, 5)
            if level == levels - 1:
                return steps(channels, level, k_down_steps)
            kept, down = channels - channels // 2, channels // 2
            below = at_scale(level + 1, down * 2**spatial_dims, k_inner)
            if cond_spatial and cond_channels:
                below = MapCond(below, space_to_depth)  # the condition follows the downsampling
            inner = Chain([learnable_squeeze(down, key=k_down, spatial_dims=spatial_dims), below,
                           Invert(learnable_squeeze(down, key=k_up, spatial_dims=spatial_dims))])
            return Chain([steps(channels, level, k_down_steps), OnChannels(inner, kept, channels),
                          steps(channels, level, k_up_steps)])

        self.body = at_scale(0, in_channels, key)
        self.base, self.backprop = check_flow_options(name, base, backprop)
        self.in_channels, self.levels, self.depth, self.hidden = in_channels, levels, depth, hidden
        self.spatial_dims, self.cond_channels, self.cond_spatial = spatial_dims, cond_channels, cond_spatial
        self.conv, self.scale = conv, scale

    @property
    def divisible_by(self) -> int:
        return 2 ** (self.levels - 1)
