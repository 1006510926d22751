"""Checkpoints of a training run: atomic save, and resume from an existing file."""

from __future__ import annotations

import os
import pathlib

from ._io import load, load_metadata, save


def save_checkpoint(path: str | os.PathLike, flow, opt_state, step: int, history: dict) -> None:
    """Write ``(flow, opt_state)`` and ``step``, ``history["train"]``, ``history["val"]`` to ``path``
    (atomically: ``invjax.save`` replaces the file in one step)."""
    save(path, {"flow": flow, "opt_state": opt_state},
         metadata={"step": step, "train": history["train"], "val": history.get("val", [])})


def load_checkpoint(path: str | os.PathLike | None, flow, opt_state):
    """``(flow, opt_state, step, history)`` from ``path``, or ``None`` if there is none.

    ``flow`` and ``opt_state`` give the structure to fill: this run's own, so nothing is
    unpickled.
    """
    if path is None or not pathlib.Path(path).exists():
        return None
    state = load(path, like={"flow": flow, "opt_state": opt_state})
    meta = load_metadata(path)
    history = {"train": list(meta["train"]), "val": [tuple(v) for v in meta["val"]]}
    return state["flow"], state["opt_state"], meta["step"], history
