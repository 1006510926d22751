"""Bounded parameters: ``ij.layers.Bounded`` (box -> reals) and ``ij.nets.Constrained`` (any flow on a box)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import cast, perturb, rel_err
from scipy import special, stats

import invjax as ij
from invjax import layers as L

INF = np.inf
# Every kind of dimension: an interval, a lower bound, an upper bound, unbounded, a negative interval.
LOWER = np.array([0.0, 0.5, -INF, -INF, -3.0])
UPPER = np.array([1.0, INF, 2.0, INF, -1.0])


def _inside(x, lower=LOWER, upper=UPPER):
    x = np.asarray(x)
    return bool(np.isfinite(x).all() and (x > lower).all() and (x < upper).all())


def _box_points(key, n, lower=LOWER, upper=UPPER):
    """Points inside the bounds (a normal draw pushed in by hand)."""
    u = jr.uniform(key, (n, len(lower)), minval=0.02, maxval=0.98)
    lo, hi = np.where(np.isfinite(lower), lower, 0.0), np.where(np.isfinite(upper), upper, 0.0)
    interval = lo + (hi - lo) * u
    return jnp.where(np.isfinite(lower) & np.isfinite(upper), interval,
                     jnp.where(np.isfinite(lower), lo + 3 * u, jnp.where(np.isfinite(upper), hi - 3 * u, 6 * u - 3)))


@pytest.mark.parametrize("one_sided", ["softplus", "exp"])
def test_the_inverse_maps_every_real_strictly_inside_in_float32(one_sided):
    """Extreme latents (sigmoid and softplus saturate past |z| ~ 17 and ~ 104 in float32) still
    land strictly inside, finite; and the log-determinant of the inverse stays finite."""
    layer = L.Bounded(LOWER, UPPER, one_sided=one_sided)
    grid = jnp.concatenate([jnp.linspace(-80.0, 80.0, 321), jnp.array([-1e4, -200.0, 200.0, 1e4])])
    z = jnp.broadcast_to(grid[:, None], (grid.size, 5)).astype(jnp.float32)
    x, logdet = jax.jit(layer.inverse_and_log_det)(z)
    assert x.dtype == jnp.float32 and _inside(x), np.asarray(x)[~((x > LOWER) & (x < UPPER)).all(1)][:3]
    assert np.isfinite(logdet).all()
    # Scalar bounds: any layout (the logit of images), every value strictly inside (0, 1).
    images = L.Bounded(0.0, 1.0).inverse(z[:, :4].reshape(-1, 1, 2, 2))
    assert ((images > 0) & (images < 1)).all()
    # Next to a bound at 0 the inverse keeps every digit of the distance to it (it is computed
    # from the nearer bound: a + (b - a) sigmoid(y) rounds to b = 0 for y > 17), so the float32
    # round trip holds out to |y| = 80 on that side.
    for lo, hi, side in ((0.0, 1.0, -1.0), (-1.0, 0.0, 1.0)):
        y = (side * jnp.linspace(0.0, 80.0, 81))[:, None].astype(jnp.float32)
        edge = L.Bounded(lo, hi)
        np.testing.assert_allclose(edge.forward(edge.inverse(y))[0], y, rtol=1e-5, atol=1e-5)
    # Ordinary latents are not clipped: the map is increasing and inverts exactly in float64.
    z64 = jnp.broadcast_to(jnp.linspace(-6.0, 6.0, 25)[:, None], (25, 5))
    x64 = layer.inverse(z64)
    assert (jnp.diff(x64, axis=0) > 0).all()
    np.testing.assert_allclose(layer.forward(x64)[0], z64, rtol=1e-10, atol=1e-10)


def test_a_large_draw_of_a_constrained_flow_stays_inside_in_float32():
    """A flow with wide tails (scales perturbed hard) drawn 20000 times, and sample_and_log_prob."""
    flow = perturb(ij.nets.RealNVP(5, depth=2, hidden=8, key=jr.key(0)), jr.key(1), 0.5)
    model = cast(ij.nets.Constrained(flow, LOWER, UPPER), np.float32)
    x, log_q = eqx.filter_jit(lambda m: m.sample_and_log_prob(jr.key(2), (20000, 5)))(model)
    assert x.dtype == jnp.float32 and _inside(x) and np.isfinite(log_q).all()
    # The draw really reaches the saturated ends (so the clip is exercised, not only the formula).
    assert float(jnp.max(jnp.abs(flow.sample(jr.key(2), (20000, 5))))) > 10


def _closed_form_log_density(x, mu, sigma, lower, upper, one_sided):
    """log p(x) when t(x) ~ N(mu, sigma^2) per dimension (independent), by hand / scipy."""
    total = 0.0
    for i in range(x.shape[1]):
        a, b, v = lower[i], upper[i], np.asarray(x[:, i])
        if np.isfinite(a) and np.isfinite(b):  # the logit-normal on (a, b)
            u = (v - a) / (b - a)
            total = total + stats.norm.logpdf(np.log(u / (1 - u)), mu[i], sigma[i]) - np.log(u * (1 - u) * (b - a))
        elif np.isfinite(a) or np.isfinite(b):
            w = v - a if np.isfinite(a) else b - v  # distance to the bound
            sign = 1.0 if np.isfinite(a) else -1.0
            if one_sided == "exp":  # the log-normal (mirrored for an upper bound)
                total = total + stats.lognorm.logpdf(w, sigma[i], scale=np.exp(sign * mu[i]))
            else:  # y = sign * log(expm1(w)), dy/dw = 1 / (1 - exp(-w))
                y = sign * np.log(np.expm1(w))
                total = total + stats.norm.logpdf(y, mu[i], sigma[i]) - np.log1p(-np.exp(-w))
        else:
            total = total + stats.norm.logpdf(v, mu[i], sigma[i])
    return total


@pytest.mark.parametrize("one_sided", ["softplus", "exp"])
def test_log_prob_is_the_closed_form_density_and_its_log_det_that_of_jax_jacobian(one_sided):
    """A Gaussian base with mean mu and scale sigma (an elementwise affine flow) pushed through the
    bounds: the logit-normal on intervals, the log-normal (exp) or its softplus analogue on
    half-lines, the normal where unbounded. And both log-determinants against jax.jacobian."""
    rng = np.random.default_rng(0)
    log_scale, bias = rng.normal(size=5) * 0.5, rng.normal(size=5)
    affine = eqx.tree_at(lambda a: (a.log_scale, a.bias), L.ElementwiseAffine((5,)),
                         (jnp.asarray(log_scale), jnp.asarray(bias)))
    model = ij.nets.Constrained(ij.nets.Flow(affine), LOWER, UPPER, one_sided=one_sided)
    x = _box_points(jr.key(0), 6)
    # z = exp(s) y + m ~ N(0, 1)  <=>  y ~ N(-m exp(-s), exp(-s)^2)
    mu, sigma = -bias * np.exp(-log_scale), np.exp(-log_scale)
    expected = _closed_form_log_density(x, mu, sigma, LOWER, UPPER, one_sided)
    np.testing.assert_allclose(eqx.filter_jit(model.log_prob)(x), expected, rtol=1e-10)

    layer = model.bounds
    for v, method in ((x, layer.forward), (layer.forward(x)[0], layer.inverse_and_log_det)):
        out, logdet = method(v)
        jacobians = jax.vmap(jax.jacobian(lambda s, method=method: method(s[None])[0][0]))(v)
        np.testing.assert_allclose(logdet, jnp.linalg.slogdet(jacobians)[1], rtol=1e-10, atol=1e-12)


def test_round_trip_and_sample_and_log_prob_agree_with_log_prob(tmp_path):
    flow = perturb(ij.nets.RealNVP(5, depth=2, hidden=8, key=jr.key(0)), jr.key(1), 0.3)
    model = ij.nets.Constrained(flow, LOWER, UPPER)

    @eqx.filter_jit
    def maps(model, x):
        z, logdet = model.forward(x)
        x_back, logdet_inverse = model.inverse_and_log_det(z)
        xs, log_q = model.sample_and_log_prob(jr.key(3), (64, 5))
        return z, logdet, x_back, logdet_inverse, xs, log_q, model.log_prob(xs), model.sample(jr.key(3), (64, 5))

    x = _box_points(jr.key(2), 16)
    z, logdet, x_back, logdet_inverse, xs, log_q, log_p, drawn = maps(model, x)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=1e-10)
    np.testing.assert_allclose(logdet_inverse, -logdet, rtol=1e-10)
    np.testing.assert_allclose(log_q, log_p, rtol=1e-10)
    np.testing.assert_array_equal(xs, drawn)
    # log_prob is the inner flow's density of t(x) plus t's log-determinant.
    y, logdet_t = model.bounds.forward(x)
    np.testing.assert_allclose(model.log_prob(x), flow.log_prob(y) + logdet_t, rtol=1e-10)
    # The bounds (static, -inf/inf included) go into a file and come back without like=.
    loaded = ij.load(ij.save(tmp_path / "bounded.eqx", model))
    assert loaded.bounds == model.bounds
    np.testing.assert_array_equal(maps(loaded, x)[0], z)


def test_gradients_match_plain_autodiff_and_finite_differences():
    flow = perturb(ij.nets.RealNVP(5, depth=2, hidden=8, key=jr.key(0)), jr.key(1), 0.3)
    model = ij.nets.Constrained(flow, LOWER, UPPER)
    x = _box_points(jr.key(2), 8)

    def loss(model, x):  # both directions: a likelihood and a reverse-KL-like term on samples
        xs, log_q = model.sample_and_log_prob(jr.key(3), (8, 5))
        return -jnp.mean(model.log_prob(x)) + jnp.mean(log_q + jnp.sin(xs).sum(1))

    grad = eqx.filter_jit(eqx.filter_grad(loss))
    g_model = grad(model, x)
    assert rel_err(g_model, grad(ij.with_backprop(model, ij.Autodiff()), x)) < 1e-8
    # Finite differences in the input and along a random direction of the parameters.
    g_x = eqx.filter_jit(jax.grad(lambda x: loss(model, x)))(x)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    direction = jax.tree.map(lambda a: jr.normal(jr.key(4), a.shape), params)
    total = eqx.filter_jit(lambda p, x: loss(eqx.combine(p, static), x))
    h, dx = 1e-6, jr.normal(jr.key(5), x.shape) * 0.01
    fd_x = (total(params, x + h * dx) - total(params, x - h * dx)) / (2 * h)
    np.testing.assert_allclose(fd_x, jnp.vdot(g_x, dx), rtol=1e-6)
    shift = lambda s: jax.tree.map(lambda p, d: p + s * d, params, direction)
    fd_p = (total(shift(h), x) - total(shift(-h), x)) / (2 * h)
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(eqx.filter(g_model, eqx.is_inexact_array)),
                                                   jax.tree.leaves(direction), strict=True))
    np.testing.assert_allclose(fd_p, analytic, rtol=1e-6)


def test_the_layer_inside_a_network_body_equals_the_wrapper_and_runs_the_invertible_backward():
    coupling = perturb(L.AffineCoupling(2, 8, spatial_dims=0, key=jr.key(0)), jr.key(1), 0.3)
    lower, upper = np.array([0.0, 1.0]), np.array([1.0, INF])
    inside = ij.nets.Flow(L.Chain([L.Bounded(lower, upper), coupling]))
    wrapped = ij.nets.Constrained(ij.nets.Flow(coupling), lower, upper)
    x = _box_points(jr.key(2), 8, lower, upper)
    np.testing.assert_allclose(inside.log_prob(x), wrapped.log_prob(x), rtol=1e-12)
    grad = eqx.filter_jit(eqx.filter_grad(lambda f: -jnp.mean(f.log_prob(x))))
    assert rel_err(grad(inside), grad(ij.with_backprop(inside, ij.Autodiff()))) < 1e-10
    # Outputs bounded instead: the inverted layer maps a flow's reals into the box.
    squashed = ij.nets.Flow(L.Chain([coupling, L.Invert(L.Bounded(lower, upper))]))
    assert _inside(squashed.forward(jr.normal(jr.key(3), (64, 2)) * 30)[0], lower, upper)


def test_a_summarized_model_in_the_bounds_trains_and_samples_inside():
    k1, k2 = jr.split(jr.key(0))
    flow = perturb(ij.nets.RealNVP(5, depth=2, hidden=8, cond_channels=3, key=k1), jr.key(1), 0.3)
    summarized = ij.nets.Summarized(flow, eqx.nn.MLP(4, 3, width_size=8, depth=1, key=k2))
    model = ij.nets.Constrained(summarized, LOWER, UPPER)
    x, y = _box_points(jr.key(2), 8), jr.normal(jr.key(3), (8, 4))
    y_t, logdet_t = model.bounds.forward(x)
    np.testing.assert_allclose(model.log_prob(x, y), summarized.log_prob(y_t, y) + logdet_t, rtol=1e-10)
    grad = eqx.filter_jit(eqx.filter_grad(lambda m: -jnp.mean(m.log_prob(x, y))))
    g = grad(model)
    assert rel_err(g, grad(ij.with_backprop(model, ij.Autodiff()))) < 1e-8
    assert np.abs(np.asarray(g.flow.summary.layers[0].weight)).max() > 0  # the summary network learns
    samples = model.sample(jr.key(4), (8, 5), y * 10)
    assert _inside(samples)
    # A stochastic summary network gets its key through the wrapper (what fit does per step).
    dropout = eqx.nn.Sequential([eqx.nn.Linear(4, 3, key=k2), eqx.nn.Dropout(0.5)])
    stochastic = ij.nets.Constrained(ij.nets.Summarized(flow, dropout), LOWER, UPPER)
    assert stochastic.stochastic and not model.stochastic
    assert stochastic.with_key(jr.key(5)).flow.key is not None


def test_fit_on_a_uniform_box_learns_its_density_and_samples_stay_inside():
    lower, upper = np.array([0.0, -2.0]), np.array([1.0, 3.0])
    data = jr.uniform(jr.key(0), (2048, 2), minval=lower, maxval=upper)
    model = ij.nets.Constrained(ij.nets.RealNVP(2, depth=2, hidden=16, key=jr.key(1)), lower, upper)
    test = jr.uniform(jr.key(3), (4096, 2), minval=lower, maxval=upper)
    nll = eqx.filter_jit(lambda m: -jnp.mean(m.log_prob(test)))
    entropy = np.log(np.prod(upper - lower))  # the best possible test NLL, log 5
    assert nll(model) > entropy + 0.5  # it starts far off
    model, _ = ij.fit(model, data, key=jr.key(2), steps=300, batch_size=256, progress=False)
    assert nll(model) < entropy + 0.06
    assert _inside(model.sample(jr.key(4), (20000, 2)), lower, upper)
    assert jax.tree.leaves(eqx.filter(model.bounds, eqx.is_inexact_array)) == []  # bounds are not trained


def test_fit_vi_on_a_beta_target_stays_inside_and_finds_its_moments():
    """Beta(2, 5) x Beta(3, 3) on the unit square: log x is NaN outside, so every sample of the
    training must be inside; the fitted means match (2/7, 1/2)."""
    a, b = np.array([2.0, 3.0]), np.array([5.0, 3.0])
    log_target = lambda x: jnp.sum((a - 1) * jnp.log(x) + (b - 1) * jnp.log1p(-x), axis=1)
    model = ij.nets.Constrained(ij.nets.RealNVP(2, depth=2, hidden=16, key=jr.key(0)), 0.0, 1.0)
    model, history = ij.fit_vi(model, log_target, (2,), key=jr.key(1), steps=300, batch_size=128, progress=False)
    assert np.isfinite(history["train"]).all()
    # KL(q || p) >= 0: the loss is KL - log Z, and log Z = log B(2, 5) + log B(3, 3).
    log_z = float(np.sum(special.betaln(a, b)))
    assert np.mean(history["train"][-50:]) + log_z < 0.05
    x = model.sample(jr.key(2), (20000, 2))
    assert _inside(x, np.zeros(2), np.ones(2))
    np.testing.assert_allclose(jnp.mean(x, 0), a / (a + b), atol=0.02)


def test_values_on_a_bound_move_inside_and_values_outside_raise_eagerly_and_are_minus_inf_under_jit():
    model = ij.nets.Constrained(ij.nets.RealNVP(5, depth=1, hidden=4, key=jr.key(0)), LOWER, UPPER)
    x = _box_points(jr.key(1), 3)
    on_bounds = x.at[0, 0].set(0.0).at[1, 0].set(1.0).at[2, 1].set(0.5).at[0, 2].set(2.0).at[1, 4].set(-3.0)
    for dtype in (np.float64, np.float32):
        lp = cast(model, dtype).log_prob(on_bounds.astype(dtype))
        assert np.isfinite(lp).all() and (lp < cast(model, dtype).log_prob(x.astype(dtype))).all()
    outside = x.at[1, 0].set(1.5)
    with pytest.raises(ValueError, match=r"Constrained: x lies outside the bounds: x\[1, 0\] = 1.5 is not in "
                                         r"\[0.0, 1.0\] \(1 value\(s\) outside\).*-inf"):
        model.log_prob(outside)
    with pytest.raises(ValueError, match=r"Bounded: x lies outside the bounds: x\[0, 2\] = 7.0 is not in "
                                         r"\[-inf, 2.0\]"):
        model.bounds.forward(x.at[0, 2].set(7.0))
    with pytest.raises(ValueError, match=r"Constrained: x lies outside"):
        model.initialize(outside)
    lp, g = eqx.filter_jit(lambda m, x: (m.log_prob(x), jax.grad(lambda x: m.log_prob(x).sum())(x)))(model, outside)
    assert lp[1] == -np.inf and np.isfinite(lp[np.array([0, 2])]).all()
    assert np.isfinite(g).all()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: L.Bounded(1.0, 0.0), r"lower must be < upper in every dimension; got lower=1.0 >= upper=0.0\."),
        (lambda: L.Bounded([0.0, 2.0], [1.0, 2.0]), r"lower=2.0 >= upper=2.0 at dimension 1"),
        (lambda: L.Bounded(INF, INF), r"lower must be < upper"),
        (lambda: L.Bounded([0.0, 0.0, 0.0], [1.0, 1.0]), r"same number of dimensions; got lower of shape \(3,\) "
                                                         r"and upper of shape \(2,\)"),
        (lambda: L.Bounded(np.zeros((2, 2))), r"scalar or a vector \(D,\) of per-dimension bounds; got shape \(2, 2\)"),
        (lambda: L.Bounded([]), r"got shape \(0,\)"),
        (lambda: L.Bounded(np.nan), r"lower holds NaN; use -inf/inf"),
        (lambda: L.Bounded("zero"), r"lower must be a number or a vector"),
        (lambda: L.Bounded(0.0, one_sided="relu"), r"one_sided must be one of \('softplus', 'exp'\), got 'relu'"),
        (lambda: L.Bounded(1.0, 1.0 + 1e-9).forward(jnp.ones((2, 1), jnp.float32)),
         r"lower < upper is lost in float32"),
        (lambda: ij.nets.Constrained(L.ActNorm(2), 0.0, 1.0), r"flow must be an invjax flow .* got ActNorm"),
        (lambda: ij.nets.Constrained(ij.nets.Glow(1, 1, 1, 4, key=jr.key(0)), [0.0, 0.0], 1.0),
         r"per-dimension bounds \(D = 2\) need a flow on vectors \(B, D\), but Glow takes inputs with 2 spatial axes"),
        (lambda: ij.nets.Constrained(ij.nets.RealNVP(3, 1, 4, key=jr.key(0)), [0.0, 0.0], 1.0),
         r"2 bounds per sample, but RealNVP takes vectors of 3 dimensions, \(B, 3\)"),
        (lambda: ij.nets.Constrained(ij.nets.Flow(L.ActNorm(2)), [0.0, 0.0], 1.0).log_prob(jnp.ones((2, 2, 4))),
         r"Constrained: the bounds are per dimension \(D = 2\), so x must be a batch of vectors \(B, 2\); got shape "
         r"\(2, 2, 4\)"),
        (lambda: ij.nets.Constrained(ij.nets.Flow(L.ActNorm(2)), 0.0, 1.0).log_prob(jnp.ones(2)),
         r"Constrained: x must be batched"),
        (lambda: L.Bounded([0.0, 0.0]).inverse(jnp.zeros((2, 3))), r"Bounded: .* so y must be a batch of vectors"),
        (lambda: ij.sample_within(ij.nets.Flow(L.ActNorm(2)), jr.key(0), (4, 2), max_rounds=0),
         r"sample_within: max_rounds must be an integer >= 1, got 0"),
        (lambda: ij.sample_within(L.ActNorm(2), jr.key(0), (4, 2)), r"sample_within: flow must be an invjax flow .*"
                                                                    r"got ActNorm"),
        (lambda: ij.sample_within(ij.nets.Flow(L.ActNorm(2)), jr.key(0), (4, 2), lower=[0.0, 0.0, 0.0]),
         r"sample_within: the bounds are per dimension \(D = 3\), so the samples must be a batch of vectors \(B, 3\); "
         r"got shape \(4, 2\)"),
        (lambda: ij.sample_within(ij.nets.Flow(L.ActNorm(2)), 0, (4, 2)), r"sample_within: key must be one JAX"),
    ],
)
def test_errors_name_what_was_expected_and_what_was_given(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _gaussian_flow(mean, std):
    """A flow whose samples are ``N(mean, diag(std^2))``: ``x = (z - bias) exp(-log_scale)``."""
    body = L.ElementwiseAffine((len(mean),))
    body = eqx.tree_at(lambda b: (b.log_scale, b.bias), body,
                       (-jnp.log(jnp.asarray(std)), -jnp.asarray(mean) / jnp.asarray(std)))
    return ij.nets.Flow(body)


def test_sample_within_draws_the_truncated_distribution():
    """Against scipy's truncated normal: an interval and a half-line, one per dimension (about
    20% of the draws land inside, so most samples need several rounds)."""
    mean, std = np.array([0.3, -0.5]), np.array([0.7, 2.0])
    lower, upper = np.array([0.5, -1.0]), np.array([1.5, INF])
    flow = _gaussian_flow(mean, std)
    x = np.asarray(ij.sample_within(flow, jr.key(1), (20_000, 2), lower=lower, upper=upper))
    assert x.shape == (20_000, 2) and _inside(x, lower, upper)
    for d in range(2):
        reference = stats.truncnorm((lower[d] - mean[d]) / std[d], (upper[d] - mean[d]) / std[d], mean[d], std[d])
        assert abs(x[:, d].mean() - reference.mean()) < 4 * reference.std() / np.sqrt(len(x))
        assert abs(x[:, d].std() / reference.std() - 1) < 0.03
        assert stats.kstest(x[:, d], reference.cdf).pvalue > 1e-3
    # Round 0 is flow.sample: its samples inside are kept as they are.
    first = np.asarray(flow.sample(jr.key(1), (20_000, 2)))
    kept = np.all((first > lower) & (first < upper), axis=1)
    np.testing.assert_array_equal(x[kept], first[kept])


def test_sample_within_a_conditional_flow_keeps_each_samples_condition():
    flow = ij.nets.RealNVP(2, depth=1, hidden=8, cond_channels=1, key=jr.key(0))
    cond = jnp.repeat(jnp.array([[-3.0], [3.0]]), 500, axis=0)
    x = ij.sample_within(flow, jr.key(2), (1000, 2), cond, lower=-1.0, upper=1.0)
    assert _inside(x, -1.0, 1.0)
    # Each sample is one of its own draws with its own condition (round r: fold_in(key, r)).
    draws = np.stack([np.asarray(flow.sample(jr.key(2) if r == 0 else jr.fold_in(jr.key(2), r), (1000, 2), cond))
                      for r in range(100)])
    assert np.all(np.any(np.all(np.isclose(draws, np.asarray(x)[None]), axis=2), axis=0))


def test_sample_within_raises_when_too_little_mass_is_inside():
    flow = _gaussian_flow(np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match=r"sample_within: \d+ of 100 samples are still outside the bounds after 3 "
                                         r"rounds: 0 of 300 draws \(0\) landed inside.*Constrained"):
        ij.sample_within(flow, jr.key(0), (100, 2), lower=8.0, upper=9.0, max_rounds=3)
