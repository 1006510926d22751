"""Rational-quadratic spline couplings (Durkan et al., 2019): the spline's closed forms, its
errors, and the networks that take ``transform=``.

The contract cases ``spline_coupling_*`` and ``conditional_hint_spline_vector`` (``tests/cases.py``)
check round trips, log-determinants against ``jax.jacfwd`` and gradients against autodiff and
finite differences; ``glow_spline`` in ``NETWORKS`` checks that the training step's memory
stays flat in depth (``tests/test_memory.py``) and the float32 drift at depth 64.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import nll, perturb

import invjax as ij
from invjax import layers as L

SPLINE = L.RationalQuadraticSpline(bins=4, bound=2.0)


def _raw(key, spline, shape, scale=2.0):
    """Random raw parameters ``(B, 3K - 1, *shape[1:])`` for inputs of ``shape``."""
    return scale * jr.normal(key, shape[:1] + (spline.params_per_element,) + shape[1:])


def test_outside_the_interval_the_spline_is_the_identity():
    """``|x| > B``: ``y = x`` and ``log dy/dx = 0`` (the linear tails), both directions, whatever
    the parameters; at ``x = +-B`` the spline meets them (``y = +-B``)."""
    x = jnp.array([[-50.0, -2.5, -2.0 - 1e-9, 2.0 + 1e-9, 3.0, 1e3]])
    raw = _raw(jr.key(0), SPLINE, x.shape)
    for y, log_derivative in (SPLINE(raw, x), SPLINE.inverse(raw, x)):
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(log_derivative, jnp.zeros_like(x))
    ends = jnp.array([[-2.0, 2.0]])
    for y, log_derivative in (SPLINE(raw[..., :2], ends), SPLINE.inverse(raw[..., :2], ends)):
        np.testing.assert_allclose(y, ends, rtol=0, atol=1e-14)
        np.testing.assert_allclose(log_derivative, 0.0, rtol=0, atol=1e-12)


def test_equal_bins_and_unit_derivatives_are_the_identity():
    """Equal raw widths and heights (any constant: the softmax is uniform) and zero raw
    derivatives (``d = 1``): ``y = x``, ``log dy/dx = 0`` on the whole line."""
    x = jnp.linspace(-3.0, 3.0, 61)[None]
    K = SPLINE.bins
    for constant in (0.0, 1.7):
        raw = jnp.concatenate([jnp.full((1, 2 * K, 61), constant), jnp.zeros((1, K - 1, 61))], axis=1)
        y, log_dy = SPLINE(raw, x)
        np.testing.assert_allclose(y, x, rtol=0, atol=1e-14)
        np.testing.assert_allclose(log_dy, 0.0, rtol=0, atol=1e-14)
        np.testing.assert_allclose(SPLINE.inverse(raw, x)[0], x, rtol=0, atol=1e-14)


def _inverse_softplus(v):
    return math.log(math.expm1(v))


def test_one_bin_by_hand():
    """Two bins on ``[-1, 1]`` with minima 0.1: equal widths (knots ``-1, 0, 1``), heights
    ``softmax(log 3, 0) -> 0.7, 0.3`` of 2 (knots ``-1, 0.4, 1``), inner derivative 2. The
    paper's equations, worked out at the bins' midpoints (``xi = 1/2``):

    - bin 1, ``x = 0.5``: ``s = 0.6``, ``y = 0.4 + 0.6 (0.15 + 0.5) / (0.6 + 1.8 / 4) = 27/35``,
      ``dy/dx = 0.36 (0.25 + 0.3 + 0.5) / 1.05^2 = 12/35``;
    - bin 0, ``x = -0.5``: ``s = 1.4``, ``y = -1 + 1.4 (0.35 + 0.25) / 1.45 = -61/145``,
      ``dy/dx = 1.96 (0.5 + 0.7 + 0.25) / 1.45^2 = 196/145``.
    """
    m = 0.1
    spline = L.RationalQuadraticSpline(bins=2, bound=1.0, min_width=m, min_height=m, min_derivative=m)
    u_d = _inverse_softplus(2.0 - m) - _inverse_softplus(1.0 - m)  # d = m + softplus(u + c) = 2
    raw = jnp.array([0.0, 0.0, math.log(3.0), 0.0, u_d]).reshape(1, 5, 1) * jnp.ones((1, 5, 2))
    x = jnp.array([[0.5, -0.5]])
    y, log_dy = spline(raw, x)
    expected_y, expected_dy = np.array([[27 / 35, -61 / 145]]), np.array([[12 / 35, 196 / 145]])
    np.testing.assert_allclose(y, expected_y, rtol=1e-14)
    np.testing.assert_allclose(log_dy, np.log(expected_dy), rtol=1e-13)
    x_back, log_dx = spline.inverse(raw, jnp.asarray(expected_y))
    np.testing.assert_allclose(x_back, x, rtol=1e-14)
    np.testing.assert_allclose(log_dx, -np.log(expected_dy), rtol=1e-13)


def test_inverse_and_log_derivative_on_a_dense_grid_with_steep_parameters():
    """Large random parameters (bins from tiny to wide, derivatives from ~0 to large), one
    spline per row, on a grid across the interval and its tails plus the row's knots (where
    the bin search switches): the inverse is exact to 1e-10 (the stable root), the map is
    increasing, and ``log dy/dx`` is the log of autodiff's derivative."""
    K = SPLINE.bins
    raw_rows = 3.0 * jr.normal(jr.key(1), (3, SPLINE.params_per_element, 1))
    knots = SPLINE._knots(raw_rows[:, :K], SPLINE.min_width)[:, :, 0]  # (3, K + 1)
    grid = jnp.broadcast_to(jnp.linspace(-3.0, 3.0, 601), (3, 601))
    x = jnp.concatenate([grid, knots], axis=1)
    raw = jnp.broadcast_to(raw_rows, raw_rows.shape[:2] + x.shape[1:])
    y, log_dy = SPLINE(raw, x)
    x_back, log_dx = SPLINE.inverse(raw, y)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=1e-10)
    np.testing.assert_allclose(log_dx, -log_dy, rtol=0, atol=1e-10)
    assert bool(jnp.all(jnp.diff(y[:, :601], axis=1) > 0))
    derivative = jax.grad(lambda v: jnp.sum(SPLINE(raw, v)[0]))(x)  # elementwise map: the diagonal
    np.testing.assert_allclose(log_dy, jnp.log(derivative), rtol=0, atol=1e-10)
    assert float(jnp.max(log_dy) - jnp.min(log_dy)) > 2  # the parameters are far from the identity


def test_a_new_spline_coupling_is_the_identity():
    """Zero conditioner output: equal bins and unit derivatives, so ``y = x`` and logdet 0."""
    layer = L.SplineCoupling(4, 8, spatial_dims=0, key=jr.key(0))
    x = 4.0 * jr.normal(jr.key(1), (5, 4))
    y, logdet = layer.forward(x)
    np.testing.assert_allclose(y, x, rtol=0, atol=1e-13)
    np.testing.assert_allclose(logdet, 0.0, atol=1e-13)


def _nets(spline):
    key = jr.key(0)
    return {
        "realnvp": (ij.nets.RealNVP(4, 2, 8, key=key, transform=spline), (3, 4), None),
        "glow": (ij.nets.Glow(1, 2, 1, 4, key=key, transform=spline), (2, 1, 4, 4), None),
        "hint": (ij.nets.HINT(4, 1, 4, key=key, spatial_dims=0, cond_channels=2, transform=spline), (3, 4), (3, 2)),
        "multiscale_hint": (ij.nets.MultiscaleHINT(1, 2, 1, 4, key=key, spatial_dims=1, transform=spline),
                            (2, 1, 4), None),
        "conditional_hint": (ij.nets.ConditionalHINT(2, 1, 4, cond_channels=2, key=key, spatial_dims=0,
                                                     transform=spline), (3, 2), (3, 2)),
        "multiscale_conditional_hint": (
            ij.nets.MultiscaleConditionalHINT(1, 2, 1, 4, cond_channels=1, key=key, spatial_dims=1, transform=spline),
            (2, 1, 4), (2, 1, 4)),
        "iunet": (ij.nets.IUNet(2, 2, 1, 4, key=key, spatial_dims=1, cond_channels=1, transform=spline), (2, 2, 4),
                  (2, 1)),
    }


def _couplings(flow):
    is_coupling = lambda n: isinstance(n, L.AbstractCoupling)  # noqa: E731
    return [n for n in jax.tree.leaves(flow, is_leaf=is_coupling) if is_coupling(n)]


@pytest.mark.parametrize("name", sorted(_nets(None)))
def test_every_network_takes_a_spline_and_trains_a_step(name):
    """Every coupling is a spline coupling with the given spline (stored on the network), and
    one gradient step of the negative log-likelihood (invertible backward) is finite and
    lowers it."""
    spline = L.RationalQuadraticSpline(bins=3, bound=1.5)
    flow, x_shape, cond_shape = _nets(spline)[name]
    assert flow.transform is spline
    couplings = _couplings(flow)
    assert couplings and all(isinstance(c, L.SplineCoupling) and c.spline == spline for c in couplings)
    flow = perturb(flow, jr.key(1), 0.05)
    x = 1.5 * jr.normal(jr.key(2), x_shape)
    cond = None if cond_shape is None else jr.normal(jr.key(3), cond_shape)
    value_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(nll))
    loss, grads = value_and_grad(flow, x, cond)
    norm = math.sqrt(sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads)))
    assert math.isfinite(float(loss)) and math.isfinite(norm) and norm > 0
    stepped = eqx.apply_updates(flow, jax.tree.map(lambda g: -1e-3 / norm * g, grads))
    new_loss, _ = value_and_grad(stepped, x, cond)
    assert math.isfinite(float(new_loss)) and float(new_loss) < float(loss)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: L.RationalQuadraticSpline(bins=1), r"bins must be an integer >= 2, got 1"),
        (lambda: L.RationalQuadraticSpline(bins=4.0), r"bins must be an integer >= 2, got 4.0"),
        (lambda: L.RationalQuadraticSpline(bins=True), r"bins must be an integer >= 2"),
        (lambda: L.RationalQuadraticSpline(bound=0.0), r"bound must be a positive finite number, got 0.0"),
        (lambda: L.RationalQuadraticSpline(bound=-1.0), r"bound must be a positive finite number"),
        (lambda: L.RationalQuadraticSpline(bound=float("inf")), r"bound must be a positive finite number"),
        (lambda: L.RationalQuadraticSpline(bins=4, min_width=0.25), r"min_width \* bins < 1 \(bins=4\)"),
        (lambda: L.RationalQuadraticSpline(min_height=0.0), r"0 < min_height \* bins < 1"),
        (lambda: L.RationalQuadraticSpline(min_derivative=1.0), r"min_derivative must lie in \(0, 1\)"),
        (lambda: L.SplineCoupling(4, 8, key=jr.key(0), spline=L.SigmoidScale()), r"spline must be an ij.layers.Ra"),
        (lambda: ij.nets.RealNVP(4, 1, 8, key=jr.key(0), transform="spline"),
         r"RealNVP: transform must be None \(affine couplings, with scale=\) or an ij.layers.RationalQuadraticSpline"),
        (lambda: ij.nets.Glow(1, 1, 1, 4, key=jr.key(0), transform=L.ExpClampScale()), r"Glow: transform must be"),
        (lambda: L.HINTCoupling(4, 4, key=jr.key(0), transform=8), r"HINTCoupling: transform must be"),
        (lambda: ij.nets.MultiscaleConditionalHINT(1, 2, 1, 4, cond_channels=1, key=jr.key(0), transform=(8, 3.0)),
         r"MultiscaleConditionalHINT: transform must be"),
        (lambda: SPLINE(jnp.zeros((2, 10, 3)), jnp.zeros((2, 3))),
         r"expected parameters of shape \(2, 11, 3\) \(3 \* bins - 1 = 11 per element\)"),
        (lambda: L.SplineCoupling(4, 8, key=jr.key(0), spatial_dims=0, spline=SPLINE,
                                  conditioner=L.MLP(2, 4, 8, key=jr.key(1))).forward(jnp.zeros((3, 4))),
         r"conditioner gave 4 channels; a spline of 4 bins needs \(3 \* bins - 1\) \* 2 = 22"),
    ],
)
def test_bad_arguments_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
