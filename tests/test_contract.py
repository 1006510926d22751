"""The contract every layer and network satisfies (float64 math checks)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from cases import CASES, SLOW_CASES, make, tiered
from helpers import flat, rel_err

import invjax as ij

NAMES = sorted(CASES)
# The gradient checks of the two-level 3D HINTs cost over 4 minutes of CI compilation
# (both directions; their second level runs a HINT recursion on 32 channels), about 10% of
# the suite. Every part of them is checked in 3D elsewhere (glow_volume: 3D squeezes and
# splits; hyperbolic_volume: the 3D Haar squeeze; hint_volume and conditional_hint_volume:
# the 3D HINT steps) and the wholes in 1D and 2D; their round trips, rebuilt inputs and
# log-determinants stay checked in 3D.
HEAVY_3D = ("multiscale_hint_volume", "multiscale_conditional_hint_volume")
GRADIENT_NAMES = [name for name in NAMES if name not in HEAVY_3D]


def _loss(direction):
    """A scalar loss using both outputs nonlinearly, in either direction."""

    def loss(flow, v, cond, weights):
        if direction == "forward":
            out, logdet = flow.forward(v, cond)
        else:
            out, logdet = flow.inverse_and_log_det(v, cond)
        return jnp.sum(jnp.sin(out) * weights.reshape(out.shape)) + jnp.sum(logdet**2) + jnp.sum(logdet)

    return loss


def _body_input(flow, x, cond):
    """``(body, input, cond)`` of the flow's body: a joint flow runs its body on
    ``concat([y, x], axis=1)`` without a condition."""
    if isinstance(flow, ij.nets.AbstractJointFlow):
        return flow.body, jnp.concatenate([cond, x], axis=1), None
    return flow.body, x, cond


@pytest.mark.parametrize("name", tiered(NAMES))
def test_round_trip_inverse_log_det_backward_rebuilds_initialize_and_file(name, tmp_path):
    flow, x, cond = make(name, jr.key(0))

    @eqx.filter_jit  # one compilation for the whole contract of the maps
    def maps(flow, x, cond):
        z, logdet = flow.forward(x, cond)
        x_back, logdet_inverse = flow.inverse_and_log_det(z, cond)
        # The backward passes rebuild the body's input (backward) and output (inverse_backward).
        body, v, c = _body_input(flow, x, cond)
        w, body_logdet = body.forward(v, c)
        rebuilt = (body.backward(w, jnp.cos(w), jnp.ones_like(body_logdet), c)[0],
                   body.inverse_backward(v, jnp.cos(v), jnp.ones_like(body_logdet), c)[0])
        # Data far from standardised, so initialisation must change every ActNorm.
        new = flow.initialize(3.0 + 2.0 * x, cond)
        x_back_new = new.inverse(new.forward(3.0 + 2.0 * x, cond)[0], cond)
        return z, logdet, x_back, logdet_inverse, (v, w), rebuilt, new, x_back_new

    z, logdet, x_back, logdet_inverse, (v, w), (v_rebuilt, w_rebuilt), new, x_back_new = maps(flow, x, cond)
    assert logdet.shape == x.shape[:1] and z.dtype == x.dtype and z.size == x.size
    if not isinstance(flow, ij.nets.Flow):  # networks keep the input's shape; squeezes do not
        assert z.shape == x.shape
    np.testing.assert_allclose(x_back, x, rtol=0, atol=1e-10)
    np.testing.assert_allclose(logdet_inverse, -logdet, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(v_rebuilt, v, rtol=0, atol=1e-10, err_msg="backward rebuilt a wrong input")
    np.testing.assert_allclose(w_rebuilt, w, rtol=0, atol=1e-10, err_msg="inverse_backward rebuilt a wrong output")

    # initialize is part of every layer's contract: data-dependent initialisation reaches
    # every ActNorm, whatever wraps it (Invert, Stack, OnChannels, lanes, ...).
    assert jax.tree.structure(new) == jax.tree.structure(flow)
    is_actnorm = lambda n: isinstance(n, ij.layers.ActNorm)  # noqa: E731
    before = [n for n in jax.tree.leaves(flow, is_leaf=is_actnorm) if is_actnorm(n)]
    after = [n for n in jax.tree.leaves(new, is_leaf=is_actnorm) if is_actnorm(n)]
    for old, fresh in zip(before, after, strict=True):
        assert not np.allclose(old.log_scale, fresh.log_scale), "an ActNorm was left uninitialised"
    # The same for i-RIM's gradient normalisation.
    is_step = lambda n: isinstance(n, ij.layers.GradientStep)  # noqa: E731
    steps = [[n for n in jax.tree.leaves(f, is_leaf=is_step) if is_step(n)] for f in (flow, new)]
    for old, fresh in zip(*steps, strict=True):
        assert not np.allclose(old.scale, fresh.scale), "a GradientStep was left uninitialised"
    np.testing.assert_allclose(x_back_new, 3.0 + 2.0 * x, atol=1e-9)

    # Every case survives a file, rebuilt from the file's data alone (no template) unless it
    # holds a function of the tests' own (map_cond's ``_double``, i-RIM's operators: off
    # load's allow-list).
    own_function = name.startswith(("map_cond", "gradient_step", "irim"))
    loaded = ij.load(ij.save(tmp_path / "case.eqx", flow), like=flow if own_function else None)
    assert jax.tree.structure(loaded) == jax.tree.structure(flow)
    for a, b in zip(jax.tree.leaves(eqx.filter(loaded, eqx.is_array)), jax.tree.leaves(eqx.filter(flow, eqx.is_array)),
                    strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("name", tiered(NAMES))
def test_log_det_matches_jacobian(name):
    flow, x, cond = make(name, jr.key(1))
    plain = ij.with_backprop(flow, ij.Autodiff())  # jacfwd needs forward mode

    @eqx.filter_jit
    def per_sample(flow, x, cond):
        def one(args):
            v, c = args
            c = None if c is None else c[None]
            fn = lambda u: flow.forward(u.reshape((1,) + v.shape), c)[0].ravel()
            return jnp.linalg.slogdet(jax.jacfwd(fn)(v.ravel()))

        return jax.lax.map(one, (x, cond)), flow.forward(x, cond)[1]

    (sign, expected), logdet = per_sample(plain, x, cond)
    assert bool(jnp.all(sign != 0))
    np.testing.assert_allclose(logdet, expected, rtol=1e-9, atol=1e-9)


def _gradient_params():
    """Every case in both directions; the fast tier runs the forward direction of its cases and
    the inverse direction of the layer cases (a network's inverse is its layers' in reverse)."""
    networks = {name for name, (build, *_) in CASES.items()
                if not isinstance(eqx.filter_eval_shape(build, jr.key(0)), ij.nets.Flow)}
    return [pytest.param(name, direction, id=f"{name}-{direction}",
                         marks=[pytest.mark.slow] if name in SLOW_CASES or (direction == "inverse" and name in networks)
                         else [])
            for name in GRADIENT_NAMES for direction in ("forward", "inverse")]


@pytest.mark.parametrize(("name", "direction"), _gradient_params())
def test_gradients_match_autodiff_and_finite_differences(name, direction):
    flow, x, cond = make(name, jr.key(2))
    if direction == "inverse":  # a latent of the forward's output shape (squeezes change shapes); every
        # point is a latent of some input, and its shape needs no compilation of the forward
        z = eqx.filter_eval_shape(lambda f, x, c: f.forward(x, c)[0], flow, x, cond)
        x = jr.normal(jr.key(5), z.shape, z.dtype)
    weights = jr.normal(jr.key(3), x.shape)
    loss = _loss(direction)
    g_flow, g_x, g_cond = _grads(loss, flow, x, cond, weights)
    # Plain autodiff, compiled once: its gradient is the reference, its value serves the
    # finite differences below.
    plain = ij.with_backprop(flow, ij.Autodiff())
    value_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(lambda args: loss(*args, weights)))
    _, (a_flow, a_x, a_cond) = value_and_grad((plain, x, cond))
    assert rel_err(g_x, a_x) < 1e-6
    if cond is not None:  # gradients reach the condition (and so a network upstream of it)
        assert flat(a_cond).any() and rel_err(g_cond, a_cond) < 1e-6
    if flat(a_flow).size:
        assert rel_err(g_flow, a_flow) < 1e-6

    # Central finite difference along a random direction in (parameters, input).
    params, static = eqx.partition((plain, x, cond), eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jr.split(jr.key(4), len(leaves))
    tangent = jax.tree.unflatten(treedef, [jr.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys, strict=True)])
    shifted = lambda eps: eqx.combine(jax.tree.map(lambda p, t: p + eps * t, params, tangent), static)
    eps = 1e-6
    numeric = (value_and_grad(shifted(eps))[0] - value_and_grad(shifted(-eps))[0]) / (2 * eps)
    analytic = np.dot(flat(tangent), flat((g_flow, g_x, g_cond)))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def _grads(loss, flow, x, cond, weights):
    return eqx.filter_jit(eqx.filter_grad(lambda args: loss(*args, weights)))((flow, x, cond))


@pytest.mark.parametrize("name", ["glow_image", "realnvp", "conditional_glow_vector_cond"])
def test_log_prob_sample_and_sample_and_log_prob_agree(name):
    flow, x, cond = make(name, jr.key(5))
    lp = eqx.filter_jit(lambda f, x, c: f.log_prob(x, c))(flow, x, cond)
    assert lp.shape == x.shape[:1] and bool(jnp.all(jnp.isfinite(lp)))
    samples = flow.sample(jr.key(6), x.shape, cond)
    assert samples.shape == x.shape
    xs, log_q = flow.sample_and_log_prob(jr.key(6), x.shape, cond)
    np.testing.assert_allclose(xs, samples, atol=1e-12)
    np.testing.assert_allclose(log_q, flow.log_prob(xs, cond), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", tiered(["conditional_hint_vector", "multiscale_conditional_hint_image"],
                                         slow={"multiscale_conditional_hint_image"}))
def test_joint_flow_factorises_into_posterior_and_y_lane(name):
    """``log p(x, y) = log p(x | y) + log p(y)``, with ``p(y)`` from the ``y`` lane alone,
    and the conditional and joint inverses agree with the forward passes."""
    flow, x, y = make(name, jr.key(7))
    joint = eqx.filter_jit(lambda f, x, y: f.forward_joint(x, y))
    z_x, z_y, logdet = joint(flow, x, y)
    z_x_cond, logdet_x = eqx.filter_jit(lambda f, x, y: f.forward(x, y))(flow, x, y)
    z_y_alone, logdet_y = eqx.filter_jit(lambda f, y: f.forward_y(y))(flow, y)
    np.testing.assert_allclose(z_x_cond, z_x, atol=1e-10)
    np.testing.assert_allclose(z_y_alone, z_y, atol=1e-10)
    np.testing.assert_allclose(logdet_x + logdet_y, logdet, rtol=1e-10, atol=1e-10)
    lp_joint = flow.log_prob_joint(x, y)
    lp_y = ij.StandardNormal().log_prob(z_y) + logdet_y
    np.testing.assert_allclose(flow.log_prob(x, y) + lp_y, lp_joint, rtol=1e-10, atol=1e-10)
    x_back, y_back, logdet_inv = flow.inverse_joint(z_x, z_y)
    np.testing.assert_allclose(x_back, x, atol=1e-10)
    np.testing.assert_allclose(y_back, y, atol=1e-10)
    np.testing.assert_allclose(logdet_inv, -logdet, rtol=1e-10, atol=1e-10)


def test_cases_hold_every_network_in_every_dimensionality():
    """Every network is a case in every dimensionality it supports, with two levels or more
    where it has levels (built abstractly: nothing is computed)."""
    supported = {
        ij.nets.RealNVP: {0},
        ij.nets.Glow: {0, 1, 2, 3},
        ij.nets.HINT: {0, 1, 2, 3},
        ij.nets.MultiscaleHINT: {1, 2, 3},
        ij.nets.Hyperbolic: {1, 2, 3},
        ij.nets.ConditionalHINT: {0, 1, 2, 3},
        ij.nets.MultiscaleConditionalHINT: {1, 2, 3},
        ij.nets.IRIM: {1, 2, 3},
        ij.nets.IUNet: {1, 2, 3},
    }
    found = {network: set() for network in supported}
    fast = set()
    defaults_invertible = True
    for name, (build, *_) in CASES.items():
        flow = eqx.filter_eval_shape(build, jr.key(0))
        defaults_invertible &= isinstance(flow.backprop, ij.Invertible)
        if type(flow) in found and getattr(flow, "levels", 2) >= 2:
            found[type(flow)].add(flow.spatial_dims)
            if name not in SLOW_CASES:
                fast.add(type(flow))
    assert found == supported
    assert fast == set(supported)  # the fast tier runs every network's contract once
    assert defaults_invertible  # every network stores no activations unless asked to
    assert SLOW_CASES <= set(CASES)


def _joint_losses(wx, wy):
    """Scalar losses of each joint method, using every output nonlinearly."""

    def score(u, v, logdet):
        return jnp.sum(jnp.sin(u) * wx) + jnp.sum(jnp.sin(v) * wy) + jnp.sum(logdet**2) + jnp.sum(logdet)

    return {
        "forward_joint": lambda f, x, y: score(*f.forward_joint(x, y)),
        "inverse_joint": lambda f, z_x, z_y: score(*f.inverse_joint(z_x, z_y)),
        "log_prob_joint": lambda f, x, y: jnp.sum(jnp.sin(f.log_prob_joint(x, y))),
        "forward_y": lambda f, x, y: score(jnp.zeros(()), *f.forward_y(y)),
    }


@pytest.mark.parametrize("name", tiered(["conditional_hint_vector", "multiscale_conditional_hint_signal"],
                                         slow={"multiscale_conditional_hint_signal"}))
def test_joint_methods_gradients_match_autodiff(name):
    """Gradients (parameters, x and y) of forward_joint, inverse_joint, log_prob_joint and
    forward_y: the invertible backward (both lanes' log-determinants) against autodiff."""
    flow, x, y = make(name, jr.key(8))
    losses = _joint_losses(jr.normal(jr.key(9), x.shape), jr.normal(jr.key(10), y.shape))

    @eqx.filter_jit  # one compilation per way of differentiating, for all four methods
    def grads(flow, x, y):
        return {method: eqx.filter_grad(lambda a, f=loss: f(*a))((flow, x, y)) for method, loss in losses.items()}

    invertible, plain = grads(flow, x, y), grads(ij.with_backprop(flow, ij.Autodiff()), x, y)
    for method, reference in plain.items():
        (g_flow, g_x, g_y), (a_flow, a_x, a_y) = invertible[method], reference
        assert flat(a_flow).any() and flat(a_y).any(), method
        for got, expected, what in [(g_flow, a_flow, "parameters"), (g_x, a_x, "x"), (g_y, a_y, "y")]:
            err = rel_err(got, expected)
            assert err < 1e-6, f"{method}: gradient of the {what}, relative error {err:.3g}"
