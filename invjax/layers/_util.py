"""Small array helpers shared by the layers."""

from __future__ import annotations

import math

import jax.numpy as jnp


def per_channel(v, ndim: int):
    """Reshape a per-channel vector ``(C,)`` to broadcast against ``(B, C, *spatial)``."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def spatial_size(x) -> float:
    """Number of positions per channel: ``H*W`` for images, 1 for vectors; a float (weakly
    typed, so the product keeps the parameters' dtype): a count past ``2**31`` (a 2048^3
    volume) as a Python int overflows JAX's int32 conversion."""
    return float(math.prod(x.shape[2:]))


def sum_per_sample(v):
    """``(B, ...)`` -> ``(B,)``: the sum over every axis but the batch.

    Summed over the axes, not over ``v.reshape(B, -1)``: flattening a spatially sharded
    array makes XLA's partitioner gather it whole on every device first.
    """
    return jnp.sum(v, axis=tuple(range(1, v.ndim)))


def batch_logdet(value, x):
    """Broadcast a per-sample-constant log-determinant to shape ``(B,)``."""
    return jnp.broadcast_to(value, x.shape[:1]).astype(x.dtype)


def mix_channels(matrix, x):
    """Apply a ``(C, C)`` matrix to the channels of ``x`` at every position."""
    return jnp.einsum("oc,bc...->bo...", matrix, x)


def split_channels(x, first: int):
    return x[:, :first], x[:, first:]
