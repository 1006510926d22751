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

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_key
from ._devices import split_like_batch
from ._ensemble import Ensemble
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


def posterior_draws(flow, cond, draws: int, event_shape: tuple[int, ...], *, key,
                    batch_size: int | None = None, mesh=None) -> jax.Array:
    """``draws`` posterior samples for each of the ``N`` conditions, in one jitted, batched call.

    No Python loop over observations: one compiled program draws all ``N * L`` latents
    and runs the flow's inverse on them, ``batch_size`` samples at a time (a ``lax.map``
    over groups of whole observations), so its working memory is that of one
    ``flow.sample`` call on ``batch_size`` samples, whatever ``N`` is; the inverse stores
    no activations. For a ``Summarized`` model (also inside ``Standardized`` or
    ``Constrained``) the summary network runs once per observation, not once per draw.
    Observation ``i``'s draws are those of
    ``flow.sample(jax.random.fold_in(key, i), (L, *event_shape), its condition repeated)``,
    whatever ``batch_size``.

    An :class:`invjax.Ensemble` of ``K`` flows: each member draws all ``N * L`` samples
    (member ``k`` from the ``k + 1``-th of ``jax.random.split(key, K + 1)``) and each draw
    keeps one member's, chosen uniformly at random: the mixture's draws, at ``K`` times
    the work and the memory of the result.

    Args:
        flow: a conditional flow (or ``Summarized`` model), or an :class:`invjax.Ensemble`
            of them.
        cond: ``N`` conditions (observations for ``Summarized``), batch first.
        draws: ``L``, samples per condition.
        event_shape: the shape of one sample ``x`` (without the batch).
        key: PRNG key.
        batch_size: samples per inverse pass (rounded down to whole observations, at
            least ``L``); ``None``: all ``N * L`` in one pass.
        mesh: ``None``, or an :func:`invjax.device_mesh` to draw split over its devices
            (as :meth:`invjax.AbstractFlow.sample` with ``mesh=``): each pass's latents
            and conditions laid out like a batch (samples, and space for image or
            volume samples), the observations of a ``Summarized`` model split over space
            while it summarises them. The flow should be on the mesh
            (:func:`invjax.replicate`); the draws equal one device's.

    Returns:
        ``(N, L, *event_shape)``.

    Example:
        >>> import jax, invjax as ij
        >>> from invjax import diagnostics as dx
        >>> flow = ij.nets.RealNVP(2, depth=2, hidden=8, cond_channels=2, key=jax.random.key(0))
        >>> y = jax.numpy.ones((100, 2))
        >>> dx.posterior_draws(flow, y, 500, (2,), key=jax.random.key(1), batch_size=5000).shape
        (100, 500, 2)
    """
    leaves = jax.tree.leaves(cond)
    if not leaves or any(getattr(c, "ndim", 0) < 1 for c in leaves):
        raise ValueError("posterior_draws: cond must be N conditions (arrays with a batch axis), got "
                         f"{type(cond).__name__}.")
    n = leaves[0].shape[0]
    if any(c.shape[0] != n for c in leaves):
        raise ValueError(f"posterior_draws: every array of cond needs the same batch size, got "
                         f"{[c.shape[0] for c in leaves]}.")
    if draws < 1:
        raise ValueError(f"posterior_draws: draws must be >= 1, got {draws}.")
    check_key("posterior_draws", key)
    if batch_size is not None and batch_size < draws:
        raise ValueError(f"posterior_draws: batch_size must hold the draws of one observation (>= {draws}), got "
                         f"{batch_size}.")
    per_pass = n if batch_size is None else max(1, min(n, batch_size // draws))
    if isinstance(flow, Ensemble):  # every member draws all; each draw keeps one member's
        return flow.mix(key, lambda member, k: _draw(member, cond, k, draws, tuple(event_shape), per_pass, mesh),
                        batch_ndim=2)
    return _draw(flow, cond, key, draws, tuple(event_shape), per_pass, mesh)


def _split_condition(flow):
    """``(prepare, rest)``: the work ``flow`` does on a condition before its conditional flow
    (a summary network, standardization; ``None`` if none) and the model that takes its
    result, ``rest.inverse(z, prepare(y)) == flow.inverse(z, y)``, so that ``prepare`` runs
    once per observation, not once per draw. Wrappers other than ``Standardized`` (which
    rescales the condition) pass the condition through unchanged."""
    from ._flow import AbstractWrappedFlow
    from .nets import Standardized, Summarized

    if isinstance(flow, Summarized):
        return flow.condition, flow.flow
    if not isinstance(flow, AbstractWrappedFlow):
        return None, flow
    inner, rest = _split_condition(flow.flow)
    if isinstance(flow, Standardized):
        prepare = flow.condition if inner is None else (lambda y: inner(flow.condition(y)))
        return prepare, Standardized(rest, flow.x_mean, flow.x_std)
    return inner, eqx.tree_at(lambda m: m.flow, flow, rest)


@eqx.filter_jit
def _draw(flow, cond, key, draws: int, event_shape: tuple[int, ...], per_pass: int, mesh=None):
    prepare, rest = _split_condition(flow)
    if prepare is not None:  # summarise (standardize) each observation once, not once per draw
        cond = split_like_batch(cond, mesh, "posterior_draws", samples=False)  # images split over space
        cond, flow = prepare(cond), rest
    n = jax.tree.leaves(cond)[0].shape[0]
    passes = -(-n // per_pass)
    grouped = lambda v: jnp.pad(v, [(0, passes * per_pass - n)] + [(0, 0)] * (v.ndim - 1)).reshape(
        passes, per_pass, *v.shape[1:])

    def one_pass(group):
        index, cond_group = group
        # Observation i's latents come from fold_in(key, i): the same draws whatever the
        # passes, and only one pass's latents exist at a time.
        z = jax.vmap(lambda i: flow.base.sample(jax.random.fold_in(key, i), (draws, *event_shape), flow.dtype))(index)
        repeated = jax.tree.map(lambda c: jnp.repeat(c, draws, axis=0), cond_group)
        z, cond_group = split_like_batch((z.reshape(per_pass * draws, *event_shape), repeated), mesh,
                                         "posterior_draws")
        x = flow.inverse(z, cond_group)
        return x.reshape(per_pass, draws, *event_shape)

    x = jax.lax.map(one_pass, (jnp.arange(passes * per_pass).reshape(passes, per_pass), jax.tree.map(grouped, cond)))
    return x.reshape(passes * per_pass, draws, *event_shape)[:n]


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
