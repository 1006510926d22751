"""``fit``: maximum-likelihood training of any flow with optax, in a few lines."""

from __future__ import annotations

import math
import os
import pathlib
import warnings
from collections.abc import Callable, Iterable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._health import reconstruction_error
from ._io import load, load_metadata, save


def _default_optimizer():
    return optax.chain(optax.clip_by_global_norm(10.0), optax.adam(1e-3))


def _trainable(flow):
    return eqx.filter(flow, eqx.is_inexact_array)


def _make_step(loss, optimizer):
    """One jitted optimisation step of ``loss(flow, *args)``; shared by ``fit`` and ``fit_vi``."""

    @eqx.filter_jit
    def step(flow, opt_state, *args):
        value, grads = eqx.filter_value_and_grad(loss)(flow, *args)
        updates, opt_state = optimizer.update(grads, opt_state, _trainable(flow))
        return eqx.apply_updates(flow, updates), opt_state, value

    return step


def _non_finite(name, value, step) -> bool:
    """Warn (naming the step) and return True if the loss is NaN or infinite."""
    if math.isfinite(value):
        return False
    warnings.warn(f"{name}: the loss became {value} at step {step}; stopping with the last finite-loss flow.",
                  RuntimeWarning, stacklevel=3)
    return True


def negative_log_likelihood(flow, x, cond=None):
    """The default loss: ``-mean(flow.log_prob(x, cond))``."""
    return -jnp.mean(flow.log_prob(x, cond))


def fit(
    flow,
    x,
    cond=None,
    *,
    key,
    steps: int = 1000,
    batch_size: int = 64,
    optimizer: optax.GradientTransformation | None = None,
    loss: Callable = negative_log_likelihood,
    validation: float | tuple = 0.0,
    eval_every: int = 100,
    patience: int | None = None,
    initialize: bool = True,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
    devices=None,
    check_inputs: bool = True,
    check_reconstruction_every: int | None = None,
    reconstruction_tol: float = 1e-3,
):
    """Train ``flow`` by minimising ``loss(flow, x_batch, cond_batch)`` with optax.

    Args:
        flow: any invjax flow (conditional or not) or ``Summarized`` model.
        x: training inputs ``(N, ...)``, or an iterable yielding batches ``x`` or
            ``(x, cond)`` (then ``cond`` must be ``None``, and ``validation`` a tuple).
        cond: conditions ``(N, ...)`` for a conditional flow (observations ``y`` for
            ``Summarized``), or ``None``.
        key: PRNG key for shuffling and the validation split.
        steps: optimisation steps.
        batch_size: samples per step (array data).
        optimizer: an optax transformation; default Adam(1e-3) with gradient clipping at 10.
        loss: ``loss(flow, x, cond) -> scalar``; default the negative log-likelihood.
        validation: a fraction of the arrays held out, or ``(x_val, cond_val)``.
        eval_every: steps between validation losses (and early-stopping checks).
        patience: stop after this many evaluations without improvement, and return the
            best flow; ``None`` never stops early.
        initialize: ActNorm data initialisation on the first batch.
        progress: show a tqdm progress bar with the loss.
        checkpoint: a file to save ``(flow, optimizer state, step, history)`` to every
            ``checkpoint_every`` steps (atomically). If it exists, training resumes from
            it (its parameters and optimizer state replace the freshly initialised ones).
        checkpoint_every: steps between checkpoints.
        devices: the devices to train on, data-parallel: each batch is split along its
            first axis over a ``jax.sharding.Mesh`` of them and the parameters are
            replicated (``batch_size`` must be a multiple of their number). Default: every
            device ``jax.devices()`` lists.
        check_inputs: check every batch before its step (on the host): finite values,
            the first batch's shapes and dtypes, not empty, ``cond`` with the same batch
            size. A bad batch raises ``ValueError`` naming the step.
        check_reconstruction_every: every this many steps, compute
            :func:`invjax.reconstruction_error` on the batch and warn (``RuntimeWarning``)
            if it exceeds ``reconstruction_tol``; the values go to
            ``history["reconstruction"]``. ``None`` never checks.
        reconstruction_tol: the tolerance of that check.

    Returns:
        ``(flow, history)``, ``history = {"train": [loss per step], "val": [(step, loss)]}``
        (plus ``"reconstruction": [(step, error)]`` when checked). If a loss becomes
        non-finite, training stops with a warning naming the step and the last flow with
        a finite loss is returned.
    """
    if steps < 0 or batch_size < 1 or eval_every < 1 or checkpoint_every < 1:
        raise ValueError(
            f"fit: steps >= 0, batch_size, eval_every and checkpoint_every >= 1 needed; got steps={steps}, "
            f"batch_size={batch_size}, eval_every={eval_every}, checkpoint_every={checkpoint_every}."
        )
    if check_reconstruction_every is not None and check_reconstruction_every < 1:
        raise ValueError(f"fit: check_reconstruction_every must be >= 1 or None, got {check_reconstruction_every}.")
    optimizer = optimizer or _default_optimizer()
    place_batch, replicate = _data_parallel(devices, batch_size)
    split_key, shuffle_key = jr.split(key)
    batches, val = _data(x, cond, batch_size, validation, split_key, shuffle_key)

    history = {"train": [], "val": []}
    if check_reconstruction_every is not None:
        history["reconstruction"] = []
    start = 0
    first = next(batches)
    reference = _describe(first)
    if check_inputs:
        _check_batch(0, first, reference)
    if initialize:
        flow = flow.initialize(*first)
    flow = replicate(flow)
    opt_state = replicate(optimizer.init(_trainable(flow)))
    if checkpoint is not None and pathlib.Path(checkpoint).exists():
        # The structure is this run's own: no unpickling.
        state = load(checkpoint, like={"flow": flow, "opt_state": opt_state})
        flow, opt_state = replicate(state["flow"]), replicate(state["opt_state"])
        meta = load_metadata(checkpoint)
        start = meta["step"]
        history.update(train=meta["train"], val=[tuple(v) for v in meta["val"]])
        for _ in range(start):  # the data stream continues where it stopped
            first = next(batches)

    step = _make_step(loss, optimizer)
    evaluate = eqx.filter_jit(loss)
    reconstruction = eqx.filter_jit(reconstruction_error)
    best = (math.inf, flow)
    waited = 0
    bar = _progress(range(start, steps), progress, total=steps, initial=start)
    batch = first
    for i in bar:
        if i > start:
            batch = next(batches)
            if check_inputs:
                _check_batch(i, batch, reference)
        batch = place_batch(batch)
        new_flow, new_state, value = step(flow, opt_state, *batch)
        value = float(value)
        if _non_finite("fit", value, i):
            break
        flow, opt_state = new_flow, new_state
        history["train"].append(value)
        done = i + 1
        if check_reconstruction_every is not None and done % check_reconstruction_every == 0:
            error = float(reconstruction(flow, *batch))
            history["reconstruction"].append((done, error))
            if not error <= reconstruction_tol:
                warnings.warn(f"fit: reconstruction error {error:.3g} at step {done} exceeds {reconstruction_tol:g}; "
                              "gradients rebuilt from inverses are inaccurate (see ij.reconstruction_error).",
                              RuntimeWarning, stacklevel=2)
        if val is not None and (done % eval_every == 0 or done == steps):
            val_loss = float(evaluate(flow, *val))
            history["val"].append((done, val_loss))
            if val_loss < best[0]:
                best, waited = (val_loss, flow), 0
            else:
                waited += 1
        if progress and (i % 10 == 0 or done == steps):
            shown = f"loss {np.mean(history['train'][-50:]):.4g}"
            if history["val"]:
                shown += f", val {history['val'][-1][1]:.4g}"
            bar.set_postfix_str(shown, refresh=False)
        if checkpoint is not None and (done % checkpoint_every == 0 or done == steps):
            save(checkpoint, {"flow": flow, "opt_state": opt_state},
                 metadata={"step": done, "train": history["train"], "val": history["val"]})
        if patience is not None and waited >= patience:
            break
    if patience is not None and val is not None and math.isfinite(best[0]):
        flow = best[1]
    return flow, history


def _data_parallel(devices, batch_size):
    """``(place_batch, replicate)`` for data parallelism over ``devices`` (identity on one)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("fit: devices is empty.")
    if len(devices) == 1:
        return (lambda batch: batch), (lambda tree: tree)
    if batch_size % len(devices):
        raise ValueError(f"fit: batch_size ({batch_size}) must be a multiple of the number of devices "
                         f"({len(devices)}) for data-parallel training; or pass devices=[...].")
    mesh = Mesh(np.array(devices), ("batch",))
    split, same = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())

    def place_batch(batch):
        return tuple(None if a is None else jax.device_put(a, split) for a in batch)

    def replicate(tree):
        arrays, rest = eqx.partition(tree, eqx.is_array)
        return eqx.combine(jax.device_put(arrays, same), rest)

    return place_batch, replicate


def _describe(batch):
    return tuple(None if a is None else (tuple(a.shape[1:]), np.dtype(a.dtype)) for a in batch)


def _check_batch(step, batch, reference):
    """Host-side checks of one ``(x, cond)`` batch against the first batch's layout."""
    names = ("x", "cond")
    sizes = {a.shape[0] for a in batch if a is not None}
    if 0 in sizes:
        raise ValueError(f"fit: the batch at step {step} is empty.")
    if len(sizes) > 1:
        raise ValueError(f"fit: at step {step}, x and cond have different batch sizes {sorted(sizes)}.")
    for name, a, ref in zip(names, batch, reference, strict=True):
        if (a is None) != (ref is None):
            raise ValueError(f"fit: at step {step}, {name} is {'missing' if a is None else 'unexpected'}.")
        if a is None:
            continue
        if (tuple(a.shape[1:]), np.dtype(a.dtype)) != ref:
            raise ValueError(f"fit: at step {step}, {name} has shape {tuple(a.shape)} and dtype {a.dtype}; "
                             f"the first batch had (B, {', '.join(map(str, ref[0]))}) and {ref[1]}.")
        if jnp.issubdtype(a.dtype, jnp.inexact) and not np.isfinite(np.asarray(a)).all():
            raise ValueError(f"fit: {name} at step {step} contains NaN or Inf; clean the data "
                             "(nothing was trained on this batch).")


def _data(x, cond, batch_size, validation, split_key, shuffle_key):
    """An endless batch iterator and the validation pair (or ``None``)."""
    if not hasattr(x, "shape"):  # an iterable of batches
        if cond is not None:
            raise ValueError("fit: with an iterable of batches, pass cond inside the batches, not as cond=.")
        if isinstance(validation, float) and validation > 0:
            raise ValueError("fit: with an iterable of batches, validation must be a tuple (x_val, cond_val).")
        return _from_iterable(x), (tuple(validation) if isinstance(validation, tuple) else None)
    n = x.shape[0]
    if cond is not None and (not hasattr(cond, "shape") or cond.shape[0] != n):
        raise ValueError(f"fit: cond must be an array with the batch size of x ({n}), got "
                         f"{getattr(cond, 'shape', type(cond).__name__)}.")
    if isinstance(validation, tuple):
        val = validation
    elif 0 < validation < 1:
        order = np.asarray(jr.permutation(split_key, n))
        n_val = max(1, int(round(validation * n)))
        take = lambda a, idx: None if a is None else a[idx]
        val = (x[order[:n_val]], take(cond, order[:n_val]))
        x, cond, n = x[order[n_val:]], take(cond, order[n_val:]), n - n_val
    elif validation == 0:
        val = None
    else:
        raise ValueError(f"fit: validation must be a fraction in [0, 1) or (x_val, cond_val), got {validation!r}.")
    if n < 1:
        raise ValueError("fit: no training samples (x is empty, or validation took them all).")
    return _shuffled(x, cond, min(batch_size, n), shuffle_key), val


def _shuffled(x, cond, batch_size, key):
    """Endless epochs of shuffled batches (the last partial batch of an epoch is dropped,
    so every step has the same shape and compiles once)."""
    n = x.shape[0]
    while True:
        key, sub = jr.split(key)
        order = np.asarray(jr.permutation(sub, n))
        for s in range(0, n - batch_size + 1, batch_size):
            idx = order[s : s + batch_size]
            yield x[idx], (None if cond is None else cond[idx])


def _from_iterable(batches: Iterable):
    for batch in batches:
        yield tuple(batch) if isinstance(batch, tuple | list) else (batch, None)
    raise ValueError("fit: the batch iterable ran out before the last step; pass more batches or fewer steps.")


def _progress(iterable, enabled, total, initial, desc="fit"):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, initial=initial, desc=desc, unit="step")


__all__ = ["fit", "negative_log_likelihood"]
