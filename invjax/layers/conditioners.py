"""Conditioner networks for couplings: per-sample Equinox modules.

A coupling ``vmap``s its conditioner over the batch; the conditioner itself sees one
sample, as every Equinox module does. Their last layer starts at zero, so a new coupling
is the identity map. Arguments follow Equinox's own (``eqx.nn.MLP``, ``eqx.nn.Conv``).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float

from .._checks import check_spatial_dims
from ._conv import conv_same, to_channels_first, to_channels_last


def _zero_last(module, get):
    """Zero the weight and bias that ``get(module)`` returns (a linear or conv layer)."""
    last = get(module)
    return eqx.tree_at(
        lambda m: (get(m).weight, get(m).bias),
        module,
        (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)),
    )


class ResidualBlock(eqx.Module):
    """3x3 conv, ReLU, 1x1 conv, ReLU, 3x3 conv (zero-initialised), as in Glow and
    InvertibleNetworks.jl.

    Args:
        in_channels: channels in.
        out_channels: channels out.
        hidden: channels of the two hidden feature maps.
        key: PRNG key.
        spatial_dims: 1 for signals, 2 for images, 3 for volumes.

    Shapes (one sample): ``(in_channels, *spatial)`` -> ``(out_channels, *spatial)``.
    """

    convs: tuple[eqx.nn.Conv, eqx.nn.Conv, eqx.nn.Conv]

    def __init__(self, in_channels: int, out_channels: int, hidden: int, *, key, spatial_dims: int = 2):
        check_spatial_dims("ResidualBlock", spatial_dims, (1, 2, 3))
        k1, k2, k3 = jr.split(key, 3)
        conv = lambda i, o, k, key: eqx.nn.Conv(spatial_dims, i, o, k, padding=k // 2, key=key)  # noqa: E731
        convs = (conv(in_channels, hidden, 3, k1), conv(hidden, hidden, 1, k2), conv(hidden, out_channels, 3, k3))
        self.convs = _zero_last(convs, lambda c: c[-1])

    def __call__(self, x: Float[Array, "c *spatial"]) -> Float[Array, "o *spatial"]:
        # The convolutions run channels-last (see :mod:`invjax.layers._conv`); the modules keep
        # Equinox's layout and initialisation.
        first, middle, last = (lambda h, c=c: conv_same(h, c.weight, c.bias) for c in self.convs)
        h = to_channels_last(x[None])
        return to_channels_first(last(jax.nn.relu(middle(jax.nn.relu(first(h))))))[0]


def _identity(x):
    return x


class MLP(eqx.Module):
    """A ReLU multilayer perceptron whose last layer starts at zero.

    Args:
        in_size: size in.
        out_size: size out.
        width_size: width of the hidden layers.
        depth: number of hidden layers.
        key: PRNG key.

    Shapes (one sample): ``(in_size,)`` -> ``(out_size,)``.
    """

    mlp: eqx.nn.MLP

    def __init__(self, in_size: int, out_size: int, width_size: int, depth: int = 2, *, key):
        # A named identity rather than Equinox's default lambda, so that ``ij.save`` can
        # store the structure.
        mlp = eqx.nn.MLP(in_size, out_size, width_size, depth, activation=jax.nn.relu,
                         final_activation=_identity, key=key)
        self.mlp = _zero_last(mlp, lambda m: m.layers[-1])

    def __call__(self, x: Float[Array, " i"]) -> Float[Array, " o"]:
        return self.mlp(x)


def default_conditioner(in_channels: int, out_channels: int, hidden: int, spatial_dims: int, *, key):
    """An :class:`MLP` for vectors (``spatial_dims=0``), a :class:`ResidualBlock` otherwise."""
    if spatial_dims == 0:
        return MLP(in_channels, out_channels, hidden, key=key)
    return ResidualBlock(in_channels, out_channels, hidden, spatial_dims=spatial_dims, key=key)
