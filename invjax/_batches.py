"""Batch sources for training: arrays (split, shuffled) and iterables; host-side batch checks.

A *batch source* is a function ``source(start) -> iterator`` of ``(x, cond)`` batches for
the steps ``start, start + 1, ...`` (``cond`` may be ``None``). Resuming a run asks for
the stream from its step; a source decides how to get there cheaply (arrays replay only
the shuffling, a simulator would draw with ``jax.random.fold_in(key, step)``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator

import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ._checks import canonical_dtype

Source = Callable[[int], Iterator[tuple]]


def split_validation(x, cond, validation, key):
    """``((x, cond), val)``: the training arrays and the held-out pair (or ``None``).

    Args:
        x: ``(N, ...)`` inputs.
        cond: ``(N, ...)`` conditions, or ``None``.
        validation: a fraction in ``[0, 1)`` held out at random (by ``key``), or a pair
            ``(x_val, cond_val)`` given by the caller.
        key: PRNG key of the random split.

    Raises:
        ValueError: ``cond`` does not match ``x``'s batch size, ``validation`` is neither
            a fraction in ``[0, 1)`` nor a pair, or no training sample is left.
    """
    n = x.shape[0]
    if cond is not None and (not hasattr(cond, "shape") or cond.shape[0] != n):
        raise ValueError(f"fit: cond must be an array with the batch size of x ({n}), got "
                         f"{getattr(cond, 'shape', type(cond).__name__)}.")
    if isinstance(validation, tuple):
        val = validation
    elif 0 < validation < 1:
        order = np.asarray(jr.permutation(key, n))
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
    return (x, cond), val


def array_batches(x, cond, batch_size: int, key) -> Source:
    """Endless epochs of shuffled batches of ``min(batch_size, N)`` rows.

    The last partial batch of an epoch is dropped, so every step has the same shape and
    compiles once. ``source(start)`` replays the shuffling (not the gathers) up to ``start``.
    """
    n = x.shape[0]
    batch_size = min(batch_size, n)

    def indices():
        k = key
        while True:
            k, sub = jr.split(k)
            order = np.asarray(jr.permutation(sub, n))
            for s in range(0, n - batch_size + 1, batch_size):
                yield order[s : s + batch_size]

    def source(start):
        for idx in itertools.islice(indices(), start, None):
            yield x[idx], (None if cond is None else cond[idx])

    return source


def iterable_batches(batches: Iterable) -> Source:
    """A source over a (possibly one-shot) iterable of batches ``x`` or ``(x, cond)``.

    The iterable is read once: ``source(start)`` skips forward to ``start`` from wherever
    earlier streams stopped (it cannot go back).
    """
    stream = iter(batches)
    read = 0

    def source(start):
        nonlocal read
        if start < read - 1:
            raise ValueError(f"fit: cannot rewind an iterable of batches to step {start}; {read} were read.")
        for batch in stream:
            read += 1
            if read - 1 < start:
                continue
            yield tuple(batch) if isinstance(batch, tuple | list) else (batch, None)
        raise ValueError("fit: the batch iterable ran out before the last step; pass more batches or fewer steps.")

    return source


def describe(batch) -> tuple:
    """The layout of a batch, ``((shape without batch axis, dtype) or None, ...)``."""
    return tuple(None if a is None else (tuple(a.shape[1:]), canonical_dtype(a)) for a in batch)


def check_batch(step: int, batch, reference, where: str | None = None) -> None:
    """Host-side checks of one ``(x, cond)`` batch against the first batch's layout.

    Raises:
        ValueError: naming the step, if the batch is empty, ``x`` and ``cond`` differ in
            batch size, a part is missing or unexpected, a shape or dtype differs from
            the first batch's, or it holds NaN or Inf.
    """
    names = ("x", "cond")
    at = where or f"at step {step}"
    sizes = {a.shape[0] for a in batch if a is not None}
    if 0 in sizes:
        raise ValueError(f"fit: the batch {at} is empty.")
    if len(sizes) > 1:
        raise ValueError(f"fit: {at}, x and cond have different batch sizes {sorted(sizes)}.")
    for name, a, ref in zip(names, batch, reference, strict=True):
        if (a is None) != (ref is None):
            raise ValueError(f"fit: {at}, {name} is {'missing' if a is None else 'unexpected'}.")
        if a is None:
            continue
        if (tuple(a.shape[1:]), canonical_dtype(a)) != ref:
            raise ValueError(f"fit: {at}, {name} has shape {tuple(a.shape)} and dtype {a.dtype}; "
                             f"the first batch had (B, {', '.join(map(str, ref[0]))}) and {ref[1]}.")
        if jnp.issubdtype(a.dtype, jnp.inexact) and not np.isfinite(np.asarray(a)).all():
            raise ValueError(f"fit: {name} {at} contains NaN or Inf; clean the data"
                             + (" (nothing was trained on this batch)." if where is None else "."))


def simulated_batches(simulate, batch_size: int, key) -> Source:
    """Fresh pairs every step from ``simulate(key, n) -> (x, cond)`` (or ``x``).

    Step ``i`` draws ``simulate(jax.random.fold_in(key, i), batch_size)``, so a run
    resumed at step ``i`` draws exactly the pairs an uninterrupted run would have.
    """

    def source(start):
        for i in itertools.count(start):
            yield simulated(simulate, jr.fold_in(key, i), batch_size, f"at step {i}")

    return source


def simulated(simulate, key, n: int, where: str):
    """One draw of ``n`` pairs, checked: ``(x, cond)`` arrays with ``n`` rows."""
    out = simulate(key, n)
    x, cond = (tuple(out) + (None,))[:2] if isinstance(out, tuple | list) else (out, None)
    for name, a in (("x", x), ("cond", cond)):
        if a is not None and (not hasattr(a, "shape") or a.ndim < 1 or a.shape[0] != n):
            raise ValueError(f"fit: simulate(key, {n}) {where} must return x or (x, cond), arrays with {n} rows; "
                             f"its {name} is {getattr(a, 'shape', type(a).__name__)}.")
    if x is None:
        raise ValueError(f"fit: simulate(key, {n}) {where} returned no x.")
    return x, cond

