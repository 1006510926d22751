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
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXES = ("batch", "space", "space2")


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


def space_grid(space) -> tuple[int, int]:
    """``space`` as ``(a, b)``: devices per sample along the first and the second spatial axis.

    ``space=n`` is ``(n, 1)`` (slabs); ``space=(a, b)`` splits each sample over an ``a x b``
    grid (tiles of an image, pencils of a volume).

    Raises:
        ValueError: ``space`` is not a positive integer or a pair of them.
    """
    grid = (space, 1) if isinstance(space, int) and not isinstance(space, bool) else space
    if (not isinstance(grid, tuple | list) or len(grid) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in grid)):
        raise ValueError(f"space must be a positive integer (devices per sample along the first spatial axis) or a "
                         f"pair (a, b) of them (an a x b grid over the first two spatial axes); got space={space!r}.")
    return int(grid[0]), int(grid[1])


def device_mesh(devices=None, *, space=1) -> Mesh:
    """A ``("batch", "space", "space2")`` mesh of ``devices``: each sample shared by a grid
    of ``space`` devices, the batch split over the groups.

    Args:
        devices: a list of devices; default every device ``jax.devices()`` lists (every
            process's, under ``jax.distributed``; they are listed process by process, so
            a group of devices sharing a sample stays within one process where it can).
        space: devices per sample (domain parallelism): ``n`` splits each sample's first
            spatial axis over ``n`` devices; ``(a, b)`` splits its first two spatial axes
            over an ``a x b`` grid. ``a * b`` must divide the number of devices; the
            other factor splits the batch. ``space=1`` is plain data parallelism.

    Returns:
        A ``jax.sharding.Mesh`` of shape ``(len(devices) // (a * b), a, b)``.

    Example:
        >>> import jax, invjax as ij
        >>> mesh = ij.device_mesh(space=1)
        >>> mesh.axis_names
        ('batch', 'space', 'space2')
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("device_mesh: devices is empty; pass a list of devices, or None for all of jax.devices().")
    try:
        a, b = space_grid(space)
    except ValueError as error:
        raise ValueError(f"device_mesh: {error}") from None
    if len(devices) % (a * b):
        raise ValueError(f"device_mesh: space must divide the number of devices ({len(devices)}): a sample can "
                         f"span at most every device; got space={space!r} ({a * b} devices per sample). Pass a "
                         f"space whose product divides {len(devices)}, or more devices.")
    return Mesh(np.array(devices, dtype=object).reshape(len(devices) // (a * b), a, b), AXES)


def batch_spec(ndim: int) -> P:
    """How a batch array of ``ndim`` axes is split: samples over ``"batch"``, the first
    spatial axis (axis 2) over ``"space"``, the second (axis 3) over ``"space2"``."""
    return P("batch", None, *AXES[1:][: max(0, min(ndim - 2, 2))])


def _check_splits(mesh: Mesh, a, name: str):
    ways = mesh.shape["batch"]
    if a.ndim < 1 or a.shape[0] % ways:
        raise ValueError(f"{name}: the batch size must be a multiple of the mesh's {ways} batch shard(s) "
                         f"(devices / space); got shape {tuple(a.shape)}.")
    for axis, mesh_axis, which in ((2, "space", "first"), (3, "space2", "second")):
        n = mesh.shape[mesh_axis]
        if n == 1 or a.ndim < 3:  # vectors (B, K) are split along the batch only
            continue
        if a.ndim <= axis:
            raise ValueError(f"{name}: space splits two spatial axes, but this array has one; got shape "
                             f"{tuple(a.shape)}.")
        if a.shape[axis] % n:
            raise ValueError(f"{name}: the {which} spatial size must be a multiple of {n} (space={_spelled(mesh)}) "
                             f"to split it over the devices; got shape {tuple(a.shape)}.")


def _spelled(mesh: Mesh):
    a, b = mesh.shape["space"], mesh.shape["space2"]
    return a if b == 1 else (a, b)


def process_part(mesh: Mesh) -> tuple[int, int]:
    """``(part, parts)``: which share of every batch this process feeds, of how many.

    Under ``jax.distributed`` each process holds the samples of its own devices' batch
    shards; processes whose devices share samples (a sample spanning several processes)
    hold the same samples. One process: ``(0, 1)``.

    Raises:
        ValueError: the mesh puts a sample on part of one process's devices and part of
            another's in a way that no whole share of samples belongs to one set of
            processes (a ``space`` that neither divides nor is a multiple of the devices
            per process), or it has none of this process's devices.
    """
    if jax.process_count() == 1:
        return 0, 1
    shares = _shares(mesh)
    sets = list(shares)
    mine = [s for s in sets if jax.process_index() in s]
    overlapping = any(s != t and s & t for s in sets for t in sets)
    if len(mine) != 1 or overlapping or len({len(g) for g in shares.values()}) != 1:
        per_process = len(jax.local_devices())
        raise ValueError(
            f"the mesh's samples cannot be handed out by process (process {jax.process_index()} of "
            f"{jax.process_count()}, {per_process} device(s) each, space={_spelled(mesh)}): pass a space whose "
            f"devices per sample divide {per_process} or are a multiple of it, and devices=None (every process's)."
        )
    ordered = sorted(sets, key=lambda s: shares[s][0])
    return ordered.index(mine[0]), len(ordered)


def _shares(mesh: Mesh) -> dict:
    """The set of processes holding each batch group (a row of the mesh) -> those groups, in order."""
    shares = {}
    for g, group in enumerate(mesh.devices.reshape(mesh.shape["batch"], -1)):
        shares.setdefault(frozenset(d.process_index for d in group), []).append(g)
    return shares


def _local_groups(mesh: Mesh) -> list[int]:
    """The batch groups whose samples this process holds, in order."""
    return next(groups for owner, groups in _shares(mesh).items() if jax.process_index() in owner)


def shard_batch(batch, mesh: Mesh, *, local: bool = False):
    """Place a batch on ``mesh``: every array split along its samples and its first spatial
    axes (see :func:`batch_spec`). ``batch`` is an array or any pytree of arrays (``(x,
    cond)``); ``None`` stays ``None``.

    Args:
        batch: the arrays.
        mesh: a :func:`device_mesh`.
        local: ``False``: ``batch`` is the whole batch (under ``jax.distributed``, the
            same on every process; each process places its devices' pieces).
            ``True``: ``batch`` holds only this process's share of the samples, ``B /
            parts`` of them (:func:`process_part`; processes sharing samples pass the
            same ones), and the whole batch, ``B`` samples, is assembled across
            processes without any process holding it. One process: the same as
            ``False``.

    Raises:
        ValueError: a batch size that the ``"batch"`` axis cannot split, or a spatial
            size that the ``"space"`` axes cannot split.

    Shapes: ``(B, C, S1, S2, ...)``; each device holds ``(B / batch, C, S1 / a, S2 / b, ...)``
    for ``space=(a, b)``.
    """
    part, parts = process_part(mesh) if local else (0, 1)
    groups = _local_groups(mesh) if parts > 1 else None

    def place(a):
        if parts > 1:
            shape = (a.shape[0] * parts, *a.shape[1:])
            rows = shape[0] // mesh.shape["batch"]  # samples per batch group
            _check_splits(mesh, _Shape(shape), "shard_batch")

            def piece(index):  # the global index of one device's piece, read from our rows
                first = index[0].start or 0
                offset = _local_row(groups, first, rows)
                return a[(slice(offset, offset + (index[0].stop or shape[0]) - first), *index[1:])]

            return jax.make_array_from_callback(shape, NamedSharding(mesh, batch_spec(a.ndim)), piece)
        _check_splits(mesh, a, "shard_batch")
        sharding = NamedSharding(mesh, batch_spec(a.ndim))
        if sharding.is_fully_addressable:
            return jax.device_put(a, sharding)
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    return jax.tree.map(place, batch)


def split_like_batch(tree, mesh: Mesh | None, name: str, *, samples: bool = True):
    """Every array of ``tree`` constrained to a batch's layout on ``mesh``
    (``jax.lax.with_sharding_constraint``; inside ``jax.jit`` it tells XLA's partitioner
    where the values live, so that a latent drawn there is drawn split). ``None`` mesh:
    ``tree`` as it is. ``samples=False`` splits space only (an array whose batch the
    ``"batch"`` axis need not divide).

    Raises:
        ValueError: ``mesh`` is not a :func:`device_mesh`, or an array it cannot split.
    """
    if mesh is None:
        return tree
    if not isinstance(mesh, Mesh) or tuple(mesh.axis_names) != AXES:
        raise ValueError(f"{name}: mesh must be an ij.device_mesh (axes {AXES}), got {mesh!r:.120}.")

    def one(a):
        spec = batch_spec(a.ndim)
        if samples:
            _check_splits(mesh, a, name)
        else:
            _check_splits(mesh, _Shape((mesh.shape["batch"], *a.shape[1:])), name)
            spec = P(None, *spec[1:])
        return jax.lax.with_sharding_constraint(a, NamedSharding(mesh, spec))

    return jax.tree.map(one, tree)


class _Shape:
    """A stand-in with only a shape, for the split checks of an array not built yet."""

    def __init__(self, shape):
        self.shape, self.ndim = tuple(shape), len(shape)


def _local_row(groups: list[int], row: int, rows: int) -> int:
    """Where global batch row ``row`` sits in this process's share (its groups, in order)."""
    return groups.index(row // rows) * rows + row % rows


def replicate(tree, mesh: Mesh):
    """Every array of ``tree`` (a flow, an optimizer state) copied to every device of ``mesh``
    (under ``jax.distributed`` every process must pass the same values)."""
    arrays, rest = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.device_put(arrays, NamedSharding(mesh, P())), rest)


class Placement(NamedTuple):
    """How ``fit`` puts a training run on its devices.

    ``batch(local_batch)`` places this process's share of a batch (the whole batch on one
    process), ``replicate(tree)`` copies parameters to every device; this process feeds
    share ``part`` of ``parts`` (``batch_size / parts`` samples a step) and ``writes``
    files (checkpoints) if it is process 0."""

    batch: Callable
    replicate: Callable
    part: int
    parts: int
    writes: bool
    mesh: Mesh | None = None

    def traced(self, step: Callable) -> Callable:
        """``step`` called (and so traced) under the run's mesh (``jax.set_mesh``), so that
        layers can see that space is split; ``step`` itself on one device. Only the jitted
        step: eager work under a mesh context (a simulator's draws) would be laid out on
        every process's devices instead of this process's."""
        if self.mesh is None:
            return step

        def under_mesh(*args):
            with jax.set_mesh(self.mesh):
                return step(*args)

        return under_mesh


def data_parallel(devices, batch_size: int, space=1, name: str = "fit") -> Placement:
    """The :class:`Placement` of ``fit``: batches split over a :func:`device_mesh`
    (samples, and space when ``space`` is not 1), parameters replicated; identity on one
    device.

    Raises:
        ValueError: ``devices`` is empty or (under ``jax.distributed``) not every process's,
            ``space`` does not divide their number, or ``batch_size`` is not a multiple
            of the number of batch shards ``devices / space``.
    """
    if jax.process_count() > 1 and devices is not None and set(devices) != set(jax.devices()):
        raise ValueError(f"{name}: under jax.distributed ({jax.process_count()} processes) train on every process's "
                         "devices: pass devices=None (the mesh spans all of them).")
    try:
        mesh = device_mesh(devices, space=space)
    except ValueError as error:
        raise ValueError(f"{name}: {str(error).removeprefix('device_mesh: ')}") from None
    if mesh.size == 1:
        return Placement(lambda batch: batch, lambda tree: tree, 0, 1, True)
    ways = mesh.shape["batch"]
    if batch_size % ways:
        per_sample = mesh.size // ways
        raise ValueError(f"{name}: batch_size ({batch_size}) must be a multiple of the number of devices "
                         f"({ways}{f' = {mesh.size} / space' if per_sample > 1 else ''}) for data-parallel "
                         "training" + (f" (over {jax.process_count()} processes)" if jax.process_count() > 1 else "")
                         + f"; pass batch_size={ways * max(1, round(batch_size / ways))}"
                         + (" or devices=[...]." if jax.process_count() == 1 else " or another space."))
    part, parts = process_part(mesh)
    return Placement(lambda batch: shard_batch(tuple(batch), mesh, local=True), lambda tree: replicate(tree, mesh),
                     part, parts, jax.process_index() == 0, mesh)
