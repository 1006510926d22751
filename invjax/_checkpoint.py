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


def load_checkpoint(path: str | os.PathLike | None, flow, opt_state, steps: int):
    """``(flow, opt_state, step, history)`` from ``path``, or ``None`` if there is none.

    ``flow`` and ``opt_state`` give the structure to fill: this run's own, so the file's
    structure is only compared with it. Nothing is written here, so a checkpoint that
    cannot be resumed is left as it is.

    Raises:
        ValueError: the file is not a checkpoint of this model and optimizer (naming the
            first array that differs), is damaged, or is at a step beyond ``steps``.
    """
    if path is None or not pathlib.Path(path).exists():
        return None
    try:
        state = load(path, like={"flow": flow, "opt_state": opt_state})
        meta = load_metadata(path)
        step = meta["step"]
        history = {"train": list(meta["train"]), "val": [tuple(v) for v in meta["val"]]}
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"fit: cannot resume from the checkpoint {path} ({e}). The file is left as it is; to start afresh, "
            f"pass another checkpoint= path or delete it."
        ) from None
    if step > steps:
        raise ValueError(
            f"fit: the checkpoint {path} is at step {step}, beyond steps={steps}; pass steps >= {step} to continue "
            f"that run, or another checkpoint= path to start afresh. The file is left as it is."
        )
    return state["flow"], state["opt_state"], step, history


