"""One joint step of a conditional HINT (Kruse et al., 2021): InvertibleNetworks.jl's
``ConditionalLayerHINT``, on the two lanes ``(y, x)`` stacked along the channels."""

from __future__ import annotations

import equinox as eqx
import jax.random as jr

from .._checks import check_spatial_dims
from .._layer import AbstractLayer
from ._lane import Lane
from ._actnorm import ActNorm
from ._chain import Chain
from ._composite import AbstractComposite
from ._conditioners import check_make_conditioner
from ._conv1x1 import Conv1x1
from ._coupling import make_coupling
from ._hint import HINTCoupling, check_permute
from ._on_channels import OnChannels
from ._scales import AbstractScale, SigmoidScale, check_scale
from ._spline import RationalQuadraticSpline, check_transform


def conditional_hint_step(in_channels: int, cond_channels: int, hidden: int, *, key, spatial_dims: int = 2,
                          permute: str = "lower", scale: AbstractScale = SigmoidScale(),
                          transform: RationalQuadraticSpline | None = None, make_conditioner=None) -> Chain:
    """One step on the joint state ``concat([y, x], axis=1)`` (the body of :class:`ConditionalHINTStep`).

    ``y`` lane: ActNorm, Householder 1x1 convolution, HINT coupling. ``x`` lane: the same,
    then an affine coupling of ``x`` given the ``y`` lane's input to its HINT coupling, as
    InvertibleNetworks.jl's ``ConditionalLayerHINT``. ``y`` never depends on ``x``: the
    Jacobian is block triangular. ``permute`` is the lane HINT couplings'; every coupling
    has the scale ``scale``, or is a spline coupling where ``transform`` is a spline.
    """
    cy, cx = cond_channels, in_channels
    k_py, k_px, k_hx, k_xy, k_hy = jr.split(key, 5)
    on_y = lambda layer: Lane(OnChannels(layer, 0, cy), "y")
    on_x = lambda layer: Lane(OnChannels(layer, cy, cy + cx), "x")
    hint = lambda c, k: HINTCoupling(c, hidden, key=k, spatial_dims=spatial_dims, permute=permute, scale=scale,
                                     transform=transform, make_conditioner=make_conditioner)
    return Chain([
        on_x(ActNorm(cx)),
        on_y(ActNorm(cy)),
        on_y(Conv1x1(cy, key=k_py)),
        on_x(Conv1x1(cx, key=k_px)),
        on_x(hint(cx, k_hx)),
        Lane(make_coupling(cy + cx, hidden, spatial_dims=spatial_dims, key=k_xy, split=cy, scale=scale,
                           transform=transform, make_conditioner=make_conditioner), "x"),
        on_y(hint(cy, k_hy)),
    ])


class ConditionalHINTStep(AbstractComposite):
    """One joint step of a conditional HINT: InvertibleNetworks.jl's ``ConditionalLayerHINT``.

    The input is the joint state ``v = concat([y, x], axis=1)``: the ``y`` lane in the
    first ``C_y`` channels, the ``x`` lane in the last ``C_x``; the output is
    ``concat([z_y, z_x], axis=1)``, laid out the same way. Each lane runs an ActNorm, a
    Householder 1x1 convolution (Julia's ``permute=true``) and a recursive
    :class:`HINTCoupling`; then an affine coupling transforms the ``x`` lane given the
    ``y`` lane's input to its HINT coupling. ``z_y`` depends on ``y`` only (the Jacobian
    is block triangular), so a stack of steps is the body of :class:`~invjax.nets.ConditionalHINT`,
    which gives the posterior, the joint and the ``y`` lane alone (``forward_y``,
    ``inverse_y``). Julia keeps the per-lane ActNorms in the network, not the layer.

    Args:
        in_channels: ``C_x``, the channels of ``x`` (at least 2).
        hidden: hidden width of the couplings' conditioners.
        cond_channels: ``C_y``, the channels of ``y`` (at least 2; may differ from ``C_x``,
            where Julia needs the same ``n_in`` for both).
        key: PRNG key.
        spatial_dims: 0 for vectors, 1, 2 (images, default) or 3 (volumes).
        permute: the lane HINT couplings' permutation (see :class:`HINTCoupling`):
            ``"lower"`` (default), ``"none"`` (Julia's), ``"both"`` or ``"full"``.
        scale: every coupling's scale, a value (default ``ij.layers.SigmoidScale()``);
            Julia's ``activation=`` (see :class:`AffineCoupling`).
        transform: ``None`` (default: affine couplings) or
            ``ij.layers.RationalQuadraticSpline(bins, bound)``: every coupling is then a
            :class:`SplineCoupling` (``scale`` unused).
        make_conditioner: ``None`` (default: each coupling's default conditioner) or a
            function ``(in_channels, out_channels, *, key) -> module`` that builds every
            coupling's conditioner, a per-sample module (see :class:`AffineCoupling`);
            e.g. InvertibleNetworks.jl's 3-3-3 blocks: ``lambda i, o, key:
            ij.layers.ResidualBlock(i, o, hidden, key=key, middle_kernel=3)``. ``hidden``
            is then unused. Called at construction only (not stored).

    Shapes: ``(B, C_y + C_x, *spatial)`` -> same. logdet: both lanes', per sample ``(B,)``.

    Example:
        >>> import jax, invjax as ij
        >>> step = ij.layers.ConditionalHINTStep(2, 8, cond_channels=3, key=jax.random.key(0), spatial_dims=0)
        >>> z, logdet = step.forward(jax.numpy.ones((4, 5)))  # columns: y (3), then x (2)
        >>> z.shape, logdet.shape
        ((4, 5), (4,))
    """

    body: AbstractLayer
    in_channels: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    cond_channels: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    permute: str = eqx.field(static=True)
    scale: AbstractScale
    transform: RationalQuadraticSpline | None

    def __init__(self, in_channels: int, hidden: int, *, cond_channels: int, key, spatial_dims: int = 2,
                 permute: str = "lower", scale: AbstractScale = SigmoidScale(),
                 transform: RationalQuadraticSpline | None = None, make_conditioner=None):
        name = "ConditionalHINTStep"
        if not all(isinstance(c, int) and c >= 2 for c in (in_channels, cond_channels)):
            raise ValueError(
                f"{name} needs in_channels and cond_channels >= 2, got {in_channels!r} and {cond_channels!r}."
            )
        check_spatial_dims(name, spatial_dims, (0, 1, 2, 3))
        check_permute(name, permute)
        self.scale = check_scale(name, scale)
        self.transform = check_transform(name, transform)
        check_make_conditioner(name, make_conditioner)
        self.body = conditional_hint_step(in_channels, cond_channels, hidden, key=key, spatial_dims=spatial_dims,
                                          permute=permute, scale=scale, transform=transform,
                                          make_conditioner=make_conditioner)
        self.in_channels, self.hidden, self.cond_channels = in_channels, hidden, cond_channels
        self.spatial_dims, self.permute = spatial_dims, permute
