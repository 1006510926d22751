"""Calibration and accuracy diagnostics for amortized posteriors.

Given posterior draws for held-out simulated pairs ``(truth, observation)``:

- simulation-based calibration (Talts et al., 2018): ranks of the truth among the draws,
  with the simultaneous ECDF-difference band of Säilynoja, Bürkner and Vehtari (2022);
- coverage of central credible intervals (expected vs observed);
- posterior contraction and z-scores (Schad, Betancourt and Vasishth, 2021);
- parameter recovery (posterior mean vs truth).

Every function takes ``draws`` of shape ``(N, L, *event)`` (``L`` draws for each of ``N``
observations) and ``truth`` of shape ``(N, *event)``; the event axes are flattened to
``D`` quantities, or mapped to chosen scalars by ``summaries`` (e.g. region means of an
image): ``summaries(v) -> (..., D)`` for ``v`` of shape ``(..., *event)``.
:func:`posterior_draws` makes the draws in one jitted call. The ``plot_*`` functions need
matplotlib.
"""

from ._calibration import calibration_error, contraction, coverage, ecdf_band, recovery, sbc, sbc_ranks, tarp
from ._diagnose import diagnose
from ._draws import _draw as _draw  # the compiled draw, for the tests and benchmarks that lower it
from ._draws import posterior_draws
from ._plots import (
    plot_contraction,
    plot_coverage,
    plot_losses,
    plot_pairs,
    plot_rank_histogram,
    plot_recovery,
    plot_sbc,
    plot_tarp,
)
from ._two_sample import c2st, misspecification_test, mmd

__all__ = [
    "c2st",
    "calibration_error",
    "contraction",
    "coverage",
    "diagnose",
    "ecdf_band",
    "misspecification_test",
    "mmd",
    "plot_contraction",
    "plot_coverage",
    "plot_losses",
    "plot_pairs",
    "plot_rank_histogram",
    "plot_recovery",
    "plot_sbc",
    "plot_tarp",
    "posterior_draws",
    "recovery",
    "sbc",
    "sbc_ranks",
    "tarp",
]

