"""Data parallelism: batches split over a mesh of devices, parameters replicated."""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def data_parallel(devices, batch_size: int):
    """``(place_batch, replicate)`` for data parallelism over ``devices`` (identity on one).

    Raises:
        ValueError: ``devices`` is empty, or ``batch_size`` is not a multiple of their number.
    """
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
