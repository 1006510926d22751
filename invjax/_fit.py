"""``fit``: maximum-likelihood training of any flow with optax, in a few lines.

``fit`` composes the training parts: a batch source (``_batches``), the jitted step
(``_step``), checkpoints (``_checkpoint``) and the loop with its monitors (``_loop``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from ._batches import (
    array_batches,
    check_batch,
    describe,
    iterable_batches,
    simulated,
    simulated_batches,
    split_validation,
)
from ._checkpoint import load_checkpoint
from ._checks import check_key
from ._devices import data_parallel
from ._loop import EarlyStopping, checkpoint_monitor, reconstruction_monitor, train_loop
from ._step import make_step, with_step_key


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
    space: int = 1,
    check_inputs: bool = True,
    check_reconstruction_every: int | None = None,
    reconstruction_tol: float = 1e-3,
    transform: Callable | None = None,
    optimizer_value: str = "train",
):
    """Train ``flow`` by minimising ``loss(flow, x_batch, cond_batch)`` with optax.

    Args:
        flow: any invjax flow (conditional or not) or ``Summarized`` model.
        x: training inputs ``(N, ...)``; or an iterable yielding batches ``x`` or
            ``(x, cond)`` (then ``cond`` must be ``None``, and ``validation`` a tuple); or
            a simulator ``simulate(key, n) -> (x, cond)`` (or ``x``) that draws ``n``
            fresh pairs for every step (online training: no fixed set to overfit). Step
            ``i`` calls it with ``jax.random.fold_in(k, i)`` for a key ``k`` derived from
            ``key``, so a resumed run draws the same pairs as an uninterrupted one. It may
            be a plain Python function or a jitted JAX one (``jax.jit(simulate,
            static_argnums=1)`` runs it compiled). ``cond`` must then be ``None``.
        cond: conditions ``(N, ...)`` for a conditional flow (observations ``y`` for
            ``Summarized``), or ``None``.
        key: PRNG key for shuffling, the validation split and the ``transform``'s keys.
        steps: optimisation steps.
        batch_size: samples per step (array data).
        optimizer: an optax transformation; default Adam(1e-3) with gradient clipping at 10.
        loss: ``loss(flow, x, cond) -> scalar``; default the negative log-likelihood.
        validation: a fraction of the arrays held out, or ``(x_val, cond_val)``; with a
            simulator, a number of pairs drawn once (an int) or ``(x_val, cond_val)``.
        eval_every: steps between validation losses (and early-stopping checks).
        patience: stop after this many evaluations without improvement, and return the
            best flow; ``None`` never stops early.
        initialize: ActNorm data initialisation on the first batch (after ``transform``).
        progress: show a tqdm progress bar with the loss.
        checkpoint: a file to save ``(flow, optimizer state, step, history)`` to every
            ``checkpoint_every`` steps (atomically). If it exists, training resumes from
            it (its parameters and optimizer state replace the freshly initialised ones).
        checkpoint_every: steps between checkpoints.
        devices: the devices to train on, data-parallel: each batch is split along its
            first axis over a ``jax.sharding.Mesh`` of them and the parameters are
            replicated (``batch_size`` must be a multiple of their number). Default: every
            device ``jax.devices()`` lists (under ``jax.distributed``, every process's:
            then it must stay ``None``).
        space: devices per sample, for inputs too large for one device (domain
            parallelism): ``n`` splits each sample along its first spatial axis over
            ``n`` devices, ``(a, b)`` along its first two spatial axes over an ``a x b``
            grid (tiles of an image, pencils of a volume); the batch is split over the
            other ``len(devices) // (a * b)`` (a :func:`invjax.device_mesh`). Each split
            spatial size must be a multiple of its number of devices (of ``n * 2**levels``
            for a multiscale network, to stay split at every level). Default 1: data
            parallelism only.

    Several processes (``jax.distributed``, one per host): every process runs the same
    ``fit`` call, with its own data. ``batch_size`` is the global batch; each process
    feeds its share, ``batch_size / parts`` samples a step, where ``(part, parts) =
    ij.process_part(ij.device_mesh(space=space))``: ``x`` (and ``cond``) are this
    process's own samples (e.g. ``x[part::parts]`` of a data set every host can read, or
    files of its own), an iterable yields this process's share of each batch, and a
    simulator is called as ``simulate(key, batch_size // parts)`` with a key of its own
    per share. Processes whose devices share samples (a ``space`` that spans processes)
    have the same ``part`` and must pass the same data. A validation set is each
    process's share too. ``key`` and the flow are the same everywhere. Checkpoints are
    written by process 0 and read by every process: put them on a file system every host
    sees. Layouts that differ between processes raise ``ValueError``.
        check_inputs: check every batch before its step (on the host): finite values,
            the first batch's shapes and dtypes, not empty, ``cond`` with the same batch
            size. A bad batch raises ``ValueError`` naming the step.
        check_reconstruction_every: every this many steps, compute
            :func:`invjax.reconstruction_error` on the batch and warn (``RuntimeWarning``)
            if it exceeds ``reconstruction_tol``; the values go to
            ``history["reconstruction"]``. ``None`` never checks.
        reconstruction_tol: the tolerance of that check.
        transform: ``None``, or ``transform(key, x, cond) -> (x, cond)`` applied to every
            batch inside the jitted step (traced once), e.g. uniform dequantisation of
            integer images ``lambda k, x, c: ((x + jax.random.uniform(k, x.shape)) / 17 - 0.5, c)``.
            Step ``i`` gets the key ``jax.random.fold_in(jax.random.fold_in(key, 1), i)``:
            fresh noise every step, the same again when a run resumes from a checkpoint.
            ``initialize`` sees the transformed first batch (step 0's key); the
            validation loss and the reconstruction check apply it too, validation with
            one fixed key (``jax.random.fold_in(key, 2)``), so its values are comparable
            across evaluations. The loss is computed on the transformed batch. It may
            create the condition (``cond`` is ``None`` going in), e.g. noisy
            observations ``y`` of ``x`` for a conditional flow.
        optimizer_value: the loss optax's transformations receive as ``value``
            (``optax.contrib.reduce_on_plateau``, line searches): ``"train"``, the step's
            batch loss, or ``"validation"``, the latest validation loss (evaluated once
            before the first step, then every ``eval_every`` steps; needs ``validation``).

    Returns:
        ``(flow, history)``, ``history = {"train": [loss per step], "val": [(step, loss)]}``
        (plus ``"reconstruction": [(step, error)]`` when checked). If a loss becomes
        non-finite, training stops with a warning naming the step and the last flow with
        a finite loss is returned.
    """
    _check_arguments(steps, batch_size, eval_every, checkpoint_every, key, patience,
                     check_reconstruction_every, transform, optimizer_value, validation)
    place = data_parallel(devices, batch_size, space)
    source, val = _process_source(x, cond, validation, batch_size, key, place)
    # The transform's keys: one per step, folded from a key of their own, so a resumed run
    # draws the same noise as an uninterrupted one; validation uses one fixed key.
    noise_key, val_key = jr.fold_in(key, 1), jr.fold_in(key, 2)
    prepare = _prepare(transform)
    first, stream, reference, val = _first_batch(source, val, place, check_inputs)
    flow = _placed_flow(flow, first, place, prepare, jr.fold_in(noise_key, 0), initialize)
    init, step = _placed_step(loss, prepare, optimizer, place)
    flow, opt_state, start, history, stream = _resume(
        checkpoint, flow, place.replicate(init(flow)), steps, place.replicate, source, stream,
        reconstruction=check_reconstruction_every is not None,
    )
    monitors, stopping = _monitors(
        loss, prepare, val, val_key, place, steps=steps, eval_every=eval_every, patience=patience,
        reconstruction_every=check_reconstruction_every, reconstruction_tol=reconstruction_tol,
        checkpoint=checkpoint, checkpoint_every=checkpoint_every,
    )
    if optimizer_value == "validation":
        step = _on_validation(step, stopping, flow, history)
    args = _step_args(stream, start, reference, check_inputs, noise_key, place)
    flow, _ = train_loop(step, flow, opt_state, args, steps=steps, start=start, history=history,
                         monitors=monitors, progress=progress, name="fit")
    return (flow if stopping is None else stopping.best(flow)), history


def _check_arguments(steps, batch_size, eval_every, checkpoint_every, key, patience,
                     check_reconstruction_every, transform, optimizer_value, validation) -> None:
    """``fit``'s numbers, key and functions, checked before any data is touched."""
    if steps < 0 or batch_size < 1 or eval_every < 1 or checkpoint_every < 1:
        raise ValueError(
            f"fit: steps >= 0, batch_size, eval_every and checkpoint_every >= 1 needed; got steps={steps}, "
            f"batch_size={batch_size}, eval_every={eval_every}, checkpoint_every={checkpoint_every}."
        )
    check_key("fit", key)
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 0):
        raise ValueError(f"fit: patience must be an integer >= 0 (evaluations without improvement) or None, "
                         f"got {patience!r}.")
    if check_reconstruction_every is not None and check_reconstruction_every < 1:
        raise ValueError(f"fit: check_reconstruction_every must be >= 1 or None, got {check_reconstruction_every}.")
    if transform is not None and not callable(transform):
        raise ValueError(f"fit: transform must be a function (key, x, cond) -> (x, cond), got {transform!r:.80}.")
    if optimizer_value not in ("train", "validation"):
        raise ValueError(f"fit: optimizer_value must be 'train' or 'validation', got {optimizer_value!r}.")
    if optimizer_value == "validation" and (validation is None or (not isinstance(validation, tuple) and not validation)):
        raise ValueError("fit: optimizer_value='validation' needs a validation set (validation=).")


def _process_source(x, cond, validation, batch_size, key, place):
    """This process's batch source (its share of each batch) and its validation pair."""
    split_key, shuffle_key = jr.split(key)
    # Under jax.distributed every process draws its own share of each batch: its own
    # shuffling and simulator keys (one process keeps the keys it always had).
    own = (lambda k: k) if place.parts == 1 else (lambda k: jr.fold_in(k, place.part))
    return _source(x, cond, batch_size // place.parts, validation, own(split_key), own(shuffle_key))


def _first_batch(source, val, place, check_inputs):
    """``(first, stream, reference, val)``: the first batch, the stream from step 0 (the first
    batch included), the layout every batch must keep, and the validation set checked
    against it (and, over several processes, assembled like a batch)."""
    stream = source(0)
    first = next(stream)  # drawn before training: initialisation and the checks need it
    reference = describe(first)
    if check_inputs:
        check_batch(0, first, reference)
        if val is not None:
            check_batch(0, _pair(val), reference, where="in the validation set")
    if place.parts > 1:
        _same_on_every_process(reference, val)
        val = None if val is None else _placed_validation(place, val)
    return first, itertools.chain([first], stream), reference, val


def _placed_flow(flow, first, place, prepare, key, initialize: bool):
    """``flow`` replicated over the devices, data-initialised on the first batch if asked."""
    if initialize:
        # On the devices, split like every batch: with space > 1 the first batch may not
        # fit one device (eager operations on split arrays run split too).
        flow = place.replicate(flow).initialize(*prepare(key, *place.batch(first)))
    return place.replicate(flow)


def _placed_step(loss, prepare, optimizer, place):
    """``make_step``'s ``(init, step)`` for ``loss`` on prepared batches, the step traced under
    the placement's mesh."""
    # Every step gets a key (the transform's noise; a stochastic summary network's dropout);
    # evaluation runs the model without one (inference mode).
    init, step = make_step(
        lambda f, step_key, *batch: loss(with_step_key(f, step_key), *prepare(step_key, *batch)), optimizer
    )
    return init, place.traced(step)


def _resume(checkpoint, flow, opt_state, steps, replicate, source, stream, *, reconstruction: bool):
    """``(flow, opt_state, start, history, stream)``: from ``checkpoint`` where it exists (its
    parameters and optimizer state replace the fresh ones), else the run from step 0."""
    history = {"train": [], "val": []}
    start = 0
    resumed = load_checkpoint(checkpoint, flow, opt_state, steps)
    if resumed is not None:
        flow, opt_state, start, saved = resumed
        flow, opt_state = replicate(flow), replicate(opt_state)
        history.update(saved)
        stream = source(start) if start > 0 else stream  # the data stream continues where it stopped
    if reconstruction:
        history["reconstruction"] = []
    return flow, opt_state, start, history, stream


def _monitors(loss, prepare, val, val_key, place, *, steps, eval_every, patience, reconstruction_every,
              reconstruction_tol, checkpoint, checkpoint_every):
    """``(monitors, stopping)`` for ``train_loop``: the reconstruction check, the validation loss
    with early stopping (``stopping``; ``None`` without a validation set) and the checkpoint,
    in that order, so a checkpoint holds its step's validation loss."""
    monitors = []
    if reconstruction_every is not None:
        monitors.append(reconstruction_monitor(reconstruction_every, reconstruction_tol, prepare))
    stopping = None
    if val is not None:
        evaluate = eqx.filter_jit(lambda f, *batch: loss(f, *prepare(val_key, *batch)))
        stopping = EarlyStopping(lambda f: evaluate(f, *val), eval_every, steps, patience)
        monitors.append(stopping)
    if checkpoint is not None:
        monitors.append(checkpoint_monitor(checkpoint, checkpoint_every, steps, writes=place.writes))
    return monitors, stopping


def _on_validation(step, stopping, flow, history):
    """``step`` handing optax the latest validation loss as ``value`` (the starting flow's
    before the first evaluation) instead of the batch loss."""
    first = float(stopping.evaluate(flow))
    dtype = getattr(flow, "dtype", None) or jnp.result_type(float)

    def step_on_validation(flow, opt_state, *args):
        latest = history["val"][-1][1] if history["val"] else first
        return step(flow, opt_state, *args, optimizer_value=jnp.asarray(latest, dtype))

    return step_on_validation


def _step_args(stream, start, reference, check_inputs, noise_key, place):
    """The arguments of steps ``start, start + 1, ...``: the step's transform key and its
    batch, checked and split over the devices."""
    for i, batch in enumerate(stream, start):
        if check_inputs and i > 0:  # the first batch was checked before initialisation
            check_batch(i, batch, reference)
        yield (jr.fold_in(noise_key, i), *place.batch(batch))


def _pair(val):
    """A validation set ``(x,)`` or ``(x, cond)`` as ``(x, cond)``, like a batch."""
    return tuple(val) + (None,) * (2 - len(val))


def _same_on_every_process(reference, val) -> None:
    """Under ``jax.distributed``: every process feeds batches of one layout (a mismatch
    would otherwise hang in the first collective or fail deep inside JAX)."""
    from jax.experimental import multihost_utils

    layout = [[-1] if r is None else [*r[0], jnp.dtype(r[1]).num] for r in reference]
    layout.append([-1] if val is None else [len(val[0])])
    try:
        multihost_utils.assert_equal(np.array([v for r in layout for v in (len(r), *r)]), "")
    except AssertionError:
        raise ValueError(
            f"fit: the processes feed different layouts (this process, {jax.process_index()}: x, cond of shapes "
            f"{', '.join('None' if r is None else f'(B, {str(r[0])[1:-1]}) {r[1]}' for r in reference)}, and "
            f"{0 if val is None else len(val[0])} validation samples). Every process "
            "must feed its share of each batch, batch_size / parts samples of the same shape and dtype "
            "(ij.process_part), and the same number of validation samples."
        ) from None


def _placed_validation(place, val):
    """The validation set of every process, assembled across processes like a batch."""
    try:
        return place.batch(_pair(val))
    except ValueError as error:
        raise ValueError(f"fit: the validation set cannot be split like a batch: "
                         f"{str(error).removeprefix('shard_batch: ')}") from None


def _prepare(transform):
    """``prepare(key, x, cond) -> (x, cond)``: the transform, or the batch as it is."""
    if transform is None:
        return lambda key, x, cond=None: (x, cond)
    return lambda key, x, cond=None: tuple(transform(key, x, cond))


def _source(x, cond, batch_size, validation, split_key, shuffle_key):
    """The batch source and the validation pair (or ``None``) for arrays or an iterable."""
    # A list of ready-made batches (arrays, or (x, cond) pairs) is an iterable of batches; a
    # list of numbers or of nested lists is data that was meant to be an array.
    is_batch = lambda b: hasattr(b, "shape") or (isinstance(b, tuple) and bool(b) and hasattr(b[0], "shape"))
    for name, value in (("x", x), ("cond", cond)):
        if isinstance(value, (list, tuple)) and (name == "cond" or not all(map(is_batch, value))):
            raise ValueError(
                f"fit: {name} is a Python {type(value).__name__} of {type(value[0]).__name__ if value else 'nothing'}; "
                f"pass an array (jnp.asarray({name}), batch axis first), or, for ready-made batches, a list or "
                f"iterator of arrays or (x, cond) pairs."
            )
    if callable(x) and not hasattr(x, "shape"):  # a simulator: fresh pairs every step
        if cond is not None:
            raise ValueError("fit: with a simulator, cond comes from it (simulate(key, n) -> (x, cond)); "
                             "do not pass cond=.")
        if isinstance(validation, bool) or not isinstance(validation, int | tuple) and validation != 0:
            raise ValueError(f"fit: with a simulator, validation is a number of pairs drawn once (an int) or a "
                             f"tuple (x_val, cond_val); got {validation!r}.")
        if isinstance(validation, tuple):
            val = tuple(validation)
        elif validation > 0:
            val = simulated(x, split_key, validation, "for the validation set")
        else:
            val = None
        return simulated_batches(x, batch_size, shuffle_key), val
    if not hasattr(x, "shape"):  # an iterable of batches
        if cond is not None:
            raise ValueError("fit: with an iterable of batches, pass cond inside the batches, not as cond=.")
        if isinstance(validation, float) and validation > 0:
            raise ValueError("fit: with an iterable of batches, validation must be a tuple (x_val, cond_val).")
        return iterable_batches(x), (tuple(validation) if isinstance(validation, tuple) else None)
    (x, cond), val = split_validation(x, cond, validation, split_key)
    return array_batches(x, cond, batch_size, shuffle_key), val


__all__ = ["fit", "negative_log_likelihood"]
