"""The invertible backward: one ``jax.custom_vjp`` around a whole network.

Why around the whole network and not around each layer: autodiff of ``lax.scan``
saves the residuals of every step, so a per-layer custom VJP inside a scan stores the
activations again (see ``docs/engine.md``). Here the forward pass keeps only what the
backward needs to start (parameters, outputs, condition); the backward asks the network
(an :class:`~invjax.layers.AbstractLayer`, usually a composite) to walk its layers in
reverse, reconstructing each layer's input from its output.

The inverse direction (sampling, reverse-KL training) is the same wrapper around
``Invert(body)``, whose backward is the body's inverse backward: each layer's output is
rebuilt from its input.
"""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np


def _float0_zeros(tree):
    return jax.tree.map(lambda a: np.zeros(np.shape(a), jax.dtypes.float0), tree)


def run_invertible(body, inp, cond):
    """``body.forward(inp, cond)``, differentiated by reconstruction instead of storage."""
    # Floating leaves are differentiated; other arrays (permutation indices, signs) ride
    # along as arguments (closing over them would capture tracers); the rest is static.
    # Not ``eqx.filter_custom_vjp``: it hands the primal arguments to the backward, so they
    # would be kept as residuals; in the inverse direction that is the latent, one
    # activation-sized buffer the backward does not need (see docs/engine.md).
    diff, rest = eqx.partition(body, eqx.is_inexact_array)
    other, static = eqx.partition(rest, eqx.is_array)

    def assemble(diff, other):
        return eqx.combine(diff, other, static)

    @jax.custom_vjp
    def run(diff, other, inp, cond):
        return assemble(diff, other).forward(inp, cond)

    def run_fwd(diff, other, inp, cond):
        out, logdet = run(diff, other, inp, cond)
        # Only the outputs are kept: every activation is rebuilt in the backward.
        return (out, logdet), (diff, other, out, cond)

    def run_bwd(residuals, cotangents):
        diff, other, out, cond = residuals
        dout, dlogdet = cotangents
        _, dinp, dlayer, dcond = assemble(diff, other).backward(out, dout, dlogdet, cond)
        ddiff = eqx.filter(dlayer, eqx.is_inexact_array)
        if cond is not None and dcond is None:
            dcond = jax.tree.map(jax.numpy.zeros_like, cond)
        return ddiff, _float0_zeros(other), dinp, dcond

    run.defvjp(run_fwd, run_bwd)
    return run(diff, other, inp, cond)
