"""The hyperbolic (leapfrog) layer of Lensink, Peters and Haber (2022)."""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float

from .._checks import check_layout, check_spatial_dims
from .._layer import AbstractLayer
from ._conv import conv_same, to_channels_first, to_channels_last
from ._util import batch_logdet
from ._squeeze import HaarSqueeze

ACTIONS = ("same", "down", "up")


class HyperbolicLayer(AbstractLayer):
    """One leapfrog step of a second-order (hyperbolic) network on a pair of states.

    The input holds two states, ``x = (x_prev, x_curr)`` along the channels. After an
    optional change of resolution (orthonormal Haar squeeze of both states for
    ``"down"``, its inverse for ``"up"``), the layer returns ``(x_curr, x_next)`` with

        ``x_next = 2 x_curr - x_prev - alpha * W^T act(W x_curr + b)``,

    ``W`` a convolution (a matrix for vectors). The inverse is the same step run
    backwards in time: ``x_prev = 2 x_curr - x_next - alpha * W^T act(W x_curr + b)``.
    Exactly invertible, volume preserving (logdet 0), and its backward needs one
    evaluation of ``W^T act(W x + b)``, shared with the reconstruction.

    Args:
        in_channels: ``2c``, the channels of the input, which holds the two states of ``c``
            channels each (so it must be even).
        hidden: channels of ``W x`` (InvertibleNetworks.jl's ``n_hidden``).
        key: PRNG key.
        spatial_dims: 0 (vectors), 1, 2 (default) or 3. ``"down"``/``"up"`` need at least 1.
        action: ``"same"``, ``"down"`` (spatial sizes halve, channels times ``2**n``)
            or ``"up"`` (the reverse; ``c`` must be a multiple of ``2**n``).
        alpha: the step size.
        kernel_size: odd size of the convolution ``W``.
        activation: ``act``; ReLU as in InvertibleNetworks.jl.

    Shapes: ``(B, 2c, *S)`` -> ``(B, 2c, *S)`` (same), ``(B, 2c 2**n, *S/2)`` (down) or
    ``(B, 2c / 2**n, *2S)`` (up).
    """

    weight: Float[Array, "hidden c *kernel"]
    bias: Float[Array, " hidden"]
    in_channels: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)
    action: str = eqx.field(static=True)
    alpha: float = eqx.field(static=True)
    kernel_size: int = eqx.field(static=True)
    activation: Callable = eqx.field(static=True)

    def __init__(self, in_channels: int, hidden: int, *, key, spatial_dims: int = 2, action: str = "same",
                 alpha: float = 1.0, kernel_size: int = 3, activation: Callable = jax.nn.relu):
        if action not in ACTIONS:
            raise ValueError(f"HyperbolicLayer: action must be one of {ACTIONS}, got {action!r}.")
        check_spatial_dims("HyperbolicLayer", spatial_dims, (0, 1, 2, 3) if action == "same" else (1, 2, 3),
                           "" if action == "same" else f" (at least 1 to resample with action {action!r})")
        if in_channels < 2 or in_channels % 2:
            raise ValueError(
                f"HyperbolicLayer: in_channels holds two states and must be even and >= 2, got {in_channels}."
            )
        channels = in_channels // 2
        if kernel_size % 2 == 0:
            raise ValueError(f"HyperbolicLayer: kernel_size must be odd, got {kernel_size}.")
        factor = 2**spatial_dims
        if action == "up" and channels % factor:
            raise ValueError(
                f"HyperbolicLayer: action 'up' needs each state's channels (in_channels / 2 = {channels}) "
                f"divisible by {factor}."
            )
        inner = {"same": channels, "down": channels * factor, "up": channels // factor}[action]
        kernel = (kernel_size,) * spatial_dims
        # The leapfrog is stable (its states neither grow nor decay) while
        # alpha * |W|^2 < 4 (Lensink et al.). A random W of InvertibleNetworks.jl's Glorot scale can
        # exceed that, and a deep network then blows up; this scale keeps |W| near 0.5.
        size = math.prod(kernel)
        scale = 0.5 / (math.sqrt(inner * size) + math.sqrt(hidden * size))
        self.weight = scale * jr.normal(key, (hidden, inner, *kernel))
        self.bias = jnp.zeros((hidden,))
        self.in_channels, self.hidden, self.spatial_dims, self.action = in_channels, hidden, spatial_dims, action
        self.alpha, self.kernel_size, self.activation = float(alpha), kernel_size, activation

    def _force(self, x):
        """``W^T act(W x + b)`` for a batch of states ``x`` (``(B, c, *S)``)."""
        if self.spatial_dims == 0:
            return self.activation(x @ self.weight.T + self.bias) @ self.weight
        n = self.spatial_dims
        h = conv_same(to_channels_last(x), self.weight, self.bias)
        # The adjoint of a stride-1 "SAME" convolution (odd kernel): flipped, transposed kernel.
        adjoint = jnp.flip(self.weight, axis=tuple(range(2, 2 + n))).swapaxes(0, 1)
        return to_channels_first(conv_same(self.activation(h), adjoint))

    def _resample(self, v, inverse=False):
        """The change of resolution (orthonormal, so it is also its own adjoint's inverse)."""
        if self.action == "same":
            return v
        squeeze = HaarSqueeze()
        down = (self.action == "down") != inverse
        return squeeze.forward(v)[0] if down else squeeze.inverse(v)

    def _halves(self, v):
        c = v.shape[1] // 2
        return v[:, :c], v[:, c:]

    def _step(self, curr, other):
        """The leapfrog update, the same in both time directions."""
        return 2 * curr - other - self.alpha * self._force(curr)

    def forward(self, x, cond=None):
        check_layout("HyperbolicLayer", x, self.in_channels, self.spatial_dims)
        prev, curr = self._halves(self._resample(x))
        return jnp.concatenate([curr, self._step(curr, prev)], axis=1), batch_logdet(0.0, x)

    def _check_output(self, y):
        check_layout("HyperbolicLayer", y, 2 * self.weight.shape[1], self.spatial_dims, what="y")

    def inverse_and_log_det(self, y, cond=None):
        self._check_output(y)
        curr, nxt = self._halves(y)
        x = self._resample(jnp.concatenate([self._step(curr, nxt), curr], axis=1), inverse=True)
        return x, batch_logdet(0.0, y)

    def _pull(self, curr, other, dcurr, dother):
        """Rebuild ``other' = step(curr, other)`` and pull ``(dcurr, dother')`` back to
        ``(curr, other)`` and the parameters, with one evaluation of the force."""
        force, pull = eqx.filter_vjp(lambda layer, c: layer._force(c), self, curr)
        rebuilt = 2 * curr - other - self.alpha * force
        dlayer, dforce_curr = pull(-self.alpha * dother)
        return rebuilt, dcurr + 2 * dother + dforce_curr, -dother, dlayer

    def backward(self, y, dy, dlogdet, cond=None):
        self._check_output(y)
        curr, nxt = self._halves(y)
        dcurr, dnxt = self._halves(dy)
        prev, dcurr, dprev, dlayer = self._pull(curr, nxt, dcurr, dnxt)
        x = self._resample(jnp.concatenate([prev, curr], axis=1), inverse=True)
        dx = self._resample(jnp.concatenate([dprev, dcurr], axis=1), inverse=True)
        return x, dx, dlayer, None

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        check_layout("HyperbolicLayer", x, self.in_channels, self.spatial_dims)
        prev, curr = self._halves(self._resample(x))
        dprev, dcurr = self._halves(self._resample(dx))
        nxt, dcurr, dnxt, dlayer = self._pull(curr, prev, dcurr, dprev)
        return jnp.concatenate([curr, nxt], axis=1), jnp.concatenate([dcurr, dnxt], axis=1), dlayer, None

    # No data-dependent parameters.
    def initialize(self, x, cond=None):
        return self, self.forward(x, cond)[0]

    def initialize_inverse(self, y, cond=None):
        return self, self.inverse(y, cond)
