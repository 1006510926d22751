"""RealNVP for vectors (Dinh et al., 2017)."""

from __future__ import annotations

import equinox as eqx
import jax.random as jr

from .. import _engine
from .._checks import check_cond, check_layout
from .._flow import AbstractFlow
from .._layer import AbstractLayer
from ..layers import ActNorm, AffineCoupling, Chain, Permute, Stack


class RealNVP(AbstractFlow):
    """``depth`` steps of ActNorm, a fixed random permutation and an affine coupling.

    Args:
        dim: ``D``, the size of the vectors.
        depth: number of steps.
        hidden: width of the coupling MLPs.
        key: PRNG key.
        backprop: ``"invertible"`` (default) or ``"autodiff"``.

    Shapes: ``x``: ``(B, D)`` -> ``z``: ``(B, D)``, ``logdet``: ``(B,)``.

    Example:
        >>> import jax, invjax as ij
        >>> flow = ij.nets.RealNVP(dim=2, depth=4, hidden=32, key=jax.random.key(0))
        >>> flow.sample(jax.random.key(1), (5, 2)).shape
        (5, 2)
    """

    body: AbstractLayer
    dim: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    backprop: str = eqx.field(static=True)

    def __init__(self, dim: int, depth: int, hidden: int, *, key, backprop: str = "invertible"):
        if dim < 2:
            raise ValueError(f"RealNVP needs dim >= 2 to split, got {dim}.")

        def step(key):
            k1, k2 = jr.split(key)
            return Chain([ActNorm(dim), Permute(dim, key=k1), AffineCoupling(dim, hidden, 0, key=k2)])

        self.body = Stack(step, depth, key=key)
        self.dim, self.depth, self.hidden = dim, depth, hidden
        self.backprop = _engine.check_mode(backprop)

    def _check_input(self, x, cond):
        check_layout("RealNVP", x, self.dim, 0)
        check_cond("RealNVP", cond, x.shape[0], expected=False)
