"""Conditional HINT (Kruse et al., 2021): a joint flow of ``(x, y)`` whose triangular
structure gives the posterior ``p(x | y)``; single-scale and multiscale."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

from .. import _engine
from .._checks import check_array, check_cond, check_layout
from .._flow import AbstractFlow, standard_normal_log_prob
from .._layer import AbstractLayer
from ..layers import ActNorm, AffineCoupling, Chain, Conv1x1, HINTCoupling, Lane, OnChannels, Stack, set_lanes
from ._multiscale import multiscale
from .hint import SQUEEZES, check_options


def conditional_hint_step(x_channels: int, y_channels: int, hidden: int, spatial_dims: int, *, key) -> Chain:
    """One step on the joint state ``concat([y, x], axis=1)``.

    ``y`` lane: ActNorm, Householder 1x1 convolution, HINT coupling. ``x`` lane: the same,
    then an affine coupling of ``x`` given the ``y`` lane's input to its HINT coupling, as
    the seed's ``ConditionalLayerHINT``. ``y`` never depends on ``x``: the Jacobian is block
    triangular.
    """
    cy, cx = y_channels, x_channels
    k_py, k_px, k_hx, k_xy, k_hy = jr.split(key, 5)
    on_y = lambda layer: Lane(OnChannels(layer, 0, cy), "y")
    on_x = lambda layer: Lane(OnChannels(layer, cy, cy + cx), "x")
    return Chain([
        on_x(ActNorm(cx)),
        on_y(ActNorm(cy)),
        on_y(Conv1x1(cy, key=k_py)),
        on_x(Conv1x1(cx, key=k_px)),
        on_x(HINTCoupling(cx, hidden, spatial_dims, key=k_hx, permute="lower")),
        Lane(AffineCoupling(cy + cx, hidden, spatial_dims, key=k_xy, split=cy), "x"),
        on_y(HINTCoupling(cy, hidden, spatial_dims, key=k_hy, permute="lower")),
    ])


class AbstractJointFlow(AbstractFlow):
    """A flow of ``(x, y)`` whose ``y`` lane does not depend on ``x``, read as ``p(x | y)``.

    The body runs on ``v = concat([y, x], axis=1)`` and returns ``concat([z_y, z_x])``.
    Because ``z_y`` depends on ``y`` only, ``p(x | y) = N(z_x) |det dz_x/dx|``: the
    conditional methods (``forward``, ``inverse``, ``log_prob``, ``sample``, with ``y`` as
    ``cond``) use the same body with the ``y`` lane's log-determinant switched off; the
    joint methods (``forward_joint``, ``inverse_joint``, ``log_prob_joint``) use it whole.
    Every call is one pass of the engine, so all of them are memory-frugal.
    """

    in_channels: eqx.AbstractVar[int]
    cond_channels: eqx.AbstractVar[int]
    spatial_dims: eqx.AbstractVar[int]

    def _divisor(self) -> int:
        return 1

    def _check_lane(self, v, channels, what):
        check_layout(type(self).__name__, v, channels, self.spatial_dims, divisible_by=self._divisor(), what=what)

    def _check_input(self, x, cond):
        name = type(self).__name__
        self._check_lane(x, self.in_channels, "x")
        check_cond(name, cond, x.shape[0], expected=True)
        self._check_lane(cond, self.cond_channels, "cond")
        if cond.shape[2:] != x.shape[2:]:
            raise ValueError(
                f"{name}: cond must have the spatial sizes of x, {tuple(x.shape[2:])}; got shape {tuple(cond.shape)}."
            )

    def _join(self, x, y):
        return jnp.concatenate([y.astype(x.dtype), x], axis=1)

    def _part(self, w):
        return w[:, self.cond_channels :], w[:, : self.cond_channels]

    def _conditional_body(self):
        return set_lanes(self.body, "y", counts=False)

    def forward(self, x, cond=None):
        """``(z_x, log|det dz_x/dx|)`` given ``y = cond``."""
        self._check_input(x, cond)
        w, logdet = _engine.forward(self._conditional_body(), self._join(x, cond), None, self.backprop)
        return self._part(w)[0], logdet

    def inverse_and_log_det(self, z, cond=None):
        """``(x, log|det dx/dz_x|)`` given ``y = cond``: a posterior draw for ``z ~ N(0, I)``."""
        self._check_input(z, cond)
        z_y, _ = self.forward_y(cond)
        w, logdet = _engine.inverse_and_log_det(self._conditional_body(), self._join(z, z_y), None, self.backprop)
        return self._part(w)[0], logdet

    def forward_y(self, y):
        """``(z_y, log|det dz_y/dy|)``: the ``y`` lane alone (the ``x`` lane switched off)."""
        name = type(self).__name__
        check_array(name, y, "y")
        self._check_lane(y, self.cond_channels, "y")
        placeholder = jnp.zeros((y.shape[0], self.in_channels, *y.shape[2:]), self.dtype)
        body = set_lanes(self.body, "x", active=False)
        w, logdet = _engine.forward(body, self._join(placeholder, y), None, self.backprop)
        return self._part(w)[1], logdet

    def forward_joint(self, x, y):
        """``(z_x, z_y, log|det d(z_x, z_y)/d(x, y)|)``."""
        self._check_input(x, y)
        w, logdet = _engine.forward(self.body, self._join(x, y), None, self.backprop)
        return (*self._part(w), logdet)

    def inverse_joint(self, z_x, z_y):
        """``(x, y, log|det d(x, y)/d(z_x, z_y)|)``: a draw from the joint for standard normal latents."""
        self._check_input(z_x, z_y)
        w, logdet = _engine.inverse_and_log_det(self.body, self._join(z_x, z_y), None, self.backprop)
        return (*self._part(w), logdet)

    def log_prob_joint(self, x, y):
        """``log p(x, y)``, per sample: the joint objective the seed's package trains with."""
        z_x, z_y, logdet = self.forward_joint(x, y)
        return standard_normal_log_prob(z_x) + standard_normal_log_prob(z_y) + logdet

    def initialize(self, x, cond=None):
        """ActNorm data initialisation of both lanes on a batch ``(x, y)``."""
        self._check_input(x, cond)
        body, _ = self.body.initialize(self._join(x, cond))
        return eqx.tree_at(lambda f: f.body, self, body)


def _check_channels(name, in_channels, cond_channels, minimum):
    if in_channels < minimum or cond_channels < minimum:
        raise ValueError(
            f"{name} needs in_channels and cond_channels >= {minimum}, got {in_channels} and {cond_channels}."
        )


class ConditionalHINT(AbstractJointFlow):
    """The conditional HINT of the seed's package: ``depth`` joint steps on ``(x, y)``.

    A model of the joint ``p(x, y)`` whose triangular structure gives the posterior:
    ``log_prob(x, y)`` is ``log p(x | y)`` and ``sample(key, shape, y)`` draws from it;
    ``log_prob_joint`` is ``log p(x, y)``. Train with either.

    Args:
        in_channels: ``C_x`` (the size of ``x`` vectors); at least 2.
        cond_channels: ``C_y``; at least 2.
        depth: number of steps (:func:`conditional_hint_step`).
        hidden: hidden width of the couplings' conditioners.
        key: PRNG key.
        spatial_dims: 0 for vectors, 1, 2 (images) or 3 (volumes).
        backprop: ``"invertible"`` (default) or ``"autodiff"``.

    Shapes: ``x``: ``(B, C_x, *S)``, ``cond = y``: ``(B, C_y, *S)`` -> ``z``: shape of
    ``x``, ``logdet``: ``(B,)``.

    Example:
        >>> import jax, jax.numpy as jnp, invjax as ij
        >>> flow = ij.nets.ConditionalHINT(2, 3, depth=2, hidden=16, key=jax.random.key(0), spatial_dims=0)
        >>> y = jnp.ones((5, 3))
        >>> flow.sample(jax.random.key(1), (5, 2), y).shape
        (5, 2)
    """

    body: AbstractLayer
    in_channels: int = eqx.field(static=True)
    cond_channels: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    backprop: str = eqx.field(static=True)

    def __init__(self, in_channels: int, cond_channels: int, depth: int, hidden: int, *, key,
                 spatial_dims: int = 2, backprop: str = "invertible"):
        check_options("ConditionalHINT", spatial_dims, (0, 1, 2, 3))
        _check_channels("ConditionalHINT", in_channels, cond_channels, 2)
        make = lambda k: conditional_hint_step(in_channels, cond_channels, hidden, spatial_dims, key=k)
        self.body = Stack(make, depth, key=key)
        self.in_channels, self.cond_channels, self.depth = in_channels, cond_channels, depth
        self.hidden, self.spatial_dims = hidden, spatial_dims
        self.backprop = _engine.check_mode(backprop)


class MultiscaleConditionalHINT(AbstractJointFlow):
    """Conditional HINT at ``levels`` scales, as the seed's ``NetworkMultiScaleConditionalHINT``.

    Each level squeezes ``x`` and ``y`` (Haar by default), runs ``depth`` joint steps and
    factors out half of each lane (``split_scales=true`` in the seed's package).
    Methods and shapes as :class:`ConditionalHINT`; spatial sizes must be divisible by
    ``2**levels`` and single-channel images are fine.

    Args:
        in_channels: ``C_x``; cond_channels: ``C_y``; levels: number of scales;
        depth: steps per level; hidden, key, backprop as :class:`ConditionalHINT`;
        spatial_dims: 1, 2 or 3; squeeze: ``"haar"`` or ``"space_to_depth"``.
    """

    body: AbstractLayer
    in_channels: int = eqx.field(static=True)
    cond_channels: int = eqx.field(static=True)
    levels: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    backprop: str = eqx.field(static=True)

    def __init__(self, in_channels: int, cond_channels: int, levels: int, depth: int, hidden: int, *, key,
                 spatial_dims: int = 2, squeeze: str = "haar", backprop: str = "invertible"):
        check_options("MultiscaleConditionalHINT", spatial_dims, (1, 2, 3), squeeze=squeeze)
        _check_channels("MultiscaleConditionalHINT", in_channels, cond_channels, 1)
        if levels < 1:
            raise ValueError(f"MultiscaleConditionalHINT needs levels >= 1, got {levels}.")

        def make_steps(lanes, level, key):
            cy, cx = lanes
            return Stack(lambda k: conditional_hint_step(cx, cy, hidden, spatial_dims, key=k), depth, key=key)

        self.body = multiscale(make_steps, (cond_channels, in_channels), levels, spatial_dims, SQUEEZES[squeeze](),
                               key=key)
        self.in_channels, self.cond_channels, self.levels, self.depth = in_channels, cond_channels, levels, depth
        self.hidden, self.spatial_dims = hidden, spatial_dims
        self.backprop = _engine.check_mode(backprop)

    def _divisor(self):
        return 2**self.levels
