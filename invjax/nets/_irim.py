"""The invertible recurrent inference machine, i-RIM (Putzky and Welling, "Invert to learn to
invert", 2019), as InvertibleNetworks.jl's ``NetworkLoop`` and ``CouplingLayerIRIM``."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float

from .._backprop import AbstractBackprop, Invertible
from .._checks import check_spatial_dims
from .._distributions import AbstractDistribution, StandardNormal
from .._flow import AbstractNetwork, check_flow_options
from .._layer import AbstractLayer
from ..layers import AdditiveCoupling, Chain, Conjugate, Conv1x1, ResidualBlock, Stack
from ..layers._gradient_step import GradientStep, _identity
from ._options import check_positive


def irim_coupling(in_channels: int, hidden: int, *, key, spatial_dims: int = 2, kernel: int = 4,
                  stride: int = 4) -> Conjugate:
    """InvertibleNetworks.jl's ``CouplingLayerIRIM``: an additive coupling conjugated by a
    Householder 1x1 convolution, ``C^-1 . coupling . C``, whose residual block downsamples
    by ``stride`` (kernel ``kernel``), applies a 3x3 convolution and upsamples back."""
    k_conv, k_block = jr.split(key)
    half = in_channels // 2
    block = ResidualBlock(half, in_channels - half, hidden, key=k_block, spatial_dims=spatial_dims, kernel=kernel,
                          middle_kernel=3, stride=stride)
    coupling = AdditiveCoupling(in_channels, hidden, key=k_block, spatial_dims=spatial_dims, conditioner=block)
    return Conjugate(Conv1x1(in_channels, key=k_conv), coupling)


class IRIM(AbstractNetwork):
    """i-RIM: ``iterations`` unrolled steps of a learned, invertible reconstruction.

    The state ``x = (eta, s)`` holds the estimate ``eta`` (channel 0) and a memory ``s``
    (channels 1 to ``C - 1``). Each iteration adds the normalised data-misfit gradient
    ``A^T (A link(eta) - d)`` to the memory (:class:`~invjax.layers.GradientStep`), then
    mixes the state with an i-RIM coupling (:func:`irim_coupling`). Every step is
    invertible given the observation ``d`` (the condition), so the invertible backward
    rebuilds each iteration's state: training memory stays flat in ``iterations``, as in
    InvertibleNetworks.jl's ``NetworkLoop``. Volume preserving (log-determinant 0).

    Train it end to end on a loss of the final estimate, e.g. with :meth:`reconstruct`:
    ``jax.grad(lambda net: mse(net.reconstruct(eta0, d), x_true))(net)``; call
    ``net.initialize(net.initial_state(eta0), d)`` on a first batch before (it sets the
    gradient normalisation).

    Reconstruction in float32: each inverse iteration can amplify round-off by up to
    ``1 + |A^T A|`` times the normalisation's scale, so rebuilt states drift more than a
    Glow's as iterations grow (measured on an untrained 8x8 i-RIM, ``|A^T A| = 2.25``:
    3e-5 relative at 8 iterations, 4.5e-5 at 16, up to 1e-2 at 64). Scale the operator
    to norm about 1 and check ``ij.reconstruction_error`` if you unroll many iterations.

    Args:
        in_channels: ``C >= 2``: the estimate and ``C - 1`` memory channels.
        iterations: number of unrolled iterations (InvertibleNetworks.jl's ``maxiter``).
        hidden: channels of the couplings' residual blocks.
        operator: ``A``, a linear JAX function of a batch ``(B, 1, *spatial) -> (B, *data)``.
        key: PRNG key.
        adjoint: ``A^T``; default ``jax.linear_transpose`` of ``operator``.
        link: ``Psi``, applied to ``eta`` before the operator (default: identity).
        spatial_dims: 1, 2 (images, default) or 3 (volumes).
        kernel: the kernel of the residual blocks' down/up-sampling convolutions
            (InvertibleNetworks.jl's ``k1``; default 4).
        stride: their stride (``s1``; default 4); spatial sizes must be multiples of it.
        base: the base distribution (default ``ij.StandardNormal()``; an i-RIM is trained
            by a loss of its output, so the base matters only to ``log_prob``).
        backprop: ``ij.Invertible()`` (default) or ``ij.Autodiff()``.

    Shapes: ``x``: ``(B, C, *spatial)``, ``cond`` (``d``): ``(B, *data)`` ->
    ``z``: ``(B, C, *spatial)``, ``logdet``: ``(B,)`` (zeros).

    Example:
        >>> import jax, jax.numpy as jnp, invjax as ij
        >>> blur = lambda x: x + 0.5 * jnp.roll(x, 1, axis=-1)   # a linear operator
        >>> net = ij.nets.IRIM(4, iterations=3, hidden=8, operator=blur, key=jax.random.key(0), stride=2)
        >>> d = jnp.ones((2, 1, 8, 8))
        >>> net.reconstruct(jnp.zeros((2, 1, 8, 8)), d).shape
        (2, 1, 8, 8)
    """

    body: AbstractLayer
    base: AbstractDistribution
    backprop: AbstractBackprop
    in_channels: int = eqx.field(static=True)
    iterations: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    kernel: int = eqx.field(static=True)
    stride: int = eqx.field(static=True)

    cond_channels: ClassVar[None] = None  # d has the operator's output shape, checked by GradientStep
    cond_spatial: ClassVar[bool] = False

    def __init__(self, in_channels: int, iterations: int, hidden: int, operator: Callable, *, key,
                 adjoint: Callable | None = None, link: Callable = _identity, spatial_dims: int = 2,
                 kernel: int = 4, stride: int = 4, base=StandardNormal(), backprop=Invertible()):
        check_spatial_dims("IRIM", spatial_dims, (1, 2, 3))
        check_positive("IRIM", iterations=iterations, hidden=hidden, stride=stride)
        if not isinstance(in_channels, int) or in_channels < 2:
            raise ValueError(f"IRIM needs in_channels >= 2 (an estimate and a memory), got {in_channels!r}.")

        def step(k):
            gradient = GradientStep(in_channels, operator, adjoint=adjoint, link=link, spatial_dims=spatial_dims)
            coupling = irim_coupling(in_channels, hidden, key=k, spatial_dims=spatial_dims, kernel=kernel,
                                     stride=stride)
            return Chain([gradient, coupling])

        self.body = Stack(step, iterations, key=key)
        self.base, self.backprop = check_flow_options("IRIM", base, backprop)
        self.in_channels, self.iterations, self.hidden = in_channels, iterations, hidden
        self.spatial_dims, self.kernel, self.stride = spatial_dims, kernel, stride

    @property
    def divisible_by(self) -> int:
        return self.stride

    def initial_state(self, eta: Float[Array, "B 1 *spatial"]) -> Float[Array, "B C *spatial"]:
        """``(eta, 0)``: the estimate with an empty memory."""
        if eta.ndim != 2 + self.spatial_dims or eta.shape[1] != 1:
            raise ValueError(f"IRIM: expected an estimate eta of shape (B, 1, {', '.join(['...'] * self.spatial_dims)}"
                             f"), got {tuple(eta.shape)}.")
        memory = jnp.zeros((eta.shape[0], self.in_channels - 1, *eta.shape[2:]), eta.dtype)
        return jnp.concatenate([eta, memory], axis=1)

    def reconstruct(self, eta: Float[Array, "B 1 *spatial"], d: Array) -> Float[Array, "B 1 *spatial"]:
        """The final estimate from the initial one and the observation ``d``:
        ``forward((eta, 0), d)``'s channel 0. Differentiable by the invertible backward."""
        return self.forward(self.initial_state(eta), d)[0][:, :1]
