"""Variational inference: train a flow through its inverse by minimising the reverse KL.

``KL(q || p) = E_{x ~ q}[log q(x) - log p(x)]`` needs only samples of the flow and an
unnormalised ``log p``: the samples come from ``flow.sample_and_log_prob``, whose gradient
runs through the engine in reverse (activations rebuilt, not stored), so memory stays
flat in depth in this direction too.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from ._checks import check_key
from ._devices import data_parallel
from ._loop import train_loop
from ._step import make_step, with_step_key


def _check_shape(shape) -> tuple[int, ...]:
    if not isinstance(shape, tuple | list) or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"shape must be the shape of one sample, a tuple of positive ints, got {shape!r}.")
    return tuple(shape)


def reverse_kl(flow, key, log_target: Callable, shape: tuple[int, ...], num_samples: int = 64, y=None, *,
               mesh=None):
    """Monte Carlo estimate of ``KL(q || p)`` up to ``p``'s normalising constant.

    Args:
        flow: an invjax flow (conditional if ``y`` is given), or a ``Summarized`` model.
        key: PRNG key for the latent draws.
        log_target: ``log_target(x) -> (B,)`` for ``x`` of shape ``(B, *shape)``, the
            unnormalised log-density; with observations, ``log_target(x, y) -> (B,)``.
        shape: the shape of one sample ``x`` (no batch axis), e.g. ``(2,)`` or ``(1, 28, 28)``.
        num_samples: draws per estimate (ignored when ``y`` is given: one draw per observation).
        y: ``None``, or a batch of observations ``(B, ...)`` (the flow's condition).
        mesh: ``None``, or an :func:`invjax.device_mesh`: the samples are drawn split over
            it (:meth:`invjax.AbstractFlow.sample_and_log_prob`).

    Returns:
        scalar ``mean(log q(x | y) - log_target(x, y))``.
    """
    shape = _check_shape(shape)
    batch = num_samples if y is None else y.shape[0]
    x, log_q = flow.sample_and_log_prob(key, (batch, *shape), y, mesh=mesh)
    log_p = log_target(x) if y is None else log_target(x, y)
    if jnp.shape(log_p) != (batch,):
        raise ValueError(
            f"log_target must return one value per sample, shape ({batch},); got shape {tuple(jnp.shape(log_p))}."
        )
    return jnp.mean(log_q - log_p)


def fit_vi(
    flow,
    log_target: Callable,
    shape: tuple[int, ...],
    observations=None,
    *,
    key,
    steps: int = 1000,
    batch_size: int = 64,
    optimizer: optax.GradientTransformation | None = None,
    progress: bool = True,
    devices=None,
    space=1,
):
    """Train ``flow`` to approximate ``p(x) ∝ exp(log_target(x))`` by minimising the reverse KL.

    With ``observations`` (amortized VI), every step draws ``batch_size`` observations
    ``y`` and one ``x ~ q(x | y)`` each, and minimises ``mean(log q(x | y) - log_target(x, y))``:
    the flow learns the posterior for any observation.

    Args:
        flow: any invjax flow; conditional (or ``Summarized``) with ``observations``.
        log_target: ``log_target(x) -> (B,)``, or ``log_target(x, y) -> (B,)`` with
            observations; any JAX function (a likelihood with a forward operator plus a
            log-prior, say).
        shape: shape of one sample ``x``, e.g. ``(2,)`` or ``(1, 28, 28)``.
        observations: ``None``, or an array ``(N, ...)`` of observations.
        key: PRNG key.
        steps: optimisation steps.
        batch_size: samples (or observations) per step.
        optimizer: optax transformation; default Adam(1e-3) with gradient clipping at 10.
        progress: tqdm progress bar with the loss.
        devices: the devices to train on, as for :func:`invjax.fit`: each step's samples
            are drawn split over a mesh of them (``batch_size`` a multiple of
            ``len(devices) / space``), the parameters replicated. Default: every device.
        space: devices per sample, as for :func:`invjax.fit` (``n`` or ``(a, b)``): the
            samples, drawn already split, never exist whole on one device; their first
            spatial size(s) must be multiples of the split. Under ``jax.distributed``,
            ``observations`` are each process's own (its share, as in ``fit``).

    Returns:
        ``(flow, history)`` with ``history = {"train": [loss per step]}``. If the loss
        becomes non-finite, training stops with a warning naming the step and the last
        flow with a finite loss is returned.
    """
    shape = _check_shape(shape)
    check_key("fit_vi", key)
    if steps < 0 or batch_size < 1:
        raise ValueError(f"fit_vi: steps >= 0 and batch_size >= 1 needed; got steps={steps}, batch_size={batch_size}.")
    if observations is not None and (not hasattr(observations, "shape") or observations.shape[0] < 1):
        raise ValueError(f"fit_vi: observations must be a non-empty array (N, ...), got {observations!r:.80}.")
    place = data_parallel(devices, batch_size, space, "fit_vi")
    per_part = batch_size // place.parts
    init, step = make_step(
        lambda f, key, y: reverse_kl(with_step_key(f, key), key, log_target, shape, batch_size, y, mesh=place.mesh),
        optimizer,
    )
    step = place.traced(step)
    # Each process picks its share of the observations with a key of its own; the
    # latents are drawn once for the whole batch, already split.
    pick_key = key if place.parts == 1 else jr.fold_in(key, place.part)

    def args(key, pick_key):
        while True:
            key, draw, pick = jr.split(key, 3)
            pick_key, own_pick = jr.split(pick_key) if place.parts > 1 else (pick_key, pick)
            y = None
            if observations is not None:
                y = observations[np.asarray(jr.randint(own_pick, (per_part,), 0, observations.shape[0]))]
                y = place.batch((y,))[0]
            yield draw, y

    history = {"train": []}
    flow = place.replicate(flow)
    flow, _ = train_loop(step, flow, place.replicate(init(flow)), args(key, pick_key), steps=steps,
                         history=history, progress=progress, name="fit_vi", label="KL+const")
    return flow, history


__all__ = ["fit_vi", "reverse_kl"]
