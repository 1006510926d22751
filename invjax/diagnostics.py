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

__all__ = [
    "contraction",
    "coverage",
    "ecdf_band",
    "plot_contraction",
    "plot_coverage",
    "plot_recovery",
    "plot_sbc",
    "posterior_draws",
    "recovery",
    "sbc",
    "sbc_ranks",
]


def posterior_draws(flow, cond, draws: int, event_shape: tuple[int, ...], *, key,
                    batch_size: int | None = None, mesh=None) -> jax.Array:
    """``draws`` posterior samples for each of the ``N`` conditions, in one jitted, batched call.

    No Python loop over observations: one compiled program draws all ``N * L`` latents
    and runs the flow's inverse on them, ``batch_size`` samples at a time (a ``lax.map``
    over groups of whole observations), so its working memory is that of one
    ``flow.sample`` call on ``batch_size`` samples, whatever ``N`` is; the inverse stores
    no activations. For a ``Summarized`` model the summary network runs once per
    observation, not once per draw. Observation ``i``'s draws are those of
    ``flow.sample(jax.random.fold_in(key, i), (L, *event_shape), its condition repeated)``,
    whatever ``batch_size``.

    Args:
        flow: a conditional flow (or ``Summarized`` model).
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
    return _draw(flow, cond, key, draws, tuple(event_shape), per_pass, mesh)


@eqx.filter_jit
def _draw(flow, cond, key, draws: int, event_shape: tuple[int, ...], per_pass: int, mesh=None):
    from .nets import Summarized

    if isinstance(flow, Summarized):  # summarise each observation once, not once per draw
        cond = split_like_batch(cond, mesh, "posterior_draws", samples=False)  # images split over space
        cond, flow = flow.condition(cond), flow.flow
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


def ecdf_band(n: int, draws: int, confidence: float = 0.95, *, simulations: int = 2000, seed: int = 0):
    """Simultaneous band for the ECDF difference of ``n`` uniform ranks on ``0 ... draws``.

    Säilynoja, Bürkner and Vehtari (2022): at the points ``z_i = i / (L + 1)``, ``n`` times
    the ECDF is Binomial(n, z_i) under uniformity; the pointwise level ``gamma`` is lowered
    (by simulation) until the band holds all ``K`` points at once with probability
    ``confidence``.

    Returns:
        ``(z, lower, upper)``, each ``(K,)``: the band of ``ECDF(z) - z``.
    """
    from scipy.stats import binom

    if not 0 < confidence < 1:
        raise ValueError(f"ecdf_band: confidence must be in (0, 1), got {confidence}.")
    z = np.arange(1, draws + 1) / (draws + 1)
    rng = np.random.default_rng(seed)
    ranks = rng.integers(0, draws + 1, size=(simulations, n))
    counts = np.stack([np.sum(ranks < i, axis=1) for i in range(1, draws + 1)], axis=1)  # (S, K)
    tails = np.minimum(binom.cdf(counts, n, z), binom.sf(counts - 1, n, z))
    gamma = np.quantile(2 * tails.min(axis=1), 1 - confidence)
    lower = binom.ppf(gamma / 2, n, z) / n - z
    upper = binom.ppf(1 - gamma / 2, n, z) / n - z
    return z, lower, upper


def sbc(draws, truth, *, confidence: float = 0.95, summaries: Callable | None = None) -> dict:
    """Simulation-based calibration with the simultaneous ECDF-difference band.

    Returns:
        ``{"ranks": (N, D), "z": (K,), "ecdf_difference": (K, D), "lower": (K,),
        "upper": (K,), "outside": (D,) bool, "calibrated": bool}``: a quantity is
        miscalibrated where its ECDF difference leaves the band anywhere; ``calibrated`` is
        True when none does (for several quantities the band is per quantity, so with
        ``D`` of them the chance that a calibrated model fails somewhere is up to
        ``1 - confidence**D``).
    """
    ranks = sbc_ranks(draws, truth, summaries)
    n, draws_per = ranks.shape[0], np.asarray(draws).shape[1]
    z, lower, upper = ecdf_band(n, draws_per, confidence)
    ecdf = np.stack([np.mean(ranks < i, axis=0) for i in range(1, draws_per + 1)])  # (K, D)
    difference = ecdf - z[:, None]
    outside = np.any((difference < lower[:, None] - 1e-12) | (difference > upper[:, None] + 1e-12), axis=0)
    return {"ranks": ranks, "z": z, "ecdf_difference": difference, "lower": lower, "upper": upper,
            "outside": outside, "calibrated": bool(not outside.any())}


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
