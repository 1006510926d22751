"""The invertible backward: one custom VJP around a whole network.

Why around the whole network and not around each layer: autodiff of ``lax.scan``
saves the residuals of every step, so a per-layer custom VJP inside a scan stores the
activations again (see ``docs/engine.md``). Here the forward pass keeps only what the
backward needs to start (the outputs; Equinox keeps the arguments, which exist anyway);
the backward asks the network (an :class:`~invjax.layers.AbstractLayer`, usually a
composite) to walk its layers in reverse, reconstructing each layer's input from its
output.

The inverse direction (sampling, reverse-KL training) is the same wrapper around
``Invert(body)``, whose backward is the body's inverse backward: each layer's output is
rebuilt from its input.
"""

import equinox as eqx
import jax.numpy as jnp


@eqx.filter_custom_vjp
def _run(operands):
    body, inp, cond = operands
    return body.forward(inp, cond)


@_run.def_fwd
def _run_fwd(perturbed, operands):
    body, inp, cond = operands
    out = body.forward(inp, cond)
    # Only the output is kept: every activation is rebuilt in the backward.
    return out, out


@_run.def_bwd
def _run_bwd(out, cotangents, perturbed, operands):
    body, _, cond = operands
    (y, logdet), (dy, dlogdet) = out, cotangents
    # Equinox passes None for an output the loss does not use (a symbolic zero).
    dy = jnp.zeros_like(y) if dy is None else dy
    dlogdet = jnp.zeros_like(logdet) if dlogdet is None else dlogdet
    _, dinp, dbody, dcond = body.backward(y, dy, dlogdet, cond)
    return eqx.filter(dbody, eqx.is_inexact_array), dinp, dcond


def run_invertible(body, inp, cond):
    """``body.forward(inp, cond)``, differentiated by reconstruction instead of storage.

    ``eqx.filter_custom_vjp`` sorts the leaves: floating arrays of ``body``, ``inp`` and
    ``cond`` are differentiated, other arrays (permutation indices, signs) and non-arrays
    ride along.
    """
    return _run((body, inp, cond))
