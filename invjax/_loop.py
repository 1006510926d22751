"""The training loop shared by ``fit`` and ``fit_vi``: steps, history, progress, monitors.

A *monitor* runs after every finite step as ``monitor(done, flow, opt_state, args, history)``
(``done`` steps are finished, ``args`` is what the step was called with) and returns True
to stop training. Validation with early stopping, reconstruction checks and checkpoints
are monitors.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence

import equinox as eqx
import numpy as np

from ._checkpoint import save_checkpoint
from ._health import reconstruction_error
from ._step import non_finite


def train_loop(step: Callable, flow, opt_state, args: Iterator[tuple], *, steps: int, start: int = 0,
               history: dict, monitors: Sequence[Callable] = (), progress: bool = True, name: str = "fit",
               label: str = "loss"):
    """Run ``step(flow, opt_state, *args) -> (flow, opt_state, loss)`` for steps ``start .. steps - 1``.

    ``args`` yields the step's arguments, one tuple per step. Each finite loss is appended
    to ``history["train"]``; a non-finite one stops with a warning naming the step and
    keeps the previous flow.

    Returns:
        ``(flow, opt_state)`` after the last finite step (or the last one a monitor stopped at).
    """
    bar = _progress(range(start, steps), progress, total=steps, initial=start, desc=name)
    for i in bar:
        batch = next(args)
        new_flow, new_state, value = step(flow, opt_state, *batch)
        value = float(value)
        if non_finite(name, value, i):
            break
        flow, opt_state = new_flow, new_state
        history["train"].append(value)
        stop = False
        for monitor in monitors:  # every monitor runs (a checkpoint is written even when stopping)
            stop = monitor(i + 1, flow, opt_state, batch, history) or stop
        if progress and (i % 10 == 0 or i + 1 == steps):
            shown = f"{label} {np.mean(history['train'][-50:]):.4g}"
            if history.get("val"):
                shown += f", val {history['val'][-1][1]:.4g}"
            bar.set_postfix_str(shown, refresh=False)
        if stop:
            break
    return flow, opt_state


class EarlyStopping:
    """Validation monitor: ``evaluate(flow) -> loss`` every ``every`` steps (and at the last),
    recorded in ``history["val"]`` as ``(step, loss)``; stops after ``patience`` evaluations
    without improvement (never if ``None``). ``best(flow)`` is the flow to return."""

    def __init__(self, evaluate: Callable, every: int, last: int, patience: int | None):
        self.evaluate, self.every, self.last, self.patience = evaluate, every, last, patience
        self.best_loss, self.best_flow, self.waited = math.inf, None, 0

    def __call__(self, done, flow, opt_state, args, history) -> bool:
        if done % self.every and done != self.last:
            return False
        loss = float(self.evaluate(flow))
        history["val"].append((done, loss))
        if loss < self.best_loss:
            self.best_loss, self.best_flow, self.waited = loss, flow, 0
        else:
            self.waited += 1
        return self.patience is not None and self.waited >= self.patience

    def best(self, flow):
        """The best validated flow with a patience, else ``flow``."""
        if self.patience is not None and self.best_flow is not None:
            return self.best_flow
        return flow


def reconstruction_monitor(every: int, tol: float, prepare: Callable):
    """Every ``every`` steps, :func:`invjax.reconstruction_error` on the step's batch
    ``prepare(*args) -> (x, cond)``, into ``history["reconstruction"]``; warns above ``tol``."""
    error_of = eqx.filter_jit(lambda flow, *args: reconstruction_error(flow, *prepare(*args)))

    def monitor(done, flow, opt_state, args, history):
        if done % every:
            return False
        error = float(error_of(flow, *args))
        history["reconstruction"].append((done, error))
        if not error <= tol:
            warnings.warn(f"fit: reconstruction error {error:.3g} at step {done} exceeds {tol:g}; "
                          "gradients rebuilt from inverses are inaccurate (see ij.reconstruction_error).",
                          RuntimeWarning, stacklevel=4)
        return False

    return monitor


def checkpoint_monitor(path, every: int, last: int, writes: bool = True):
    """Save the run to ``path`` every ``every`` steps and at the last step (if ``writes``:
    under ``jax.distributed`` one process writes, every process reads)."""

    def monitor(done, flow, opt_state, args, history):
        if writes and (done % every == 0 or done == last):
            save_checkpoint(path, flow, opt_state, done, history)
        return False

    return monitor


def _progress(iterable, enabled, total, initial, desc):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, initial=initial, desc=desc, unit="step")
