"""Figures of the diagnostics' results (matplotlib, imported when a figure is drawn)."""

from __future__ import annotations

import math

import numpy as np


def _axes(count, ax, size=2.6):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, np.atleast_1d(ax)
    cols = min(count, 4)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for a in axes.ravel()[count:]:
        a.set_visible(False)
    return fig, axes.ravel()[:count]


def _names(count, names):
    return list(names) if names is not None else [f"#{i}" for i in range(count)]


def plot_sbc(result: dict, names=None, ax=None):
    """ECDF difference of the SBC ranks with its band, one panel per quantity (of :func:`sbc`)."""
    diff = result["ecdf_difference"]
    fig, axes = _axes(diff.shape[1], ax)
    for i, (a, name) in enumerate(zip(axes, _names(diff.shape[1], names), strict=False)):
        a.fill_between(result["z"], result["lower"], result["upper"], color="0.85", step="mid")
        a.step(result["z"], diff[:, i], where="mid", color="C3" if result["outside"][i] else "C0")
        a.axhline(0, color="0.5", lw=0.6)
        a.set(title=name, xlabel="fractional rank")
    axes[0].set_ylabel("ECDF difference")
    fig.tight_layout()
    return fig


def plot_coverage(result: dict, names=None, ax=None):
    """Observed against expected coverage (of :func:`coverage`)."""
    import matplotlib.pyplot as plt

    fig, a = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(3.4, 3.2))
    levels = result["levels"]
    a.fill_between(levels, levels - result["interval"][:, 0], levels + result["interval"][:, 0], color="0.85")
    a.plot([0, 1], [0, 1], color="0.5", lw=0.6)
    for i, name in enumerate(_names(result["observed"].shape[1], names)):
        a.plot(levels, result["observed"][:, i], "o-", ms=3, label=name)
    a.set(xlabel="credible level", ylabel="observed coverage", xlim=(0, 1), ylim=(0, 1))
    if result["observed"].shape[1] <= 8:
        a.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _scatter_panels(xs, ys, names, ax, xlabel: str, ylabel: str, decorate):
    """One scatter panel per quantity; ``decorate(axis, i, name)`` adds the reference."""
    fig, axes = _axes(xs.shape[1], ax)
    for i, (a, name) in enumerate(zip(axes, _names(xs.shape[1], names), strict=False)):
        a.scatter(xs[:, i], ys[:, i], s=4, alpha=0.5)
        decorate(a, i, name)
        a.set(xlabel=xlabel)
    axes[0].set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def plot_contraction(result: dict, names=None, ax=None):
    """Posterior z-score against contraction, one panel per quantity (of :func:`contraction`)."""
    c, z = result["contraction"], result["z"]

    def decorate(a, i, name):
        a.axhline(0, color="0.5", lw=0.6)
        a.set(title=name, xlim=(min(0, c[:, i].min()), 1))

    return _scatter_panels(c, z, names, ax, "contraction", "z-score", decorate)


def plot_recovery(result: dict, names=None, ax=None):
    """Posterior mean against the truth, one panel per quantity (of :func:`recovery`)."""
    mean, truth = result["mean"], result["truth"]

    def decorate(a, i, name):
        lo, hi = truth[:, i].min(), truth[:, i].max()
        a.plot([lo, hi], [lo, hi], color="0.5", lw=0.6)
        a.set(title=f"{name}  R2 {result['r2'][i]:.2f}")

    return _scatter_panels(truth, mean, names, ax, "truth", "posterior mean", decorate)


def plot_tarp(result: dict, ax=None):
    """Expected coverage against credibility level (of :func:`tarp`), with the diagonal."""
    import matplotlib.pyplot as plt

    fig, a = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(3.4, 3.2))
    n = len(result["coverage"])
    band = 1.36 / math.sqrt(n)
    a.fill_between(result["alpha"], np.clip(result["alpha"] - band, 0, 1), np.clip(result["alpha"] + band, 0, 1),
                   color="0.85")
    a.plot([0, 1], [0, 1], color="0.5", lw=0.6)
    a.plot(result["alpha"], result["ecp"], color="C0")
    a.set(xlabel="credibility level", ylabel="expected coverage", title=f"TARP  error {result['error']:.3f}",
          xlim=(0, 1), ylim=(0, 1))
    fig.tight_layout()
    return fig


def plot_rank_histogram(result: dict, names=None, bins: int | None = None, ax=None):
    """Histograms of the SBC ranks (of :func:`sbc`), one panel per quantity, with the
    99% band of each bar's count under uniform ranks (Talts et al., 2018)."""
    from scipy.stats import binom

    ranks = result["ranks"]
    n, draws_per = ranks.shape[0], len(result["z"])
    bins = bins or max(1, min(20, n // 20))
    fig, axes = _axes(ranks.shape[1], ax)
    edges = np.linspace(0, draws_per + 1, bins + 1)
    low, high = binom.ppf([0.005, 0.995], n, 1 / bins)
    for i, (a, name) in enumerate(zip(axes, _names(ranks.shape[1], names), strict=False)):
        a.axhspan(low, high, color="0.85")
        a.axhline(n / bins, color="0.5", lw=0.6)
        a.hist(ranks[:, i], bins=edges, color="C3" if result["outside"][i] else "C0", alpha=0.8)
        a.set(title=name, xlabel="rank")
    axes[0].set_ylabel("count")
    fig.tight_layout()
    return fig


def plot_pairs(draws, truth=None, names=None, *, max_points: int = 2000):
    """Pairs plot of one observation's posterior draws ``(L, D)`` (histograms on the
    diagonal, scatter below it), with the truth ``(D,)`` marked if given."""
    import matplotlib.pyplot as plt

    draws = np.asarray(draws).reshape(np.shape(draws)[0], -1)
    dim = draws.shape[1]
    truth = None if truth is None else np.asarray(truth).reshape(-1)
    if truth is not None and truth.shape != (dim,):
        raise ValueError(f"plot_pairs: truth must have one value per quantity ({dim}), got shape {truth.shape}.")
    shown = draws[:: max(1, len(draws) // max_points)]
    fig, axes = plt.subplots(dim, dim, figsize=(1.9 * dim + 0.6, 1.9 * dim + 0.6), squeeze=False)
    labels = _names(dim, names)
    for i in range(dim):
        for j in range(dim):
            a = axes[i, j]
            if j > i:
                a.set_visible(False)
                continue
            if i == j:
                a.hist(draws[:, i], bins=40, color="C0", alpha=0.8)
                if truth is not None:
                    a.axvline(truth[i], color="C3")
            else:
                a.scatter(shown[:, j], shown[:, i], s=2, alpha=0.3)
                if truth is not None:
                    a.plot(truth[j], truth[i], "*", color="C3", ms=9)
            if i == dim - 1:
                a.set_xlabel(labels[j])
            if j == 0 and i > 0:
                a.set_ylabel(labels[i])
    fig.tight_layout()
    return fig


def plot_losses(history: dict, ax=None, smoothing: int = 50):
    """Training loss per step (with its moving average over ``smoothing`` steps) and the
    validation losses of ``ij.fit``'s ``history``."""
    import matplotlib.pyplot as plt

    train = np.asarray(history.get("train", []), float)
    if train.size == 0:
        raise ValueError("plot_losses: history has no training losses (history['train'] is empty).")
    fig, a = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5, 3.2))
    steps = np.arange(1, len(train) + 1)
    a.plot(steps, train, color="C0", alpha=0.3, lw=0.8, label="train")
    if len(train) >= smoothing > 1:
        a.plot(steps[smoothing - 1:], np.convolve(train, np.ones(smoothing) / smoothing, "valid"), color="C0",
               label=f"train, mean of {smoothing}")
    if history.get("val"):
        at, val = zip(*history["val"], strict=True)
        a.plot(at, val, "o-", color="C1", ms=3, label="validation")
    a.set(xlabel="step", ylabel="loss")
    a.legend(fontsize=8)
    fig.tight_layout()
    return fig
