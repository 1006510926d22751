"""Calibration statistics of posterior draws: SBC ranks and band, coverage, contraction,
recovery and TARP."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _flatten(draws, truth, summaries):
    draws, truth = np.asarray(draws), np.asarray(truth)
    if draws.ndim < 2 or truth.shape[0] != draws.shape[0] or truth.shape[1:] != draws.shape[2:]:
        raise ValueError(f"expected draws (N, L, *event) and truth (N, *event); got draws {draws.shape} and "
                         f"truth {truth.shape}.")
    if 0 in draws.shape:
        raise ValueError(f"expected at least one observation, one draw and one quantity; got draws {draws.shape}.")
    if summaries is not None:
        draws, truth = np.asarray(summaries(draws)), np.asarray(summaries(truth))
    n, draws_per = draws.shape[:2]
    return draws.reshape(n, draws_per, -1), truth.reshape(n, -1)


def sbc_ranks(draws, truth, summaries: Callable | None = None) -> np.ndarray:
    """Ranks of the truth among the draws: ``(N, D)`` integers in ``0 ... L``.

    For a calibrated posterior the ranks are uniform on ``0 ... L`` (Talts et al., 2018).
    """
    draws, truth = _flatten(draws, truth, summaries)
    return np.sum(draws < truth[:, None, :], axis=1)


def _below_counts(ranks, draws: int) -> np.ndarray:
    """``counts[..., i - 1]`` = how many of the ranks (last axis) are below ``i``, for
    ``i = 1 ... draws``: one histogram per row (``np.bincount``) and a cumulative sum, not
    a comparison per point."""
    rows = ranks.reshape(-1, ranks.shape[-1])
    offsets = (draws + 1) * np.arange(rows.shape[0])[:, None]
    hist = np.bincount((rows + offsets).ravel(), minlength=rows.shape[0] * (draws + 1))
    counts = np.cumsum(hist.reshape(rows.shape[0], draws + 1), axis=1)[:, :draws]
    return counts.reshape(*ranks.shape[:-1], draws)


def _binomial_tails(n: int, z: np.ndarray):
    """Tables ``(cdf, upper)``, each ``(K, n + 1)``: ``P(X <= k)`` and ``P(X >= k)`` for
    ``X ~ Binomial(n, z_i)``, from the log-pmf (one table look-up per count afterwards,
    instead of an incomplete beta function per count and point)."""
    from scipy.special import gammaln

    k = np.arange(n + 1)
    log_pmf = (gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) + k * np.log(z)[:, None]
               + (n - k) * np.log1p(-z)[:, None])
    pmf = np.exp(log_pmf)
    # Each tail summed from its own end: small tail probabilities keep their precision.
    return np.minimum(np.cumsum(pmf, axis=1), 1.0), np.minimum(np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1], 1.0)


def _gamma(counts, tables) -> np.ndarray:
    """Säilynoja et al.'s statistic of ECDF counts ``(..., K)``: twice the smallest
    two-sided binomial tail probability over the ``K`` points."""
    cdf, upper = tables
    points = np.arange(counts.shape[-1])
    return 2 * np.minimum(cdf[points, counts], upper[points, counts]).min(axis=-1)


def _null_gamma(n: int, draws: int, simulations: int, seed: int, tables) -> np.ndarray:
    """The statistic for ``simulations`` sets of ``n`` exactly uniform ranks on ``0 ... draws``."""
    ranks = np.random.default_rng(seed).integers(0, draws + 1, size=(simulations, n))
    return _gamma(_below_counts(ranks, draws), tables)


def ecdf_band(n: int, draws: int, confidence: float = 0.95, *, simulations: int = 2000, seed: int = 0):
    """Simultaneous band for the ECDF difference of ``n`` uniform ranks on ``0 ... draws``.

    Säilynoja, Bürkner and Vehtari (2022): at the points ``z_i = i / (L + 1)``, ``n`` times
    the ECDF is Binomial(n, z_i) under uniformity; the pointwise level ``gamma`` is lowered
    (by simulation) until the band holds all ``K`` points at once with probability
    ``confidence``.

    Returns:
        ``(z, lower, upper)``, each ``(K,)``: the band of ``ECDF(z) - z``.
    """
    return _band(n, draws, confidence, simulations, seed)[:3]


def _band(n: int, draws: int, confidence: float, simulations: int, seed: int):
    """``(z, lower, upper, gamma_crit, tables)`` of :func:`ecdf_band`."""
    from scipy.stats import binom

    if not 0 < confidence < 1:
        raise ValueError(f"ecdf_band: confidence must be in (0, 1), got {confidence}.")
    z = np.arange(1, draws + 1) / (draws + 1)
    tables = _binomial_tails(n, z)
    gamma = np.quantile(_null_gamma(n, draws, simulations, seed, tables), 1 - confidence)
    lower = binom.ppf(gamma / 2, n, z) / n - z
    upper = binom.ppf(1 - gamma / 2, n, z) / n - z
    return z, lower, upper, gamma, tables


def sbc(draws, truth, *, confidence: float = 0.95, summaries: Callable | None = None, simulations: int = 2000,
        seed: int = 0) -> dict:
    """Simulation-based calibration with the simultaneous ECDF-difference band.

    Returns:
        ``{"ranks": (N, D), "z": (K,), "ecdf_difference": (K, D), "lower": (K,),
        "upper": (K,), "outside": (D,) bool, "calibrated": bool, "log_gamma": (D,)}``: a
        quantity is miscalibrated where its ECDF difference leaves the band anywhere;
        ``calibrated`` is True when none does (for several quantities the band is per
        quantity, so with ``D`` of them the chance that a calibrated model fails
        somewhere is up to ``1 - confidence**D``). ``log_gamma`` is the same test as one
        number per quantity (Säilynoja et al. 2022; BayesFlow's
        ``calibration_log_gamma``): ``log(gamma / gamma_crit)``, the statistic over its
        critical value under uniform ranks at ``1 - confidence``; below 0 is
        miscalibrated.
    """
    ranks = sbc_ranks(draws, truth, summaries)
    n, draws_per = ranks.shape[0], np.asarray(draws).shape[1]
    z, lower, upper, critical, tables = _band(n, draws_per, confidence, simulations, seed)
    counts = _below_counts(ranks.T, draws_per)  # (D, K)
    difference = counts.T / n - z[:, None]
    outside = np.any((difference < lower[:, None] - 1e-12) | (difference > upper[:, None] + 1e-12), axis=0)
    with np.errstate(divide="ignore"):
        log_gamma = np.log(_gamma(counts, tables)) - np.log(critical)
    return {"ranks": ranks, "z": z, "ecdf_difference": difference, "lower": lower, "upper": upper,
            "outside": outside, "calibrated": bool(not outside.any()), "log_gamma": log_gamma}


def calibration_error(draws, truth, *, resolution: int = 20, summaries: Callable | None = None) -> np.ndarray:
    """One number per quantity: the median absolute difference between observed and
    expected coverage of central credible intervals over ``resolution`` levels from 0.005
    to 0.995 (BayesFlow's ``calibration_error``), with the exact levels of
    :func:`coverage`. 0 is perfect; a calibrated posterior's error is of the order of
    ``1 / sqrt(N)``; over- or under-confidence raise it (at most 0.5).

    Returns:
        ``(D,)``.
    """
    result = coverage(draws, truth, np.linspace(0.005, 0.995, resolution), summaries)
    return np.median(np.abs(result["observed"] - result["levels"][:, None]), axis=0)


def coverage(draws, truth, levels=(0.5, 0.8, 0.9, 0.95), summaries: Callable | None = None) -> dict:
    """Observed coverage of central credible intervals.

    The central interval of level ``q`` among ``L`` draws runs from the ``a``-th to the
    ``(L - a)``-th smallest draw, ``a = round((L + 1)(1 - q) / 2)``; the truth is inside
    when its SBC rank is in ``a ... L - a``, which for a calibrated posterior happens with
    probability exactly ``(L + 1 - 2a) / (L + 1)``, the level reported (interpolated sample
    quantiles would cover less than ``q``).

    Returns:
        ``{"levels": (M,), "observed": (M, D), "interval": (M, D)}``, ``interval`` the
        half-width of the binomial 95% interval around each level for ``N``
        observations. A calibrated posterior's observed coverage is its level up to that
        interval; an over-confident one's falls below.
    """
    ranks = sbc_ranks(draws, truth, summaries)
    n, draws_per = ranks.shape[0], np.asarray(draws).shape[1]
    levels = np.asarray(levels, float)
    if np.any((levels <= 0) | (levels >= 1)):
        raise ValueError(f"coverage: levels must be in (0, 1), got {levels.tolist()}.")
    low = np.round((draws_per + 1) * (1 - levels) / 2).astype(int)
    actual = (draws_per + 1 - 2 * low) / (draws_per + 1)
    observed = np.stack([np.mean((ranks >= a) & (ranks <= draws_per - a), axis=0) for a in low])
    half = 1.96 * np.sqrt(actual * (1 - actual) / n)
    return {"levels": actual, "observed": observed, "interval": np.repeat(half[:, None], ranks.shape[1], axis=1)}


def contraction(draws, truth, prior_variance, summaries: Callable | None = None) -> dict:
    """Posterior contraction ``1 - var_post / var_prior`` and z-scores ``(mean - truth) / sd``.

    Schad et al. (2021): a good posterior contracts (near 1) and has z-scores near 0 with
    spread about 1; large |z| with high contraction is over-confidence.

    Args:
        prior_variance: the prior's variance of each quantity, ``(D,)`` or a scalar.

    Returns:
        ``{"contraction": (N, D), "z": (N, D)}``.
    """
    draws, truth = _flatten(draws, truth, summaries)
    mean, var = draws.mean(axis=1), draws.var(axis=1, ddof=1)
    prior_variance = np.broadcast_to(np.asarray(prior_variance, float), truth.shape[1:])
    return {"contraction": 1 - var / prior_variance, "z": (mean - truth) / np.sqrt(var)}


def recovery(draws, truth, summaries: Callable | None = None) -> dict:
    """Posterior means against the truth.

    Returns:
        ``{"mean": (N, D), "truth": (N, D), "r2": (D,)}``, ``r2`` the coefficient of
        determination of the truth by the posterior mean.
    """
    draws, truth = _flatten(draws, truth, summaries)
    mean = draws.mean(axis=1)
    residual = np.sum((truth - mean) ** 2, axis=0)
    total = np.sum((truth - truth.mean(axis=0)) ** 2, axis=0)
    return {"mean": mean, "truth": truth, "r2": 1 - residual / np.maximum(total, 1e-300)}


def tarp(draws, truth, *, levels: int = 50, references=None, seed: int = 0,
         summaries: Callable | None = None) -> dict:
    """Joint calibration by tests of accuracy with random points (TARP; Lemos et al., 2023).

    For each observation a reference point ``r_i`` is drawn (uniformly over the box the
    truths span, after scaling every quantity to ``[0, 1]`` by it), and ``f_i`` is the
    fraction of its draws closer to ``r_i`` than its truth is. For a calibrated posterior
    ``f_i`` is uniform, so the expected coverage ``ECP(alpha) = mean(f_i <= alpha)`` is
    ``alpha`` for every ``alpha``: a test of the whole joint posterior, not one quantity at
    a time (SBC and coverage are marginal). Below the diagonal is over-confidence, above
    under-confidence (at one reference distribution; the paper proves the converse for
    all of them).

    Args:
        draws: ``(N, L, *event)``; truth: ``(N, *event)``.
        levels: the grid of ``alpha``, ``levels + 1`` points from 0 to 1.
        references: ``None`` (random, as above), or ``(N, *event)`` points of your own
            (e.g. prior draws), in the data's units.
        seed: the references' randomness.
        summaries: as for :func:`sbc`.

    Returns:
        ``{"alpha": (levels + 1,), "ecp": (levels + 1,), "coverage": (N,), "error":
        float}``: ``error`` is ``max |ECP - alpha|``, about ``1.36 / sqrt(N)`` at most for a
        calibrated posterior (95%; the Kolmogorov-Smirnov bound of uniform ``f_i``).
    """
    draws, truth = _flatten(draws, truth, summaries)
    low, high = truth.min(axis=0), truth.max(axis=0)
    scale = np.where(high > low, high - low, 1.0)
    d, t = (draws - low) / scale, (truth - low) / scale
    if references is None:
        r = np.random.default_rng(seed).uniform(0.0, 1.0, size=t.shape)
    else:
        references = np.asarray(references, float)
        if references.size != t.size or references.shape[:1] != t.shape[:1]:
            raise ValueError(f"tarp: references must have the truth's shape ({len(t)}, ...) with "
                             f"{t.shape[1]} quantities each, got {references.shape}.")
        references = references.reshape(t.shape)
        r = (references - low) / scale
    closer = np.linalg.norm(d - r[:, None], axis=-1) < np.linalg.norm(t - r, axis=-1)[:, None]  # (N, L)
    f = closer.mean(axis=1)
    alpha = np.linspace(0.0, 1.0, levels + 1)
    ecp = np.mean(f[None, :] <= alpha[:, None] + 1e-12, axis=1)
    return {"alpha": alpha, "ecp": ecp, "coverage": f, "error": float(np.max(np.abs(ecp - alpha)))}
