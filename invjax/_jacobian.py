"""Jacobian products of a flow, as InvertibleNetworks.jl's ``Jacobian`` (``jacobian.jl``).

The map is ``(parameters, x) -> (z, logdet)`` (or ``(parameters, z) -> (x, logdet)`` with
``inverse=True``). :func:`jvp` pushes a tangent of the input and/or of the parameters
forward (``J v``), :func:`vjp` pulls a cotangent back (``J^T w``): the pair a Gauss-Newton
or Jacobian-free Newton-Krylov code needs.

Neither stores the network's activations. Forward mode never needs them (tangents travel
with the values, layer by layer; a ``Stack``'s ``lax.scan`` stays a scan), so :func:`jvp`
runs the flow by plain autodiff (``ij.Autodiff()``: the invertible backward is a
``custom_vjp``, which JAX refuses to push tangents through). :func:`vjp` runs the flow's
own backward (``ij.Invertible()`` by default), which rebuilds activations from outputs.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ._backprop import Autodiff
from ._flow import AbstractFlow, with_backprop

__all__ = ["jvp", "vjp"]


def _check(name: str, flow, x):
    if not isinstance(flow, AbstractFlow):
        raise ValueError(f"{name} takes an invjax flow (or Summarized model), got {type(flow).__name__}.")
    if not hasattr(x, "shape"):
        raise ValueError(f"{name}: x must be an array (a batch), got {type(x).__name__}.")


def _like(name: str, what: str, tangent, reference):
    """``tangent`` checked against ``reference``'s structure, shapes and dtypes (zeros if None)."""
    if tangent is None:
        return jax.tree.map(jnp.zeros_like, reference)
    if jax.tree.structure(tangent) != jax.tree.structure(reference):
        raise ValueError(f"{name}: {what} must have the structure of {_expected(what)}; got a different pytree.")
    for t, r in zip(jax.tree.leaves(tangent), jax.tree.leaves(reference), strict=True):
        if jnp.shape(t) != r.shape or jnp.result_type(t) != r.dtype:
            raise ValueError(f"{name}: {what} must match {_expected(what)}: expected {r.dtype}{list(r.shape)}, got "
                             f"{jnp.result_type(t)}{list(jnp.shape(t))}.")
    return tangent


def _expected(what: str) -> str:
    return "eqx.filter(flow, eqx.is_inexact_array)" if what.startswith("flow") else "x"


def _map(inverse: bool, cond):
    def apply(params, static, v):
        model = eqx.combine(params, static)
        return model.inverse_and_log_det(v, cond) if inverse else model.forward(v, cond)

    return apply


def jvp(flow: AbstractFlow, x, cond=None, *, x_tangent=None, flow_tangent=None, inverse: bool = False):
    """Forward-mode Jacobian-vector product of ``(parameters, x) -> (z, logdet)``.

    Args:
        flow: an invjax flow (any ``backprop``; forward mode runs it by plain autodiff,
            which for a forward pass stores nothing).
        x: ``(B, ...)``, the input (``z`` when ``inverse=True``).
        cond: the condition of a conditional flow (held fixed).
        x_tangent: ``(B, ...)`` like ``x``; ``None``: zero.
        flow_tangent: a tangent of the parameters, a pytree like
            ``eqx.filter(flow, eqx.is_inexact_array)``; ``None``: zero.
        inverse: differentiate ``flow.inverse_and_log_det`` instead of ``flow.forward``.

    Returns:
        ``((z, logdet), (z_tangent, logdet_tangent))``: ``z_tangent`` ``(B, ...)`` and
        ``logdet_tangent`` ``(B,)`` are ``J (flow_tangent, x_tangent)``.

    Example:
        >>> import jax, jax.numpy as jnp, invjax as ij
        >>> flow = ij.nets.RealNVP(2, depth=2, hidden=8, key=jax.random.key(0))
        >>> x = jnp.ones((3, 2))
        >>> (z, logdet), (dz, dlogdet) = ij.jvp(flow, x, x_tangent=jnp.ones_like(x))
        >>> dz.shape, dlogdet.shape
        ((3, 2), (3,))
    """
    _check("jvp", flow, x)
    params, static = eqx.partition(with_backprop(flow, Autodiff()), eqx.is_inexact_array)
    x_tangent = _like("jvp", "x_tangent", x_tangent, jnp.asarray(x))
    flow_tangent = _like("jvp", "flow_tangent", flow_tangent, params)
    apply = _map(inverse, cond)
    return jax.jvp(lambda p, v: apply(p, static, v), (params, x), (flow_tangent, x_tangent))


def vjp(flow: AbstractFlow, x, cond=None, *, z_cotangent, logdet_cotangent=None, inverse: bool = False):
    """Vector-Jacobian product (the adjoint of :func:`jvp`) of ``(parameters, x) -> (z, logdet)``.

    Runs the flow's own backward: with ``ij.Invertible()`` (the default) activations are
    rebuilt from outputs, so memory does not grow with depth.

    Args:
        flow: an invjax flow.
        x: ``(B, ...)``, the input (``z`` when ``inverse=True``).
        cond: the condition of a conditional flow (held fixed).
        z_cotangent: ``(B, ...)`` like ``x``, the cotangent of the output.
        logdet_cotangent: ``(B,)``, the cotangent of the log-determinant; ``None``: zero.
        inverse: differentiate ``flow.inverse_and_log_det`` instead of ``flow.forward``.

    Returns:
        ``((z, logdet), (flow_cotangent, x_cotangent))``: ``flow_cotangent`` is a pytree
        like ``eqx.filter(flow, eqx.is_inexact_array)``, ``x_cotangent`` is like ``x``;
        together ``J^T (z_cotangent, logdet_cotangent)``.
    """
    _check("vjp", flow, x)
    params, static = eqx.partition(flow, eqx.is_inexact_array)
    apply = _map(inverse, cond)
    (z, logdet), pullback = jax.vjp(lambda p, v: apply(p, static, v), params, x)
    z_cotangent = _like("vjp", "z_cotangent", z_cotangent, z)
    logdet_cotangent = _like("vjp", "logdet_cotangent", logdet_cotangent, logdet)
    return (z, logdet), pullback((z_cotangent, logdet_cotangent))
