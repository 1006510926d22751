"""RealNVP for vectors (Dinh et al., 2017), and its conditional form."""

from __future__ import annotations

import equinox as eqx
import jax.random as jr

from .. import _engine
from .._checks import check_cond, check_layout
from .._flow import AbstractFlow
from .._layer import AbstractLayer
from ..layers import ActNorm, AffineCoupling, Chain, Permute, Stack


def _realnvp_body(dim, depth, hidden, cond_dim, key):
    if dim < 2:
        raise ValueError(f"RealNVP needs dim >= 2 to split, got {dim}.")

    def step(key):
        k1, k2 = jr.split(key)
        coupling = AffineCoupling(dim, hidden, 0, key=k2, cond_channels=cond_dim)
        return Chain([ActNorm(dim), Permute(dim, key=k1), coupling])

    return Stack(step, depth, key=key)


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
        self.body = _realnvp_body(dim, depth, hidden, 0, key)
        self.dim, self.depth, self.hidden = dim, depth, hidden
        self.backprop = _engine.check_mode(backprop)

    def _check_input(self, x, cond):
        check_layout("RealNVP", x, self.dim, 0)
        check_cond("RealNVP", cond, x.shape[0], expected=False)


class ConditionalRealNVP(AbstractFlow):
    """RealNVP for ``p(x | cond)``: every coupling's MLP also sees ``cond``.

    Args:
        dim: ``D``; cond_dim: ``K``; depth, hidden, key, backprop as :class:`RealNVP`.

    Shapes: ``x``: ``(B, D)``, ``cond``: ``(B, K)`` -> ``z``: ``(B, D)``,
    ``logdet``: ``(B,)``. ``cond`` is the last argument of every method.
    """

    body: AbstractLayer
    dim: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    backprop: str = eqx.field(static=True)

    def __init__(self, dim: int, cond_dim: int, depth: int, hidden: int, *, key, backprop: str = "invertible"):
        if cond_dim < 1:
            raise ValueError(f"ConditionalRealNVP needs cond_dim >= 1, got {cond_dim}.")
        self.body = _realnvp_body(dim, depth, hidden, cond_dim, key)
        self.dim, self.cond_dim, self.depth, self.hidden = dim, cond_dim, depth, hidden
        self.backprop = _engine.check_mode(backprop)

    def _check_input(self, x, cond):
        check_layout("ConditionalRealNVP", x, self.dim, 0)
        check_cond("ConditionalRealNVP", cond, x.shape[0], expected=True)
        check_layout("ConditionalRealNVP", cond, self.cond_dim, 0, what="cond")
