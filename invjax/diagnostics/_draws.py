"""Posterior draws for many observations in one jitted, batched call."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_key
from .._devices import split_like_batch
from .._ensemble import Ensemble


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
    from .._flow import AbstractWrappedFlow
    from ..nets import Standardized, Summarized

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
