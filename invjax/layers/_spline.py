"""The rational-quadratic spline of Neural Spline Flows (Durkan et al., 2019): a coupling's
elementwise map, given as a value.

Why a value, and why ``transform=``: an affine coupling already takes how it turns its
conditioner's raw output into a map as a value (``scale=ij.layers.SigmoidScale()``), and a
network passes that value on to every coupling it builds. A spline is the same kind of
choice one level up: not how the scale is made but which elementwise map the coupling
applies. So a spline is a value too, :class:`RationalQuadraticSpline` (its sizes and
minima, no arrays: the parameters come from the conditioner, element by element); the
single layer is :class:`~invjax.layers.SplineCoupling` (``spline=``, beside
``AffineCoupling``'s ``scale=``), and every network and composite layer that builds
affine couplings takes ``transform=`` (``None``: affine, with ``scale``; a
``RationalQuadraticSpline``: spline couplings, with conditioners of ``3K - 1`` outputs
per transformed element). The couplings share :class:`~invjax.layers.AbstractCoupling`'s
fused backward, so a spline needs no backward of its own and the engine keeps memory
flat in depth.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._strict import AbstractStrictModule


class RationalQuadraticSpline(AbstractStrictModule):
    """A monotone rational-quadratic spline on ``[-B, B]`` with ``K`` bins, the identity outside.

    Durkan et al. (2019), "Neural Spline Flows", with linear tails. Per element, the raw
    parameters ``(u^w, u^h, u^d)`` (``K``, ``K`` and ``K - 1`` numbers) give

    - bin widths ``w_k = 2B (m_w + (1 - K m_w) softmax(u^w)_k)`` and heights ``h_k`` alike
      (``m_h``), so the knots ``x^k, y^k`` run from ``-B`` to ``B``;
    - inner knot derivatives ``d_k = m_d + softplus(u^d_k + c)``, ``c = log(e^(1 - m_d) - 1)``
      (so ``u = 0`` gives ``d = 1``); the boundary derivatives are ``d_0 = d_K = 1``, so
      the spline joins the identity tails with a continuous derivative.

    In bin ``k``, with ``s = h_k / w_k``, ``xi = (x - x^k) / w_k`` and
    ``D = s + (d_{k+1} + d_k - 2 s) xi (1 - xi)``::

        y      = y^k + h_k (s xi^2 + d_k xi (1 - xi)) / D
        dy/dx  = s^2 (d_{k+1} xi^2 + 2 s xi (1 - xi) + d_k (1 - xi)^2) / D^2

    The inverse solves ``a xi^2 + b xi + c = 0`` in the bin of ``y`` with
    ``a = h_k (s - d_k) + (y - y^k)(d_{k+1} + d_k - 2 s)``,
    ``b = h_k d_k - (y - y^k)(d_{k+1} + d_k - 2 s)``, ``c = -s (y - y^k)`` by the stable root
    ``xi = 2 c / (-b - sqrt(b^2 - 4 a c))``. Outside ``[-B, B]``: ``y = x``, ``dy/dx = 1``.
    All-zero raw parameters give equal bins and unit derivatives: the identity (a new
    coupling, whose conditioner starts at zero, is the identity map).

    Args:
        bins: ``K``, the number of bins (at least 2).
        bound: ``B > 0``, the half-width of the interval the spline covers.
        min_width: ``m_w``, the smallest bin width as a fraction of ``2B``; ``0 < K m_w < 1``.
        min_height: ``m_h``, the same for heights.
        min_derivative: ``m_d``, the smallest inner derivative, in ``(0, 1)``.

    Shapes: ``raw``: ``(B, 3K - 1, *shape)`` (axis 1: the ``K`` width, ``K`` height and
    ``K - 1`` derivative parameters of each element), ``x``: ``(B, *shape)`` -> ``y`` and
    ``log dy/dx``: ``(B, *shape)``.

    Example:
        >>> import jax.numpy as jnp, invjax as ij
        >>> spline = ij.layers.RationalQuadraticSpline(bins=4, bound=3.0)
        >>> raw = jnp.zeros((1, spline.params_per_element, 2))  # all-zero parameters: the identity
        >>> y, log_dy = spline(raw, jnp.array([[0.5, 7.0]]))
        >>> bool(jnp.allclose(y, jnp.array([[0.5, 7.0]]))), bool(jnp.allclose(log_dy, 0.0, atol=1e-6))
        (True, True)
    """

    bins: int = eqx.field(static=True)
    bound: float = eqx.field(static=True)
    min_width: float = eqx.field(static=True)
    min_height: float = eqx.field(static=True)
    min_derivative: float = eqx.field(static=True)

    def __init__(self, bins: int = 8, bound: float = 3.0, *, min_width: float = 1e-3, min_height: float = 1e-3,
                 min_derivative: float = 1e-3):
        name = "RationalQuadraticSpline"
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise ValueError(f"{name}: bins must be an integer >= 2, got {bins!r}.")
        if not (isinstance(bound, (int, float)) and math.isfinite(bound) and bound > 0):
            raise ValueError(f"{name}: bound must be a positive finite number, got {bound!r}.")
        for what, value in (("min_width", min_width), ("min_height", min_height)):
            if not (isinstance(value, (int, float)) and 0 < value * bins < 1):
                raise ValueError(f"{name}: {what} must satisfy 0 < {what} * bins < 1 (bins={bins}), got {value!r}.")
        if not (isinstance(min_derivative, (int, float)) and 0 < min_derivative < 1):
            raise ValueError(f"{name}: min_derivative must lie in (0, 1), got {min_derivative!r}.")
        self.bins, self.bound = bins, float(bound)
        self.min_width, self.min_height = float(min_width), float(min_height)
        self.min_derivative = float(min_derivative)

    @property
    def params_per_element(self) -> int:
        """``3K - 1``: the raw parameters of one transformed element."""
        return 3 * self.bins - 1

    def _knots(self, u, minimum):
        """Knots ``(B, K + 1, *shape)`` from ``-B`` to ``B``, bin sizes from a softmax with a minimum."""
        fraction = minimum + (1 - minimum * self.bins) * jax.nn.softmax(u, axis=1)
        inner = -self.bound + 2 * self.bound * jnp.cumsum(fraction, axis=1)[:, :-1]
        edge = jnp.full_like(inner[:, :1], self.bound)
        return jnp.concatenate([-edge, inner, edge], axis=1)  # the ends exact, whatever the rounding

    def _bin(self, raw, v, inverse):
        """The spline's values at the ends of ``v``'s bin (``v`` inside ``[-B, B]``):
        ``(x^k, w_k, y^k, h_k, d_k, d_{k+1})``, each ``(B, *shape)``."""
        self._check(raw, v)
        K = self.bins
        xk, yk = self._knots(raw[:, :K], self.min_width), self._knots(raw[:, K : 2 * K], self.min_height)
        offset = math.log(math.expm1(1 - self.min_derivative))  # softplus(offset) = 1 - min_derivative
        inner = self.min_derivative + jax.nn.softplus(raw[:, 2 * K :] + offset)
        one = jnp.ones_like(inner[:, :1])
        d = jnp.concatenate([one, inner, one], axis=1)
        knots = yk if inverse else xk
        index = jnp.sum(v[:, None] >= knots[:, 1:-1], axis=1)  # 0 .. K-1
        mine = index[:, None] == jnp.arange(K).reshape((1, K) + (1,) * (v.ndim - 1))
        pick = lambda a: jnp.sum(jnp.where(mine, a, 0), axis=1)  # noqa: E731  (one-hot: no gather)
        x0, y0, d0, d1 = pick(xk[:, :-1]), pick(yk[:, :-1]), pick(d[:, :-1]), pick(d[:, 1:])
        return x0, pick(xk[:, 1:]) - x0, y0, pick(yk[:, 1:]) - y0, d0, d1

    def _log_derivative(self, xi, s, d0, d1):
        """``log dy/dx`` in a bin at ``xi``."""
        t = xi * (1 - xi)
        denominator = s + (d1 + d0 - 2 * s) * t
        return 2 * jnp.log(s) + jnp.log(d1 * xi**2 + 2 * s * t + d0 * (1 - xi) ** 2) - 2 * jnp.log(denominator)

    def _check(self, raw, v):
        expected = v.shape[:1] + (self.params_per_element,) + v.shape[1:]
        if raw.shape != expected:
            raise ValueError(f"RationalQuadraticSpline: expected parameters of shape {expected} (3 * bins - 1 = "
                             f"{self.params_per_element} per element) for x of shape {v.shape}; got {raw.shape}.")

    def __call__(self, raw: Float[Array, " batch params *shape"], x: Float[Array, " batch *shape"]
                 ) -> tuple[Array, Array]:
        """``(y, log dy/dx)``, elementwise."""
        inside = (x >= -self.bound) & (x <= self.bound)
        # Outside, the spline branch runs at 0 and is discarded: finite, with a finite gradient.
        # (Not a clip: at x = +-B a clip's gradient is 1/2, and the derivative there is 1.)
        xc = jnp.where(inside, x, 0)
        x0, w, y0, h, d0, d1 = self._bin(raw, xc, inverse=False)
        s, xi = h / w, (xc - x0) / w
        t = xi * (1 - xi)
        y = y0 + h * (s * xi**2 + d0 * t) / (s + (d1 + d0 - 2 * s) * t)
        return jnp.where(inside, y, x), jnp.where(inside, self._log_derivative(xi, s, d0, d1), 0)

    def inverse(self, raw: Float[Array, " batch params *shape"], y: Float[Array, " batch *shape"]
                ) -> tuple[Array, Array]:
        """``(x, log dx/dy)``, elementwise: the quadratic's stable root in ``y``'s bin."""
        inside = (y >= -self.bound) & (y <= self.bound)
        yc = jnp.where(inside, y, 0)
        x0, w, y0, h, d0, d1 = self._bin(raw, yc, inverse=True)
        s, dy = h / w, yc - y0
        k = d1 + d0 - 2 * s
        a, b, c = h * (s - d0) + dy * k, h * d0 - dy * k, -s * dy
        xi = 2 * c / (-b - jnp.sqrt(jnp.maximum(b**2 - 4 * a * c, 0)))
        x = x0 + xi * w
        return jnp.where(inside, x, y), jnp.where(inside, -self._log_derivative(xi, s, d0, d1), 0)


def check_transform(name: str, transform):
    """``transform`` is ``None`` (affine couplings) or a :class:`RationalQuadraticSpline`."""
    if transform is not None and not isinstance(transform, RationalQuadraticSpline):
        raise ValueError(f"{name}: transform must be None (affine couplings, with scale=) or an "
                         f"ij.layers.RationalQuadraticSpline(bins, bound), got {transform!r}.")
    return transform
