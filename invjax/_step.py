"""One optimisation step: ``make_step``, the default optimizer and the non-finite stop."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import equinox as eqx
import jax
import optax


def default_optimizer() -> optax.GradientTransformation:
    """Adam(1e-3) after clipping the gradient's global norm at 10."""
    return optax.chain(optax.clip_by_global_norm(10.0), optax.adam(1e-3))


def trainable(flow):
    """The floating-point arrays of ``flow``: what the optimizer updates."""
    return eqx.filter(flow, eqx.is_inexact_array)


def make_step(loss: Callable, optimizer: optax.GradientTransformation | None = None):
    """``(init, step)`` for a hand-written training loop: one jitted optax step of ``loss``.

    ``fit`` and ``fit_vi`` are built on it. Anything the step needs per batch (a PRNG key
    for dequantisation noise, a condition) is an argument of ``loss`` and is passed to
    ``step``, so it is traced once and the whole step is compiled together.

    Example:
        ```python
        import jax.numpy as jnp, jax.random as jr, invjax as ij

        flow = ij.nets.RealNVP(in_channels=2, depth=2, hidden=8, key=jr.key(0))
        batches = jnp.split(jr.normal(jr.key(1), (256, 2)), 4)
        key = jr.key(2)

        loss = lambda f, key, x: -jnp.mean(f.log_prob(x + jr.uniform(key, x.shape) / 256))
        init, step = ij.make_step(loss)
        opt_state = init(flow)
        for i, x in enumerate(batches):
            flow, opt_state, value = step(flow, opt_state, jr.fold_in(key, i), x)
        ```

    The optimizer receives optax's extra arguments: ``value`` (the loss), ``grad`` (its
    gradient) and ``value_fn`` (the loss as a function of the trainable arrays, the step's
    other arguments fixed), so transformations that need them work unchanged:
    ``optax.contrib.reduce_on_plateau`` (in a chain, after the optimizer) and line searches
    such as ``optax.lbfgs()``. A plain transformation ignores them and steps exactly as
    ``optimizer.update(grads, opt_state, params)`` would.

    Args:
        loss: ``loss(flow, *args) -> scalar``, differentiated with respect to the
            flow's floating-point arrays.
        optimizer: an optax transformation (``GradientTransformation`` or
            ``GradientTransformationExtraArgs``); default Adam(1e-3) with gradient
            clipping at 10.

    Returns:
        ``(init, step)``: ``init(flow) -> opt_state``, and
        ``step(flow, opt_state, *args, optimizer_value=None) -> (flow, opt_state, loss value)``
        (jitted with ``equinox.filter_jit``; the value is a scalar array, on the device;
        ``optimizer_value``, when given, is what the optimizer receives as ``value``
        instead of the loss, e.g. a validation loss).
    """
    # Extra arguments reach the transformations that declare them; plain ones ignore them.
    optimizer = optax.with_extra_args_support(optimizer or default_optimizer())

    def init(flow):
        return optimizer.init(trainable(flow))

    @eqx.filter_jit
    def step(flow, opt_state, *args, optimizer_value=None):
        value, grads = eqx.filter_value_and_grad(loss)(flow, *args)
        params, rest = eqx.partition(flow, eqx.is_inexact_array)

        def value_fn(p):  # the loss at other parameters: what a line search evaluates
            return loss(eqx.combine(p, rest), *args)

        # optax's value: the loss, or one given in its place (fit's latest validation loss).
        told = value if optimizer_value is None else optimizer_value
        updates, opt_state = optimizer.update(grads, opt_state, params, value=told, grad=grads, value_fn=value_fn)
        return eqx.apply_updates(flow, updates), opt_state, value

    return init, step


def with_step_key(flow, key):
    """``flow`` with a key for its stochastic parts (a summary network with dropout), else ``flow``.

    Training calls it in every step with that step's key; evaluation never does, so a
    trained model is deterministic (dropout off).
    """
    return flow.with_key(jax.random.fold_in(key, 1)) if getattr(flow, "stochastic", False) else flow


def non_finite(name: str, value: float, step: int) -> bool:
    """Warn (naming the step) and return True if the loss is NaN or infinite."""
    if math.isfinite(value):
        return False
    warnings.warn(f"{name}: the loss became {value} at step {step}; stopping with the last finite-loss flow.",
                  RuntimeWarning, stacklevel=4)
    return True


__all__ = ["make_step"]
