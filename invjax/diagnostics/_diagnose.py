"""The default checks on held-out simulations, in one call."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ._calibration import _flatten, calibration_error, contraction, coverage, recovery, sbc, tarp
from ._draws import posterior_draws
from ._plots import _names, plot_contraction, plot_recovery, plot_sbc, plot_tarp


def diagnose(flow, truth, observations, *, key, draws: int = 1000, batch_size: int | None = None,
             prior_variance=None, names=None, summaries: Callable | None = None, plot: bool = True) -> dict:
    """The default checks on held-out simulations, in one call: a table and one figure.

    Draws ``draws`` posterior samples for each observation (:func:`posterior_draws`),
    then computes per quantity SBC's ``log_gamma`` and verdict, the calibration error,
    the coverage of 90% intervals, contraction and z-scores, recovery's R2, and the
    joint TARP error.

    Args:
        flow: a conditional flow or ``Summarized`` model.
        truth: ``(N, *event)`` parameters the observations were simulated from.
        observations: ``(N, ...)`` the flow's conditions.
        key: PRNG key of the draws.
        draws: posterior draws per observation.
        batch_size: as for :func:`posterior_draws`.
        prior_variance: ``(D,)`` or a scalar; default the variance of ``truth`` (held-out
            simulations are prior draws).
        names: the quantities' names.
        summaries: as for :func:`sbc`.
        plot: also make the figure (needs matplotlib).

    Returns:
        ``{"table": str (Markdown, one row per quantity), "rows": [dict per quantity],
        "tarp_error": float, "draws": (N, L, *event), "figure": matplotlib figure or
        None}``.
    """
    truth = np.asarray(truth)
    samples = posterior_draws(flow, observations, draws, truth.shape[1:], key=key, batch_size=batch_size)
    result = {"draws": samples}
    calibration = sbc(samples, truth, summaries=summaries)
    errors = calibration_error(samples, truth, summaries=summaries)
    covered = coverage(samples, truth, (0.9,), summaries=summaries)
    flat_truth = _flatten(samples, truth, summaries)[1]
    variance = flat_truth.var(axis=0, ddof=1) if prior_variance is None else prior_variance
    shrink = contraction(samples, truth, variance, summaries=summaries)
    recovered = recovery(samples, truth, summaries=summaries)
    joint = tarp(samples, truth, summaries=summaries)
    labels = _names(flat_truth.shape[1], names)
    rows = [{"quantity": labels[i], "log_gamma": float(calibration["log_gamma"][i]),
             "sbc": "ok" if not calibration["outside"][i] else "miscalibrated",
             "calibration_error": float(errors[i]), "coverage_90": float(covered["observed"][0, i]),
             "contraction": float(np.mean(shrink["contraction"][:, i])),
             "z_mean": float(np.mean(shrink["z"][:, i])), "z_sd": float(np.std(shrink["z"][:, i])),
             "r2": float(recovered["r2"][i])} for i in range(len(labels))]
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|:---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(r["quantity"] if k == "quantity" else r[k] if isinstance(r[k], str) else f"{r[k]:.3f}"
                                for k in header) + " |" for r in rows]
    lines.append(f"\nTARP error (joint): {joint['error']:.3f} (calibrated: below about "
                 f"{1.36 / math.sqrt(len(flat_truth)):.3f}); 90% intervals expect "
                 f"{covered['levels'][0]:.3f} coverage +- {covered['interval'][0, 0]:.3f}.")
    result.update(table="\n".join(lines), rows=rows, tarp_error=joint["error"], figure=None)
    if plot:
        result["figure"] = _diagnose_figure(calibration, recovered, shrink, joint, labels)
    return result


def _diagnose_figure(calibration, recovered, shrink, joint, labels):
    """One figure: ECDF differences, recovery, z-score against contraction (a row each,
    a column per quantity, at most 6), and TARP."""
    import matplotlib.pyplot as plt

    shown = min(len(labels), 6)
    fig, axes = plt.subplots(3, shown + 1, figsize=(2.5 * (shown + 1), 7.2), squeeze=False)
    for i in range(shown):
        plot_sbc({**calibration, "ecdf_difference": calibration["ecdf_difference"][:, i:i + 1],
                  "outside": calibration["outside"][i:i + 1]}, [labels[i]], ax=axes[0, i])
        plot_recovery({"mean": recovered["mean"][:, i:i + 1], "truth": recovered["truth"][:, i:i + 1],
                       "r2": recovered["r2"][i:i + 1]}, [labels[i]], ax=axes[1, i])
        plot_contraction({"contraction": shrink["contraction"][:, i:i + 1], "z": shrink["z"][:, i:i + 1]},
                         [labels[i]], ax=axes[2, i])
    plot_tarp(joint, ax=axes[0, shown])
    axes[1, shown].set_visible(False)
    axes[2, shown].set_visible(False)
    fig.tight_layout()
    return fig
