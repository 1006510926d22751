"""ActNorm: per-channel scale and shift (Kingma and Dhariwal, 2018)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_layout
from .._layer import AbstractLayer, rebuild_inverse_backward, reconstruct_backward
from ._util import batch_logdet, per_channel, spatial_size


class ActNorm(AbstractLayer):
    """``y = x * exp(log_scale) + bias`` per channel.

    Starts as the identity; :meth:`initialize` sets scale and bias from a batch so that
    every output channel has zero mean and unit variance (Glow's data-dependent
    initialisation). ``flow.initialize(x)`` does this for every ActNorm of a network;
    under :class:`Invert` the inverse's output is standardised instead.

    Args:
        in_channels: ``C``, the size of axis 1.

    Shapes: ``(B, C)``, ``(B, C, W)``, ``(B, C, H, W)`` or ``(B, C, D, H, W)`` -> same.
    logdet: ``H*W*sum(log_scale)`` (the number of positions times the sum).
    """

    log_scale: Float[Array, " C"]
    bias: Float[Array, " C"]
    in_channels: int = eqx.field(static=True)

    def __init__(self, in_channels: int):
        self.in_channels = in_channels
        self.log_scale = jnp.zeros((in_channels,))
        self.bias = jnp.zeros((in_channels,))

    def _check(self, x):
        check_layout("ActNorm", x, self.in_channels, (0, 1, 2, 3))

    def _logdet(self, x):
        return batch_logdet(jnp.sum(self.log_scale) * spatial_size(x), x)

    def forward(self, x, cond=None):
        self._check(x)
        scale = jnp.exp(per_channel(self.log_scale, x.ndim))
        return x * scale + per_channel(self.bias, x.ndim), self._logdet(x)

    def inverse_and_log_det(self, y, cond=None):
        self._check(y)
        x = (y - per_channel(self.bias, y.ndim)) * jnp.exp(-per_channel(self.log_scale, y.ndim))
        return x, -self._logdet(y)

    def backward(self, y, dy, dlogdet, cond=None):
        return reconstruct_backward(self, y, dy, dlogdet, cond)

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        return rebuild_inverse_backward(self, x, dx, dlogdet, cond)

    def _moments(self, v, eps=1e-6):
        self._check(v)
        axes = (0,) + tuple(range(2, v.ndim))
        mean, std = jnp.mean(v, axis=axes), jnp.std(v, axis=axes) + eps
        return mean.astype(self.bias.dtype), std.astype(self.log_scale.dtype)

    def _with(self, log_scale, bias):
        return eqx.tree_at(lambda a: (a.log_scale, a.bias), self, (log_scale, bias))

    def initialize(self, x, cond=None):
        mean, std = self._moments(x)
        new = self._with(-jnp.log(std), -mean / std)  # forward(x) = (x - mean) / std
        return new, new.forward(x)[0]

    def initialize_inverse(self, y, cond=None):
        mean, std = self._moments(y)
        new = self._with(jnp.log(std), mean)  # inverse(y) = (y - mean) / std
        return new, new.inverse(y)
