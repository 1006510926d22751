"""Many devices: each batch split over a mesh along its samples and, for inputs too large
for one device, along space too (domain parallelism); parameters replicated.

The mesh has two axes, ``"batch"`` and ``"space"``. A batch array ``(B, C, S1, ...)`` is
split along ``B`` over ``"batch"`` and along its first spatial axis ``S1`` (``H`` of an
image, ``D`` of a volume) over ``"space"``; vectors ``(B, K)`` along ``B`` only. XLA's SPMD
partitioner then runs the unmodified step on every device: convolutions exchange halos with
their neighbours, sums over space become all-reduces. invjax's layers keep their operands
sharded (no full-size all-gather inside a step; ``tests/test_spatial.py`` checks the HLO).
"""

from __future__ import annotations

import os

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXES = ("batch", "space")


def use_cpu_cores(n: int | None = None, *, batch_size: int | None = None) -> int:
    """Run JAX on a CPU as ``n`` host devices (default: one per core), so that training
    uses every core.

    XLA:CPU runs a convolution on one thread; with one host device per core and the batch
    split over them (what :func:`invjax.fit` does with every device, and
    :func:`shard_batch` for a hand-written loop) every core works. Call it once, right
    after ``import jax``, before any JAX computation: the number of host devices is fixed
    when JAX starts its backends. It has no effect on GPUs or TPUs, whose devices are
    listed as usual.

    Args:
        n: host devices; default one per core this process may use.
        batch_size: if given, ``n`` is lowered to the largest number that divides it, so
            that :func:`invjax.fit` can split every batch evenly.

    Returns:
        The number of host devices set.

    Raises:
        ValueError: ``n`` is not a positive integer, or JAX has already started (with how
            to fix it).
    """
    from jax._src import xla_bridge

    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"use_cpu_cores: n must be a positive integer, got {n!r}.")
    if batch_size is not None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"use_cpu_cores: batch_size must be a positive integer, got {batch_size!r}.")
        n = max(d for d in range(1, n + 1) if batch_size % d == 0)
    if xla_bridge.backends_are_initialized():
        if len(jax.devices("cpu")) == n:
            return n
        raise ValueError(
            f"use_cpu_cores: JAX has already started with {len(jax.devices('cpu'))} CPU device(s); call "
            f"ij.use_cpu_cores({n}) right after `import jax`, before any JAX computation, or start Python "
            f"with XLA_FLAGS=--xla_force_host_platform_device_count={n}."
        )
    jax.config.update("jax_num_cpu_devices", n)
    return n


def device_mesh(devices=None, *, space: int = 1) -> Mesh:
    """A ``("batch", "space")`` mesh of ``devices``: ``space`` devices share each sample.

    Args:
        devices: a list of devices; default every device ``jax.devices()`` lists.
        space: devices per sample (domain parallelism), ``>= 1`` and dividing the number
            of devices; the other factor splits the batch. ``space=1`` is plain data
            parallelism, ``space=len(devices)`` splits every sample over all devices.

    Returns:
        A ``jax.sharding.Mesh`` of shape ``(len(devices) // space, space)``.

    Example:
        >>> import jax, invjax as ij
        >>> mesh = ij.device_mesh(space=1)
        >>> mesh.axis_names
        ('batch', 'space')
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("device_mesh: devices is empty; pass a list of devices, or None for all of jax.devices().")
    if not isinstance(space, int) or isinstance(space, bool) or space < 1 or len(devices) % space:
        raise ValueError(f"device_mesh: space must be a positive integer dividing the number of devices "
                         f"({len(devices)}); got space={space!r}.")
    return Mesh(np.array(devices, dtype=object).reshape(len(devices) // space, space), AXES)


def batch_spec(ndim: int) -> P:
    """How a batch array of ``ndim`` axes is split: samples over ``"batch"``, the first
    spatial axis (axis 2) over ``"space"``."""
    return P("batch", None, "space") if ndim >= 3 else P("batch")


def _check_splits(mesh: Mesh, a, name: str):
    ways, space = mesh.shape["batch"], mesh.shape["space"]
    if a.ndim < 1 or a.shape[0] % ways:
        raise ValueError(f"{name}: the batch size must be a multiple of the mesh's {ways} batch shard(s) "
                         f"(devices / space); got shape {tuple(a.shape)}.")
    if space > 1 and a.ndim >= 3 and a.shape[2] % space:
        raise ValueError(f"{name}: the first spatial size must be a multiple of space={space} to split it "
                         f"over the devices; got shape {tuple(a.shape)}.")


def shard_batch(batch, mesh: Mesh):
    """Place a batch on ``mesh``: every array split along its samples and its first spatial
    axis (see :func:`batch_spec`). ``batch`` is an array or any pytree of arrays (``(x,
    cond)``); ``None`` stays ``None``.

    Raises:
        ValueError: a batch size that the ``"batch"`` axis cannot split, or a first spatial
            size that the ``"space"`` axis cannot split.

    Shapes: unchanged; each device holds ``(B / batch, C, S1 / space, ...)``.
    """
    def place(a):
        _check_splits(mesh, a, "shard_batch")
        return jax.device_put(a, NamedSharding(mesh, batch_spec(a.ndim)))

    return jax.tree.map(place, batch)


def replicate(tree, mesh: Mesh):
    """Every array of ``tree`` (a flow, an optimizer state) copied to every device of ``mesh``."""
    arrays, rest = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.device_put(arrays, NamedSharding(mesh, P())), rest)


def data_parallel(devices, batch_size: int, space: int = 1):
    """``(place_batch, replicate)`` for ``fit``: batches split over a :func:`device_mesh`
    (samples, and space when ``space > 1``), parameters replicated; identity on one device.

    Raises:
        ValueError: ``devices`` is empty, ``space`` does not divide their number, or
            ``batch_size`` is not a multiple of ``devices / space``.
    """
    mesh = device_mesh(devices, space=space)
    if mesh.size == 1:
        return (lambda batch: batch), (lambda tree: tree)
    ways = mesh.shape["batch"]
    if batch_size % ways:
        raise ValueError(f"fit: batch_size ({batch_size}) must be a multiple of the number of devices "
                         f"({ways}{f' = {mesh.size} / space' if space > 1 else ''}) for data-parallel "
                         "training; or pass devices=[...].")

    return (lambda batch: shard_batch(tuple(batch), mesh)), (lambda tree: replicate(tree, mesh))
