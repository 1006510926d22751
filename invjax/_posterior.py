"""``fit_posterior``: neural posterior estimation in one call, and the ``Posterior`` it returns.

The recipe is the one that scores at or below the published NPE on every sbibm row
(``docs/benchmarks.md``): sbi's neural spline flow (ActNorm, an LU linear map and a
rational-quadratic spline coupling with a residual conditioner per step), standardized
parameters and observations, Adam in stages of decreasing learning rate each stopped
early on a held-out set, an ensemble of flows from their own keys, and draws kept inside
the prior's support by rejection.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from . import layers, nets
from ._checks import check_finite, check_int, check_key
from ._ensemble import Ensemble
from ._fit import fit
from ._flow import AbstractFlow
from ._priors import prior_bounds
from ._strict import AbstractStrictModule
from ._within import sample_within


class Posterior(AbstractStrictModule):
    """An amortized posterior ``q(theta | x)`` whose draws stay inside the prior's support.

    Returned by :func:`invjax.fit_posterior`; saved and loaded like any model
    (:func:`invjax.save`, :func:`invjax.load`).

    Attributes:
        model: the trained flow, or the :class:`invjax.Ensemble` of them (each a
            ``Standardized`` model, with its summary network if it has one).
        lower: ``(D,)`` the prior's lower bounds (``-inf`` where unbounded).
        upper: ``(D,)`` its upper bounds (``inf`` where unbounded).
        observation_shape: the shape of one observation ``x``.
        history: one ``(member, stage, steps, best validation loss)`` per stage of training.
    """

    model: AbstractFlow | Ensemble
    lower: Array
    upper: Array
    observation_shape: tuple[int, ...] = eqx.field(static=True)
    history: tuple[tuple[int, int, int, float], ...] = eqx.field(static=True, default=())

    def _observations(self, name: str, x, n: int | None):
        x = jnp.asarray(x, self.lower.dtype)
        obs = self.observation_shape
        if x.shape == obs:
            x = x[None]
        if x.shape[1:] != obs or (n is not None and x.shape[0] not in (1, n)):
            batch = "1" if n is None else f"1 or {n}"
            raise ValueError(f"Posterior.{name}: expected an observation of shape {obs} or ({batch}, "
                             f"{', '.join(map(str, obs))}), got shape {x.shape}.")
        return x

    def sample(self, key: PRNGKeyArray, n: int, x, *, max_rounds: int = 100) -> Float[Array, "n D"]:
        """``n`` draws from the posterior of one observation ``x``, each inside the prior's support.

        Draws outside the prior's box are drawn again (:func:`invjax.sample_within`), so
        they follow the flow's density truncated to the support.

        Args:
            key: a PRNG key.
            n: the number of draws.
            x: one observation, of shape ``observation_shape`` or ``(1, *observation_shape)``.
            max_rounds: the most rejection rounds (a ``ValueError`` names the share of
                draws inside when they are not enough).

        Returns:
            ``(n, D)`` parameters.
        """
        check_key("Posterior.sample", key)
        check_int("Posterior.sample", "n", n, 0)
        x = self._observations("sample", x, None)
        cond = jnp.broadcast_to(x, (n, *self.observation_shape))
        return sample_within(self.model, key, (n, self.lower.shape[0]), cond, lower=self.lower, upper=self.upper,
                             max_rounds=max_rounds)

    def log_prob(self, theta: Float[Array, "N D"], x) -> Float[Array, " N"]:
        """The flow's log density of ``theta`` given ``x``, and ``-inf`` outside the prior's support.

        Inside the support this is ``log q(theta | x)`` as trained, not renormalised by the
        mass ``q`` puts outside the support (which :meth:`sample` discards): the truncated
        density is this plus ``-log P_q(support | x)``, a constant per observation (sbi's
        ``DirectPosterior`` estimates it by sampling). Differences between parameters of
        the same observation, and ratios to the prior, are exact.

        Args:
            theta: ``(N, D)`` parameters.
            x: ``(N, *observation_shape)`` observations, or one observation for every ``theta``.
        """
        theta = jnp.asarray(theta, self.lower.dtype)
        d = self.lower.shape[0]
        if theta.ndim != 2 or theta.shape[1] != d:
            raise ValueError(f"Posterior.log_prob: expected parameters of shape (N, {d}), got shape {theta.shape}.")
        x = self._observations("log_prob", x, theta.shape[0])
        x = jnp.broadcast_to(x, (theta.shape[0], *self.observation_shape))
        inside = jnp.all((theta > self.lower) & (theta < self.upper), axis=1)
        return jnp.where(inside, self.model.log_prob(theta, x), -jnp.inf)


def spline_flow(dim: int, cond_channels: int, *, key: PRNGKeyArray, depth: int = 5, hidden: int = 64,
                blocks: int = 2, bins: int = 8, bound: float = 6.0) -> AbstractFlow:
    """sbi's neural spline flow for parameter vectors ``(N, dim)`` given conditions ``(N, cond_channels)``.

    Each of ``depth`` steps: ActNorm, a learned linear map (LU) and a rational-quadratic
    spline coupling (``bins`` bins on ``[-bound, bound]``, identity outside) whose
    conditioner is a residual network (``hidden`` wide, ``blocks`` blocks). For ``dim = 1``
    the coupling has no untouched half: use a flow of your own (``make_flow``).

    Args:
        dim: the parameters' dimension ``D``.
        cond_channels: the condition's size (the observation's, or its summary's).
        key: a PRNG key for the initialisation.
        depth: flow steps.
        hidden: the conditioners' width.
        blocks: the conditioners' residual blocks.
        bins: the splines' bins.
        bound: the splines' range ``[-bound, bound]``.
    """
    def conditioner(i, o, *, key):
        return layers.ResidualMLP(i, o, hidden, blocks=blocks, key=key)

    return nets.Glow(dim, 1, depth, hidden, spatial_dims=0, split_scales=False, cond_channels=cond_channels,
                     key=key, transform=layers.RationalQuadraticSpline(bins=bins, bound=bound),
                     make_conditioner=conditioner)


def _prior_dim(prior) -> int | None:
    for attribute in ("lower", "mean"):
        value = getattr(prior, attribute, None)
        if value is not None and np.ndim(value) == 1:
            return int(np.shape(value)[0])
    dim = getattr(prior, "dim", None)
    return dim if isinstance(dim, int) else None


def _simulations(theta, x, prior, simulator, budget, dim, k_prior, k_sim):
    """The training pairs: given, or ``budget`` parameters from the prior and their simulations."""
    if simulator is None:
        if theta is None or x is None or budget is not None:
            raise ValueError("fit_posterior: give simulations (theta, x), or a simulator and a budget.")
        return jnp.asarray(theta), jnp.asarray(x)
    if theta is not None or x is not None:
        raise ValueError("fit_posterior: give simulations (theta, x) or a simulator, not both.")
    if not callable(simulator):
        raise ValueError(f"fit_posterior: simulator must be callable as simulator(key, theta), got "
                         f"{type(simulator).__name__}.")
    check_int("fit_posterior", "budget", budget, 2)
    if dim is None:
        raise ValueError("fit_posterior: cannot tell the prior's dimension; give a prior with lower/upper or mean "
                         "vectors (ij.BoxUniform, ij.Normal) or a dim attribute.")
    theta = prior.sample(k_prior, (budget, dim))
    return theta, simulator(k_sim, theta)


def _check_pairs(theta, x, dim):
    if theta.ndim != 2:
        raise ValueError(f"fit_posterior: expected parameters theta of shape (N, D), got shape {theta.shape}.")
    if dim is not None and theta.shape[1] != dim:
        raise ValueError(f"fit_posterior: the prior has dimension {dim}, the parameters {theta.shape[1]}.")
    if x.ndim < 2 or x.shape[0] != theta.shape[0]:
        raise ValueError(f"fit_posterior: expected observations x of shape (N, ...) with N = {theta.shape[0]} as "
                         f"theta's, got shape {x.shape}.")
    for name, a in (("theta", theta), ("x", x)):
        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise ValueError(f"fit_posterior: {name} must be floating-point, got {a.dtype}.")
        check_finite("fit_posterior", a, name)


def _stages(rates, weight_decay, optimizer):
    """The optimizer of each stage: Adam (AdamW with weight decay) per rate after clipping at 10, or ``optimizer``."""
    if optimizer is not None:
        return [optimizer]
    adam = (lambda r: optax.adamw(r, weight_decay=weight_decay)) if weight_decay else optax.adam
    return [optax.chain(optax.clip_by_global_norm(10.0), adam(rate)) for rate in rates]


def _train_one(model, theta, x, held, kept, key, stages, *, patience, batch_size, max_epochs, devices, progress):
    """One flow trained in stages, each from the best flow so far; the flow and ``(stage, steps, best loss)``s."""
    epoch = max(1, len(kept) // batch_size)
    best, log = (math.inf, model), []
    for stage, opt in enumerate(stages):
        trained, history = fit(best[1], theta[kept], x[kept], key=jr.fold_in(key, stage), steps=max_epochs * epoch,
                               batch_size=batch_size, validation=(theta[held], x[held]), eval_every=epoch,
                               patience=patience[0] if stage == 0 else patience[1], initialize=stage == 0,
                               progress=progress, devices=devices, optimizer=opt)
        val = min(v for _, v in history["val"])
        log.append((stage, len(history["train"]), float(val)))
        if val < best[0]:
            best = (val, trained)
    return best[1], log


def fit_posterior(
    theta=None,
    x=None,
    *,
    prior,
    key: PRNGKeyArray,
    simulator: Callable | None = None,
    budget: int | None = None,
    summary: eqx.Module | None = None,
    members: int = 3,
    depth: int = 5,
    hidden: int = 64,
    blocks: int = 2,
    bins: int = 8,
    bound: float = 6.0,
    make_flow: Callable | None = None,
    rates: Sequence[float] = (5e-4, 1e-4, 2e-5),
    weight_decay: float = 0.0,
    optimizer: optax.GradientTransformation | None = None,
    constrain: bool = False,
    patience: tuple[int, int] = (20, 10),
    batch_size: int = 256,
    max_epochs: int = 200,
    validation: float = 0.1,
    devices=None,
    progress: bool = False,
) -> Posterior:
    """Neural posterior estimation in one call: simulations and a prior in, a :class:`Posterior` out.

    What it does (each step an argument): draws ``budget`` parameters from ``prior`` and
    simulates them, unless given ``(theta, x)``; holds out ``validation`` of the pairs;
    builds ``members`` flows (:func:`spline_flow`, or ``make_flow``), each behind
    ``summary`` when given and inside :class:`invjax.nets.Standardized` (statistics of
    the training pairs); trains each with :func:`invjax.fit` in stages, one per learning
    rate in ``rates``, each stage from the best flow so far and stopped after
    ``patience[0]`` (first stage) or ``patience[1]`` epochs without a better validation
    loss; and returns their mixture (:class:`invjax.Ensemble`) as a :class:`Posterior`
    whose draws stay inside the prior's box. The defaults are those of the sbibm table on
    ``docs/benchmarks.md``.

    Args:
        theta: ``(N, D)`` simulated parameters (with ``x``), or ``None`` with ``simulator``.
        x: ``(N, *observation_shape)`` their simulated observations.
        prior: :class:`invjax.BoxUniform`, :class:`invjax.Normal`, or any object with
            ``sample(key, shape)`` (and ``lower`` / ``upper`` where its support is a box).
        key: a PRNG key: simulations, the validation split, each member's initialisation
            and batches.
        simulator: ``simulator(key, theta) -> x`` for ``(budget, D)`` parameters, instead
            of ``theta`` and ``x``.
        budget: the number of simulations to draw with ``simulator``.
        summary: an Equinox module mapping one observation to a vector (images, sets,
            series: :class:`invjax.nets.DeepSet`, :class:`invjax.nets.TimeSeriesNetwork`,
            a CNN), trained with the flow; ``None`` conditions on ``x`` (vectors).
        members: flows in the ensemble, each from its own key.
        depth: :func:`spline_flow`'s flow steps.
        hidden: its conditioners' width.
        blocks: its conditioners' residual blocks.
        bins: its splines' bins.
        bound: its splines' range ``[-bound, bound]`` (in standardized units).
        make_flow: ``make_flow(dim, cond_channels, key=) -> flow``, a conditional flow to
            use instead of :func:`spline_flow`.
        rates: the learning rate of each stage (Adam after clipping the gradient norm at 10).
        weight_decay: AdamW's decoupled weight decay in every stage (0: Adam).
        optimizer: an optax transformation for one stage instead of ``rates`` (e.g. Adam
            chained with ``optax.contrib.reduce_on_plateau``, which receives the loss).
        constrain: train through :class:`invjax.nets.Constrained` on the prior's box (no
            draw is rejected, but the map bends the posterior) instead of rejecting the
            draws outside it (the default, sbi's way; better on sbibm's two_moons).
        patience: epochs without a better validation loss before a stage stops: the first
            stage's and the later ones'.
        batch_size: pairs per step; an epoch is ``N_train // batch_size`` steps.
        max_epochs: the most epochs per stage.
        validation: the share of the pairs held out, in ``(0, 1)``.
        devices: the devices to train on (:func:`invjax.fit`'s); default all.
        progress: show a progress bar per stage.

    Returns:
        A :class:`Posterior`: ``posterior.sample(key, n, x_o)``, ``posterior.log_prob(theta, x)``.

    Example:
        ```python
        import jax, jax.numpy as jnp, invjax as ij

        prior = ij.BoxUniform(-2.0, 2.0, dim=2)
        simulator = lambda key, theta: theta + 0.1 * jax.random.normal(key, theta.shape)
        posterior = ij.fit_posterior(prior=prior, simulator=simulator, budget=512, key=jax.random.key(0),
                                     members=1, depth=2, hidden=16, max_epochs=2)
        draws = posterior.sample(jax.random.key(1), 100, jnp.array([0.5, -0.5]))  # (100, 2), inside the box
        ```
    """
    check_key("fit_posterior", key)
    for name, value in (("members", members), ("batch_size", batch_size), ("max_epochs", max_epochs)):
        check_int("fit_posterior", name, value, 1)
    if not (isinstance(validation, float | int) and 0 < validation < 1):
        raise ValueError(f"fit_posterior: validation must be a share in (0, 1), got {validation!r}.")
    if optimizer is None and not (len(rates) and all(isinstance(r, float | int) and r > 0 for r in rates)):
        raise ValueError(f"fit_posterior: rates must be positive learning rates, got {rates!r}.")
    dim = _prior_dim(prior)
    k_prior, k_sim, k_flow, k_fit, k_split = jr.split(key, 5)
    theta, x = _simulations(theta, x, prior, simulator, budget, dim, k_prior, k_sim)
    _check_pairs(theta, x, dim)
    # The flows are built in JAX's default float (float32, or float64 under jax_enable_x64),
    # whatever precision the simulator used.
    dtype = jnp.result_type(float)
    theta, x = theta.astype(dtype), x.astype(dtype)
    lower, upper = (b.astype(dtype) for b in prior_bounds("fit_posterior", prior, theta.shape[1]))
    n = theta.shape[0]
    n_held = max(1, int(round(n * validation)))
    order = jr.permutation(k_split, n)
    held, kept = order[:n_held], order[n_held:]
    if summary is None:
        cond_channels = math.prod(x.shape[1:])
        if x.ndim != 2:
            raise ValueError(f"fit_posterior: observations of shape {x.shape[1:]} need a summary network "
                             "(summary=) mapping one to a vector.")
    else:
        cond_channels = int(math.prod(jax.eval_shape(summary, x[0]).shape))
    build = make_flow or (lambda dim, cond, *, key: spline_flow(dim, cond, key=key, depth=depth, hidden=hidden,
                                                                 blocks=blocks, bins=bins, bound=bound))
    constrain = constrain and bool(jnp.any(jnp.isfinite(lower)) or jnp.any(jnp.isfinite(upper)))
    # Standardized on the parameters the flow sees: unbounded ones when trained through Constrained.
    seen = layers.Bounded(lower, upper).forward(theta)[0] if constrain else theta
    stages = _stages(tuple(rates), weight_decay, optimizer)
    flows, history = [], []
    for m in range(members):
        k_init, k_train = (k_flow, k_fit) if m == 0 else (jr.fold_in(k_flow, m), jr.fold_in(k_fit, m))
        flow = build(theta.shape[1], cond_channels, key=k_init)
        if summary is not None:
            flow = nets.Summarized(flow, summary)
        model = nets.Standardized.from_data(flow, seen[kept], x[kept])
        if constrain:
            model = nets.Constrained(model, lower, upper)
        trained, log = _train_one(model, theta, x, held, kept, k_train, stages, patience=tuple(patience),
                                  batch_size=batch_size, max_epochs=max_epochs, devices=devices, progress=progress)
        flows.append(trained)
        history += [(m, *entry) for entry in log]
    model = flows[0] if members == 1 else Ensemble(flows)
    return Posterior(model, lower, upper, tuple(x.shape[1:]), tuple(history))
