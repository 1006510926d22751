"""The invertible backward: one ``jax.custom_vjp`` around a whole network.

Why around the whole network and not around each layer: autodiff of ``lax.scan``
saves the residuals of every step, so a per-layer custom VJP inside a scan stores the
activations again (see ``docs/engine.md``). Here the forward pass keeps only what the
backward needs to start (parameters, outputs, condition); the backward asks the network
(an :class:`~invjax._layer.AbstractLayer`, usually a composite) to walk its layers in
reverse, reconstructing each layer's input from its output.

The same wrapper serves the inverse direction (sampling, reverse-KL training): the
inverse is differentiated by rebuilding each layer's output from its input.
"""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np

BACKPROP_MODES = ("invertible", "autodiff")


def check_mode(backprop: str) -> str:
    if backprop not in BACKPROP_MODES:
        raise ValueError(f"backprop must be one of {BACKPROP_MODES}, got {backprop!r}.")
    return backprop


def _float0_zeros(tree):
    return jax.tree.map(lambda a: np.zeros(np.shape(a), jax.dtypes.float0), tree)


def _invertible(body, direction: str, inp, cond):
    """Run ``body`` in ``direction`` ("forward" or "inverse") under the invertible VJP."""
    # Floating leaves are differentiated; other arrays (permutation indices, signs) ride
    # along as arguments (closing over them would capture tracers); the rest is static.
    diff, rest = eqx.partition(body, eqx.is_inexact_array)
    other, static = eqx.partition(rest, eqx.is_array)

    def assemble(diff, other):
        return eqx.combine(diff, other, static)

    if direction == "forward":
        run_method = lambda layer, v, c: layer.forward(v, c)
        back_method = lambda layer, *a: layer.backward(*a)
    else:
        run_method = lambda layer, v, c: layer.inverse_and_log_det(v, c)
        back_method = lambda layer, *a: layer.inverse_backward(*a)

    @jax.custom_vjp
    def run(diff, other, inp, cond):
        return run_method(assemble(diff, other), inp, cond)

    def run_fwd(diff, other, inp, cond):
        out, logdet = run(diff, other, inp, cond)
        # Only the outputs are kept: every activation is rebuilt in the backward.
        return (out, logdet), (diff, other, out, cond)

    def run_bwd(residuals, cotangents):
        diff, other, out, cond = residuals
        dout, dlogdet = cotangents
        _, dinp, dlayer, dcond = back_method(assemble(diff, other), out, dout, dlogdet, cond)
        ddiff = eqx.filter(dlayer, eqx.is_inexact_array)
        if cond is not None and dcond is None:
            dcond = jax.tree.map(jax.numpy.zeros_like, cond)
        return ddiff, _float0_zeros(other), dinp, dcond

    run.defvjp(run_fwd, run_bwd)
    return run(diff, other, inp, cond)


def forward(body, x, cond, backprop: str):
    """``body.forward(x, cond)``, differentiated by ``backprop``."""
    if backprop == "autodiff":
        return body.forward(x, cond)
    return _invertible(body, "forward", x, cond)


def inverse_and_log_det(body, z, cond, backprop: str):
    """``body.inverse_and_log_det(z, cond)``, differentiated by ``backprop``."""
    if backprop == "autodiff":
        return body.inverse_and_log_det(z, cond)
    return _invertible(body, "inverse", z, cond)
