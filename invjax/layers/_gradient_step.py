"""i-RIM's data-consistency step (Putzky and Welling, 2019), as in InvertibleNetworks.jl's ``NetworkLoop``."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_layout, check_spatial_dims
from .._layer import AbstractLayer


def _identity(x):
    return x


class GradientStep(AbstractLayer):
    """Add the normalised data-misfit gradient to the memory: ``s1 += a * g + b``.

    The state ``x`` is ``(eta, s)``: channel 0 is the estimate ``eta``, channels 1... the
    memory ``s``. With ``d`` the observation (the condition) and ``A`` a linear forward
    operator, ``g = A^T (A link(eta) - d)``; it is added to the memory's first channel,
    after an ActNorm-like normalisation (``a``, ``b`` learned, initialised from the first
    batch's ``g``, its spread floored at 1e-3). ``eta`` is unchanged, so the step is an
    additive coupling: invertible given ``d``, volume preserving (log-determinant 0).

    Args:
        in_channels: ``C >= 2``, channels of the state (1 estimate + ``C - 1`` memory).
        operator: ``A``, a linear JAX function of a batch ``(B, 1, *spatial) -> (B, *data)``.
        adjoint: ``A^T``, ``(B, *data) -> (B, 1, *spatial)``; default ``jax.linear_transpose``
            of ``operator``.
        link: ``Psi``, applied to ``eta`` before the operator (default: identity).
        spatial_dims: 1, 2 (images, default) or 3 (volumes).

    Shapes: ``x``: ``(B, C, *spatial)``, ``cond`` (``d``): ``(B, *data)`` -> ``y``: like ``x``.
    """

    scale: Float[Array, " 1"]
    bias: Float[Array, " 1"]
    operator: Callable = eqx.field(static=True)
    adjoint: Callable | None = eqx.field(static=True)
    link: Callable = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    spatial_dims: int = eqx.field(static=True)

    def __init__(self, in_channels: int, operator: Callable, *, adjoint: Callable | None = None,
                 link: Callable = _identity, spatial_dims: int = 2):
        check_spatial_dims("GradientStep", spatial_dims, (1, 2, 3))
        if not isinstance(in_channels, int) or in_channels < 2:
            raise ValueError(f"GradientStep needs in_channels >= 2 (an estimate and a memory), got {in_channels!r}.")
        for name, f in (("operator", operator), ("link", link)) + ((("adjoint", adjoint),) if adjoint else ()):
            if not callable(f):
                raise ValueError(f"GradientStep: {name} must be a function, got {f!r}.")
        self.scale, self.bias = jnp.ones(1), jnp.zeros(1)
        self.operator, self.adjoint, self.link = operator, adjoint, link
        self.in_channels, self.spatial_dims = in_channels, spatial_dims

    def gradient(self, eta: Float[Array, "B 1 *spatial"], d: Array) -> Float[Array, "B 1 *spatial"]:
        """``A^T (A link(eta) - d)``, not normalised."""
        if d is None:
            raise ValueError("GradientStep: the observation d (cond) is required, got None.")
        estimate = self.link(eta)
        predicted = self.operator(estimate)
        if jnp.shape(predicted) != jnp.shape(d):
            raise ValueError(f"GradientStep: the operator maps the estimate {tuple(eta.shape)} to "
                             f"{tuple(jnp.shape(predicted))}, but d (cond) has shape {tuple(jnp.shape(d))}.")
        residual = predicted - d.astype(predicted.dtype)
        if self.adjoint is not None:
            g = self.adjoint(residual)
        else:
            (g,) = jax.linear_transpose(self.operator, estimate)(residual)
        if jnp.shape(g) != eta.shape:
            raise ValueError(f"GradientStep: the adjoint must map d's shape back to {tuple(eta.shape)}, got "
                             f"{tuple(jnp.shape(g))}.")
        return g

    def _normalised(self, eta, d):
        shape = (1, 1) + (1,) * self.spatial_dims
        return self.gradient(eta, d) * self.scale.reshape(shape) + self.bias.reshape(shape)

    def _increment(self, v, d):
        check_layout("GradientStep", v, self.in_channels, self.spatial_dims)
        return self._normalised(v[:, :1], d)

    def _fused(self, v, dv, d, sign):
        # ``eta`` is the same on both sides: one evaluation of the normalised gradient (and
        # its VJP) rebuilds the other side and pulls the cotangent back, where the generic
        # backward would apply the operator twice.
        check_layout("GradientStep", v, self.in_channels, self.spatial_dims)
        increment, pull = eqx.filter_vjp(type(self)._normalised, self, v[:, :1], d)
        dlayer, deta, dcond = pull(sign * dv[:, 1:2])
        return v.at[:, 1:2].add(-sign * increment), dv.at[:, :1].add(deta), dlayer, dcond

    def forward(self, x, cond=None):
        return x.at[:, 1:2].add(self._increment(x, cond)), jnp.zeros(x.shape[:1], x.dtype)

    def inverse_and_log_det(self, y, cond=None):
        return y.at[:, 1:2].add(-self._increment(y, cond)), jnp.zeros(y.shape[:1], y.dtype)

    def backward(self, y, dy, dlogdet, cond=None):  # logdet is 0: dlogdet has no effect
        return self._fused(y, dy, cond, 1.0)

    def inverse_backward(self, x, dx, dlogdet, cond=None):
        return self._fused(x, dx, cond, -1.0)

    def _initialized(self, v, cond):
        # ``eta`` (channel 0) is the same on both sides, so either side gives ``g``.
        check_layout("GradientStep", v, self.in_channels, self.spatial_dims)
        g = self.gradient(v[:, :1], cond)
        # The spread is floored: a first batch whose estimate already fits the data has a
        # round-off gradient, and dividing by its spread would make the step's inverse
        # amplify round-off by millions.
        std = jnp.maximum(jnp.sqrt(jnp.mean((g - jnp.mean(g)) ** 2)), 1e-3)
        scale = 1 / std
        return eqx.tree_at(lambda m: (m.scale, m.bias), self,
                           (jnp.reshape(scale, (1,)).astype(self.scale.dtype),
                            jnp.reshape(-jnp.mean(g) * scale, (1,)).astype(self.bias.dtype)))

    def initialize(self, x, cond=None):
        layer = self._initialized(x, cond)
        return layer, layer.forward(x, cond)[0]

    def initialize_inverse(self, y, cond=None):
        layer = self._initialized(y, cond)
        return layer, layer.inverse(y, cond)
