"""How exact the reconstruction is: the invertible backward is only as exact as the inverse."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float


def reconstruction_error(flow, x: Float[Array, "B ..."], cond=None) -> Float[Array, ""]:
    """Relative error of ``inverse(forward(x))``: ``||x' - x|| / ||x||``.

    Gradients of invjax flows rebuild every activation from the layer outputs; their
    accuracy is bounded by this number (about 1e-6 for a healthy float32 Glow, growing
    with depth and with ill-conditioned layers). ``ij.fit(..., check_reconstruction_every=N)``
    checks it during training.

    Args:
        flow: any invjax flow.
        x: a batch, ``(B, ...)``.
        cond: the condition of a conditional flow, or ``None``.

    Returns:
        A scalar (0 for an exact reconstruction).
    """
    z, _ = flow.forward(x, cond)
    back = flow.inverse(z, cond)
    return jnp.linalg.norm((back - x).ravel()) / jnp.maximum(jnp.linalg.norm(x.ravel()), jnp.finfo(x.dtype).tiny)
