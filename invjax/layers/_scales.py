"""How an affine coupling turns its conditioner's raw output into a positive scale: a value.

InvertibleNetworks.jl's couplings take an ``activation`` (``SigmoidLayer(low=, high=)``,
``ExpClampLayer()``); invjax's ``AffineCoupling`` takes ``scale=`` one of these.
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._strict import AbstractStrictModule


class AbstractScale(AbstractStrictModule):
    """``raw -> (s, log s)``, elementwise, ``s > 0``."""

    @abc.abstractmethod
    def __call__(self, raw: Float[Array, "..."]) -> tuple[Array, Array]:
        """The scale and its logarithm (computed directly where that is more accurate)."""


class SigmoidScale(AbstractScale):
    """``s = low + (high - low) * sigmoid(raw + c)``: bounded in ``(low, high)``.

    Bounding ``s`` keeps every inverse well conditioned, so activations rebuilt through a
    deep network stay accurate in float32. ``centred=True`` (the default where
    ``low < 1 < high``) picks ``c`` so that ``raw = 0`` gives ``s = 1``: a new coupling is
    the identity. InvertibleNetworks.jl's ``SigmoidLayer(low=, high=)`` is
    ``centred=False`` (its default range ``(0, 1)``; ``glow_seismic.jl`` uses ``(0.5, 1)``).

    Args:
        low: the lower end of the range, ``>= 0``.
        high: the upper end, ``> low``.
        centred: whether ``raw = 0`` gives ``s = 1``; needs ``low < 1 < high``.
    """

    low: float = eqx.field(static=True)
    high: float = eqx.field(static=True)
    centred: bool = eqx.field(static=True)

    def __init__(self, low: float = 0.5, high: float = 2.0, *, centred: bool | None = None):
        if not 0 <= low < high:
            raise ValueError(f"SigmoidScale: expected 0 <= low < high, got low={low}, high={high}.")
        inside = low < 1 < high
        if centred is None:
            centred = inside
        if centred and not inside:
            raise ValueError(f"SigmoidScale: centred=True needs low < 1 < high (so that s = 1 is reachable), got "
                             f"low={low}, high={high}; pass centred=False for InvertibleNetworks.jl's uncentred "
                             "sigmoid.")
        self.low, self.high, self.centred = float(low), float(high), bool(centred)

    def __call__(self, raw):
        offset = math.log((1 - self.low) / (self.high - 1)) if self.centred else 0.0
        scale = self.low + (self.high - self.low) * jax.nn.sigmoid(raw + offset)
        return scale, jnp.log(scale)


class ExpClampScale(AbstractScale):
    """``s = exp(clamp * 0.636 * atan(raw))``: InvertibleNetworks.jl's ``ExpClamp``.

    ``s`` lies in ``(exp(-clamp), exp(clamp))`` (``0.636 ~ 2 / pi``) and ``raw = 0`` gives
    ``s = 1``; ``log s`` is exact.

    Args:
        clamp: the bound of ``|log s|``, positive (default 2, as InvertibleNetworks.jl).
    """

    clamp: float = eqx.field(static=True)

    def __init__(self, clamp: float = 2.0):
        if not clamp > 0:
            raise ValueError(f"ExpClampScale: clamp must be positive, got {clamp}.")
        self.clamp = float(clamp)

    def __call__(self, raw):
        log_scale = self.clamp * 0.636 * jnp.arctan(raw)
        return jnp.exp(log_scale), log_scale


def check_scale(name: str, scale) -> AbstractScale:
    if not isinstance(scale, AbstractScale):
        raise ValueError(f"{name}: scale must be an ij.layers.SigmoidScale or ExpClampScale (an AbstractScale), "
                         f"got {scale!r}.")
    return scale
