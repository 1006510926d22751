"""Bounded <-> unbounded: an elementwise bijection from a box of bounds to the real line.

A flow lives on an unbounded space; a prior on an interval ``(a, b)`` or a half-line
``(a, inf)`` does not. :class:`Bounded` maps such a space onto the reals, dimension by
dimension, so that a flow in front of it (:class:`invjax.nets.Constrained`) puts all its
mass inside the bounds.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import check_array
from .._layer import AbstractBasicLayer
from ._util import sum_per_sample

_ONE_SIDED = ("softplus", "exp")


def _bound(value, what: str):
    """A bound as stored: a float, or a tuple of floats (one per dimension)."""
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:  # a tracer, a string, ...
        raise ValueError(
            f"Bounded: {what} must be a number or a vector (D,) of numbers known when the layer is built "
            f"(-inf/inf for unbounded), got {type(value).__name__}: {str(error)[:120]}"
        ) from error
    if v.ndim > 1 or v.size == 0:
        raise ValueError(f"Bounded: {what} must be a scalar or a vector (D,) of per-dimension bounds; "
                         f"got shape {v.shape}.")
    if np.isnan(v).any():
        raise ValueError(f"Bounded: {what} holds NaN; use -inf/inf for an unbounded side.")
    return float(v) if v.ndim == 0 else tuple(float(b) for b in v)


class _Constants(NamedTuple):
    """The bounds in the input's dtype, with finite stand-ins where a side is unbounded."""

    lower: np.ndarray  # the bounds themselves (-inf/inf where unbounded)
    upper: np.ndarray
    a: np.ndarray  # lower bound, 0 where unbounded
    b: np.ndarray  # upper bound, 0 where unbounded
    a_in: np.ndarray  # the smallest value inside: the float after a (-max where unbounded)
    b_in: np.ndarray  # the largest value inside: the float before b (max where unbounded)
    width: np.ndarray  # b - a on intervals, 1 elsewhere
    interval: np.ndarray  # masks of the four kinds of dimension
    only_lower: np.ndarray
    only_upper: np.ndarray


def _inside(bound, toward: float, dtype):
    """The float of ``dtype`` next to ``bound`` towards ``toward``, never subnormal: a step of
    ``max(|bound| * eps, tiny)`` (at least one spacing, so the rounded value moves)."""
    info = jnp.finfo(dtype)
    step = np.maximum(np.abs(bound) * float(info.eps), float(info.tiny))
    return (bound + np.sign(toward - bound) * step).astype(dtype)


def _select(branches, default):
    """``branches``: ``(mask, thunk)`` pairs; each thunk runs only if its mask selects a dimension."""
    out = default
    for mask, value in branches:
        if mask.all():
            out = value()
        elif mask.any():
            out = jnp.where(mask, value(), out)
    return out


class Bounded(AbstractBasicLayer):
    """The elementwise bijection from a box of bounds to the reals, per dimension.

    ``forward`` maps ``x`` inside the bounds to an unbounded ``y``; ``inverse`` maps any
    real ``y`` strictly inside. Every map increases; per dimension, with ``a`` = ``lower``
    and ``b`` = ``upper``:

    - an interval ``(a, b)``: ``y = logit((x - a) / (b - a))``, inverse
      ``x = a + (b - a) * sigmoid(y)`` (computed from the nearer bound, so no digits are
      lost at either end);
    - a lower bound ``(a, inf)``: ``y = softplus^{-1}(x - a)``, inverse ``x = a + softplus(y)``
      (``one_sided="exp"``: ``y = log(x - a)``, ``x = a + exp(y)``);
    - an upper bound ``(-inf, b)``: the mirror image, ``x = b - softplus(-y)``;
    - unbounded ``(-inf, inf)``: the identity.

    Its ``log|det dy/dx|`` is the sum of the log-derivatives, e.g.
    ``log(b - a) - log(x - a) - log(b - x)`` on an interval.

    Numerics. The inverse never leaves the bounds: where the map saturates (``sigmoid`` of
    ``|y| > 17``, ``softplus`` of ``y < -104`` in float32) its value is clipped to the
    nearest float inside (``a + max(|a| eps, tiny)``; the largest finite float for
    ``exp``), so ``sample`` stays strictly inside in float32 for any finite latent.
    In ``forward``, a value *on* a bound (``x == a``, as ``jax.random.uniform`` can draw)
    is moved inside the same way, so its ``y`` is finite but large (``logit(1.2e-38)`` is
    ``-87`` in float32); shrink data that touches its bounds if that matters. A value
    *outside* the bounds raises a ``ValueError`` where its value is known (outside
    ``jax.jit``); under ``jax.jit`` its sample's log-determinant is ``-inf`` (so its
    ``log_prob`` is ``-inf``, with a zero gradient), and its ``y`` is that of the nearest
    point inside (the map does not invert there).

    The bounds are hyper-parameters (static), not parameters: an optimizer never moves
    them, and they are cast to the input's dtype at every call.

    Args:
        lower: a number, or a vector ``(D,)`` of per-dimension lower bounds; ``-inf``
            where a dimension has none. Default ``-inf``.
        upper: the same for the upper bounds; default ``inf``. ``lower < upper`` in every
            dimension.
        one_sided: the map of a half-line, ``"softplus"`` (default: nearly linear far from
            the bound, so a flow's tails stay light) or ``"exp"`` (the log transform).

    Shapes: scalar bounds: ``(B, ...)`` -> same, any layout (``Bounded(0.0, 1.0)`` is the
    logit of pixel data); per-dimension bounds ``(D,)``: ``(B, D)`` -> ``(B, D)``.
    logdet: ``(B,)``.

    Example:
        >>> import jax.numpy as jnp, invjax as ij
        >>> layer = ij.layers.Bounded(lower=jnp.array([0.0, 0.0, -jnp.inf]), upper=jnp.array([1.0, jnp.inf, jnp.inf]))
        >>> x = layer.inverse(jnp.array([[80.0, -80.0, 3.0]]))
        >>> bool(0 < x[0, 0] < 1 and x[0, 1] > 0), float(x[0, 2])
        (True, 3.0)
    """

    lower: float | tuple[float, ...] = eqx.field(static=True)
    upper: float | tuple[float, ...] = eqx.field(static=True)
    one_sided: str = eqx.field(static=True)

    def __init__(self, lower=-np.inf, upper=np.inf, *, one_sided: str = "softplus"):
        lower, upper = _bound(lower, "lower"), _bound(upper, "upper")
        sizes = {len(b) for b in (lower, upper) if isinstance(b, tuple)}
        if len(sizes) > 1:
            raise ValueError(f"Bounded: lower and upper must have the same number of dimensions; got lower of "
                             f"shape ({len(lower)},) and upper of shape ({len(upper)},).")
        lo, hi = np.broadcast_arrays(np.asarray(lower), np.asarray(upper))
        bad = np.argwhere(np.atleast_1d(lo >= hi)).ravel()
        if bad.size:
            i = int(bad[0])
            where = f" at dimension {i}" if lo.ndim else ""
            raise ValueError(f"Bounded: lower must be < upper in every dimension; got lower={np.atleast_1d(lo)[i]} "
                             f">= upper={np.atleast_1d(hi)[i]}{where}.")
        if one_sided not in _ONE_SIDED:
            raise ValueError(f"Bounded: one_sided must be one of {_ONE_SIDED}, got {one_sided!r}.")
        self.lower, self.upper, self.one_sided = lower, upper, one_sided

    @property
    def size(self) -> int | None:
        """``D`` for per-dimension bounds, ``None`` for scalar bounds (any layout)."""
        for b in (self.lower, self.upper):
            if isinstance(b, tuple):
                return len(b)
        return None

    def check(self, name: str, v, what: str = "x") -> None:
        """``v`` is a batch this layer takes: floating, batched, ``(B, D)`` for per-dimension bounds."""
        check_array(name, v, what)
        d = self.size
        if d is not None and (v.ndim != 2 or v.shape[1] != d):
            raise ValueError(
                f"{name}: the bounds are per dimension (D = {d}), so {what} must be a batch of vectors "
                f"(B, {d}); got shape {tuple(v.shape)}. Give scalar bounds for images or volumes."
            )

    def _constants(self, name: str, dtype) -> _Constants:
        lower, upper = np.broadcast_arrays(np.asarray(self.lower, dtype), np.asarray(self.upper, dtype))
        if (lower >= upper).any():
            raise ValueError(f"{name}: lower < upper is lost in {np.dtype(dtype).name} (the bounds round to "
                             f"lower={lower}, upper={upper}); use a wider dtype or wider bounds.")
        has_lo, has_hi = np.isfinite(lower), np.isfinite(upper)
        a, b = np.where(has_lo, lower, 0).astype(dtype), np.where(has_hi, upper, 0).astype(dtype)
        big = float(jnp.finfo(dtype).max)
        a_in = np.where(has_lo, _inside(a.astype(np.float64), np.inf, dtype), -big).astype(dtype)
        b_in = np.where(has_hi, _inside(b.astype(np.float64), -np.inf, dtype), big).astype(dtype)
        interval = has_lo & has_hi
        width = np.where(interval, b.astype(np.float64) - a.astype(np.float64), 1.0).astype(dtype)
        return _Constants(lower, upper, a, b, a_in, b_in, width, interval, has_lo & ~has_hi, has_hi & ~has_lo)

    def to_unbounded(self, x, name: str = "Bounded"):
        """``(y, log|det dy/dx|)`` of the bounded ``x``; ``name`` heads the errors."""
        self.check(name, x)
        c = self._constants(name, x.dtype)
        outside = (x < c.lower) | (x > c.upper)
        _raise_if_outside(name, x, outside, c)
        xc = jnp.clip(x, c.a_in, c.b_in)
        u = jnp.where(c.interval | c.only_lower, xc - c.a, 1)  # distance to the lower bound (> 0)
        v = jnp.where(c.interval | c.only_upper, c.b - xc, 1)  # distance to the upper bound (> 0)
        if self.one_sided == "softplus":  # softplus^{-1}(w) = w + log(1 - exp(-w)); its log-derivative
            f, log_df = (lambda w: w + jnp.log(-jnp.expm1(-w))), (lambda w: -jnp.log(-jnp.expm1(-w)))
        else:
            f, log_df = jnp.log, (lambda w: -jnp.log(w))
        y = _select([(c.interval, lambda: jnp.log(u) - jnp.log(v)), (c.only_lower, lambda: f(u)),
                     (c.only_upper, lambda: -f(v))], x)
        zero = jnp.zeros((), x.dtype)
        log_d = _select([(c.interval, lambda: jnp.log(c.width) - jnp.log(u) - jnp.log(v)),
                         (c.only_lower, lambda: log_df(u)), (c.only_upper, lambda: log_df(v))], zero)
        logdet = sum_per_sample(jnp.broadcast_to(log_d, x.shape))
        return y, jnp.where(sum_per_sample(outside) > 0, -jnp.inf, logdet).astype(x.dtype)

    def to_bounded(self, y, name: str = "Bounded"):
        """``(x, log|det dx/dy|)``: any real ``y`` to ``x`` strictly inside the bounds."""
        self.check(name, y, "y")
        c = self._constants(name, y.dtype)
        if self.one_sided == "softplus":
            h, log_dh = jax.nn.softplus, jax.nn.log_sigmoid
        else:  # exp, capped where it would overflow (the clip below keeps x finite)
            h, log_dh = (lambda s: jnp.exp(jnp.minimum(s, np.log(jnp.finfo(y.dtype).max)))), (lambda s: s)

        def interval():  # from the nearer bound: b - w sigmoid(-y) keeps its digits where sigmoid(y) ~ 1
            return jnp.where(y >= 0, c.b - c.width * jax.nn.sigmoid(-y), c.a + c.width * jax.nn.sigmoid(y))

        x = _select([(c.interval, interval), (c.only_lower, lambda: c.a + h(y)),
                     (c.only_upper, lambda: c.b - h(-y))], y)
        zero = jnp.zeros((), y.dtype)
        log_d = _select([(c.interval, lambda: jnp.log(c.width) - jax.nn.softplus(y) - jax.nn.softplus(-y)),
                         (c.only_lower, lambda: log_dh(y)), (c.only_upper, lambda: log_dh(-y))], zero)
        return jnp.clip(x, c.a_in, c.b_in), sum_per_sample(jnp.broadcast_to(log_d, y.shape)).astype(y.dtype)

    def forward(self, x: Float[Array, "B ..."], cond=None) -> tuple[Array, Float[Array, " B"]]:
        """``(y, logdet)``: the bounded ``x`` mapped to the reals; ``cond`` is ignored."""
        return self.to_unbounded(x)

    def inverse_and_log_det(self, y: Float[Array, "B ..."], cond=None) -> tuple[Array, Float[Array, " B"]]:
        """``(x, log|det dx/dy|)``: any real ``y`` mapped strictly inside the bounds."""
        return self.to_bounded(y)


def _raise_if_outside(name: str, x, outside, c: _Constants) -> None:
    """Where the values are known (not under ``jax.jit``), a value outside the bounds is an error."""
    if isinstance(outside, jax.core.Tracer) or not bool(jnp.any(outside)):
        return
    detail = ""
    if getattr(x, "is_fully_addressable", True):
        bad = np.argwhere(np.asarray(outside))
        first = tuple(int(i) for i in bad[0])
        lo, hi = np.broadcast_to(c.lower, x.shape[1:]), np.broadcast_to(c.upper, x.shape[1:])
        detail = (f": x[{', '.join(map(str, first))}] = {float(np.asarray(x)[first])} is not in "
                  f"[{float(lo[first[1:]])}, {float(hi[first[1:]])}] ({len(bad)} value(s) outside)")
    raise ValueError(
        f"{name}: x lies outside the bounds{detail}. The density is 0 there; under jax.jit (eqx.filter_jit) "
        f"log_prob is -inf for such samples instead of this error."
    )
