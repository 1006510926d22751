"""ActNorm: per-channel scale and shift (Kingma and Dhariwal, 2018)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_layout
from .._layer import AbstractLayer
from ._util import batch_logdet, per_channel, spatial_size


class ActNorm(AbstractLayer):
    """``y = x * exp(log_scale) + bias`` per channel.

    Starts as the identity; :meth:`initialize` sets scale and bias from a batch so that
    every output channel has zero mean and unit variance (Glow's data-dependent
    initialisation). ``flow.initialize(x)`` does this for every ActNorm of a network.

    Args:
        channels: ``C``, the size of axis 1.
        key: unused (no random parameters); accepted for a uniform constructor.

    Shapes: ``(B, C)``, ``(B, C, H, W)`` or ``(B, C, D, H, W)`` -> same.
    logdet: ``H*W*sum(log_scale)`` (times ``D`` for volumes).
    """

    log_scale: Float[Array, " C"]
    bias: Float[Array, " C"]
    channels: int = eqx.field(static=True)

    def __init__(self, channels: int, *, key=None):
        del key
        self.channels = channels
        self.log_scale = jnp.zeros((channels,))
        self.bias = jnp.zeros((channels,))

    def _check(self, x):
        check_layout("ActNorm", x, self.channels, (0, 1, 2, 3))

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

    def initialize(self, x, cond=None, eps: float = 1e-6):
        self._check(x)
        axes = (0,) + tuple(range(2, x.ndim))
        mean, std = jnp.mean(x, axis=axes), jnp.std(x, axis=axes)
        log_scale = -jnp.log(std + eps).astype(self.log_scale.dtype)
        bias = (-mean * jnp.exp(log_scale)).astype(self.bias.dtype)
        new = eqx.tree_at(lambda a: (a.log_scale, a.bias), self, (log_scale, bias))
        return new, new.forward(x, cond)[0]
