"""InvertibleNetworks.jl's HINT-family options: ``scale=`` (Julia's ``activation=``) on every
HINT layer and network, the public conditional HINT step (Julia's ``ConditionalLayerHINT``),
and ``inverse_y`` (Julia's ``inverse_Y``) on the joint flows."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from cases import make, tiered
from helpers import flat, perturb, rel_err

import invjax as ij
from invjax import layers as L

K = jr.key(3)

# The HINT family, tiny, with keyword options passed through. The log-densities below were
# computed with the code before ``scale=`` existed (commit 4991255): the default must not move.
BUILDS = {
    "HINTCoupling": (
        lambda **o: ij.nets.Flow(L.HINTCoupling(4, 4, key=K, spatial_dims=0, min_channels=2, permute="both", **o)),
        (2, 4), None, [-5.769925788820548, -6.524410828888416]),
    "HINT": (lambda **o: ij.nets.HINT(4, 1, 4, key=K, spatial_dims=0, **o), (2, 4), None,
             [-5.73236383882227, -4.641927182470236]),
    "MultiscaleHINT": (lambda **o: ij.nets.MultiscaleHINT(1, 2, 1, 2, key=K, spatial_dims=1, **o), (2, 1, 4), None,
                       [-5.65436928461763, -6.69026789174827]),
    "ConditionalHINT": (lambda **o: ij.nets.ConditionalHINT(2, 1, 4, cond_channels=2, key=K, spatial_dims=0, **o),
                        (2, 2), (2, 2), [-5.439704081915673, -5.262253752863147]),
    "MultiscaleConditionalHINT": (
        lambda **o: ij.nets.MultiscaleConditionalHINT(1, 2, 1, 2, cond_channels=1, key=K, spatial_dims=1, **o),
        (2, 1, 4), (2, 1, 4), [-12.346750447567828, -10.139133294626445]),
}
UNCENTRED = L.SigmoidScale(0.5, 1.0, centred=False)  # glow_seismic.jl's SigmoidLayer(low=0.5, high=1)


def _couplings(tree):
    is_coupling = lambda n: isinstance(n, L.AffineCoupling)  # noqa: E731
    return [n for n in jax.tree.leaves(tree, is_leaf=is_coupling) if is_coupling(n)]


@pytest.mark.parametrize("name", BUILDS)
def test_default_scale_is_the_previous_network(name):
    build, x_shape, y_shape, before = BUILDS[name]
    flow = build()
    assert eqx.tree_equal(flow, build(scale=L.SigmoidScale()))
    assert all(c.scale == L.SigmoidScale() for c in _couplings(flow))
    flow = perturb(flow, jr.key(4), 0.3)
    x = jr.normal(jr.key(5), x_shape)
    lp = flow.log_prob(x) if y_shape is None else flow.log_prob_joint(x, jr.normal(jr.key(6), y_shape))
    np.testing.assert_allclose(lp, before, rtol=1e-10)


@pytest.mark.parametrize("name", BUILDS)
def test_scale_reaches_every_coupling(name):
    flow = BUILDS[name][0](scale=UNCENTRED)
    layer = flow.body if isinstance(flow, ij.nets.Flow) else flow
    assert layer.scale == UNCENTRED
    couplings = _couplings(flow)
    assert couplings and all(c.scale == UNCENTRED for c in couplings)
    assert not eqx.tree_equal(flow, BUILDS[name][0]())


def _marked_conditioner(calls):
    """A conditioner factory that records its calls and builds modules the defaults never
    are: an MLP of width 5 (vectors) or a ResidualBlock with a 3x3 middle kernel (signals)."""

    def make(in_channels, out_channels, *, key):
        calls.append((in_channels, out_channels))
        return L.MLP(in_channels, out_channels, 5, key=key) if calls[0] != "signal" else L.ResidualBlock(
            in_channels, out_channels, 3, key=key, spatial_dims=1, middle_kernel=3)

    return make


def _is_marked(conditioner):
    if isinstance(conditioner, L.MLP):
        return conditioner.mlp.width_size == 5
    return isinstance(conditioner, L.ResidualBlock) and conditioner.convs[1].weight.shape[-1] == 3


@pytest.mark.parametrize("name", tiered(BUILDS, slow={"MultiscaleConditionalHINT"}))
def test_make_conditioner_builds_every_couplings_conditioner(name):
    """InvertibleNetworks.jl's HINT blocks are 3-3-3 (invjax's default 3-1-3): ``make_conditioner``
    reaches every coupling of the recursion, both lanes and the joint coupling, with the
    coupling's sizes, and the flow still inverts."""
    build, x_shape, cond_shape, _ = BUILDS[name]
    calls = ["signal"] if len(x_shape) == 3 else ["vector"]
    flow = build(make_conditioner=_marked_conditioner(calls))
    couplings = _couplings(flow)
    assert couplings and all(_is_marked(c.conditioner) for c in couplings)
    # One call per coupling (a stack's steps are built by one vmapped call), with the
    # coupling's sizes: (kept + condition channels, 2 x transformed channels).
    assert len(calls) - 1 == len(couplings)
    assert sorted(calls[1:]) == sorted((c.split + c.cond_channels, 2 * (c.in_channels - c.split)) for c in couplings)
    x = jr.normal(jr.key(1), x_shape)
    cond = None if cond_shape is None else jr.normal(jr.key(2), cond_shape)
    flow = perturb(flow, jr.key(3))
    np.testing.assert_allclose(flow.inverse(flow.forward(x, cond)[0], cond), x, atol=1e-10)


def test_conditional_hint_step_holds_the_scale():
    step = L.ConditionalHINTStep(2, 4, cond_channels=2, key=K, spatial_dims=0, scale=L.ExpClampScale(0.5))
    assert step.scale == L.ExpClampScale(0.5)
    assert len(_couplings(step)) == 3 and all(c.scale == L.ExpClampScale(0.5) for c in _couplings(step))


def test_hint_coupling_scale_bounds_its_log_determinant():
    """With ``s`` in ``(0.5, 1)``, each of the 4 scaled elements (a 4-channel recursion down to
    2 channels: 1 + 2 + 1) adds a log-scale in ``(log 0.5, 0)``, however large the raw output."""
    build = lambda **o: perturb(L.HINTCoupling(4, 4, key=K, spatial_dims=0, min_channels=2, **o), jr.key(1), 3.0)  # noqa: E731
    layer, x = build(scale=UNCENTRED), 5.0 * jr.normal(jr.key(2), (64, 4))
    z, logdet = layer.forward(x)
    assert bool(jnp.all(logdet < 0)) and bool(jnp.all(logdet > 4 * np.log(0.5)))
    assert bool(jnp.any(build().forward(x)[1] > 0))  # the same parameters with the default range (0.5, 2)
    np.testing.assert_allclose(layer.inverse(z), x, atol=1e-10)


def test_conditional_hint_step_is_the_networks_step():
    """The public layer is the body of a one-step ConditionalHINT (same key, same parameters)
    and its ``y`` lane (the first ``C_y`` channels) never sees ``x``."""
    net = ij.nets.ConditionalHINT(2, 1, 4, cond_channels=3, key=K, spatial_dims=0)
    step = L.ConditionalHINTStep(2, 4, cond_channels=3, key=jr.split(K, 1)[0], spatial_dims=0)
    params, static = eqx.partition(net.body.layer, eqx.is_array)
    first = eqx.combine(jax.tree.map(lambda a: a[0], params), static)
    assert jax.tree.structure(first) == jax.tree.structure(step.body)
    arrays = lambda t: jax.tree.leaves(eqx.filter(t, eqx.is_array))  # noqa: E731
    for a, b in zip(arrays(first), arrays(step.body), strict=True):
        np.testing.assert_array_equal(a, b)
    step = perturb(step, jr.key(1))
    y, x1, x2 = (jr.normal(k, s) for k, s in zip(jr.split(jr.key(2), 3), [(3, 3), (3, 2), (3, 2)], strict=True))
    w1, w2 = (step.forward(jnp.concatenate([y, x], axis=1))[0] for x in (x1, x2))
    np.testing.assert_allclose(w1[:, :3], w2[:, :3], atol=1e-12)
    assert not np.allclose(w1[:, 3:], w2[:, 3:])


JOINT = ["conditional_hint_vector", "multiscale_conditional_hint_signal"]


@pytest.mark.parametrize("name", tiered(JOINT, slow={"multiscale_conditional_hint_signal"}))
def test_inverse_y_inverts_forward_y_and_agrees_with_the_joint_inverse(name):
    flow, x, y = make(name, jr.key(11))
    z_y, _ = flow.forward_y(y)
    np.testing.assert_allclose(flow.inverse_y(z_y), y, atol=1e-10)
    z_x, z_y = jr.normal(jr.key(12), x.shape), jr.normal(jr.key(13), y.shape)
    y_back = flow.inverse_y(z_y)
    assert y_back.shape == y.shape and not np.allclose(y_back, z_y)
    np.testing.assert_allclose(y_back, flow.inverse_joint(z_x, z_y)[1], atol=1e-10)


@pytest.mark.parametrize("name", tiered(JOINT, slow={"multiscale_conditional_hint_signal"}))
def test_inverse_y_gradients_match_autodiff(name):
    flow, _, y = make(name, jr.key(14))
    w = jr.normal(jr.key(15), y.shape)
    loss = lambda f, z: jnp.sum(jnp.sin(f.inverse_y(z)) * w)  # noqa: E731
    grad = eqx.filter_jit(eqx.filter_grad(lambda a: loss(*a)))
    z_y = jr.normal(jr.key(16), y.shape)
    (g_flow, g_z), (a_flow, a_z) = grad((flow, z_y)), grad((ij.with_backprop(flow, ij.Autodiff()), z_y))
    assert flat(a_flow).any() and flat(a_z).any()
    assert rel_err(g_flow, a_flow) < 1e-6 and rel_err(g_z, a_z) < 1e-6


def _second_level(flow, split_scales):
    """The second level's chain: inside the split (FactorOut, and for two lanes the
    Conjugate(Permute, FactorOut) around it) or, unsplit, right in the first level's chain."""
    inner = flow.body.layers[2]
    while split_scales and not isinstance(inner, L.Chain):
        inner = inner.inner
    return inner


@pytest.mark.parametrize("name", ["MultiscaleHINT", "MultiscaleConditionalHINT"])
def test_split_scales_false_keeps_every_channel_to_the_last_level(name):
    """InvertibleNetworks.jl's ``split_scales=false``: the last level's steps run on all
    ``C 2**(n levels)`` channels, so changing their parameters moves every latent entry;
    with ``split_scales=True`` the half factored out after the first level stays put."""
    build, x_shape, cond_shape, _ = BUILDS[name]
    x = jr.normal(jr.key(1), x_shape)
    cond = None if cond_shape is None else jr.normal(jr.key(2), cond_shape)
    for split_scales in (True, False):
        flow = perturb(build(split_scales=split_scales), jr.key(4))
        moved = eqx.tree_at(lambda f, s=split_scales: _second_level(f, s).layers[1], flow,
                            perturb(_second_level(flow, split_scales).layers[1], jr.key(5), 0.5))
        # In the first level's squeezed frame, the second half of the channels is what a
        # split factors out (the final unsqueeze spreads it over every pixel).
        squeezed = lambda f: L.HaarSqueeze().forward(f.forward(x, cond)[0])[0]  # noqa: E731
        changed = np.abs(np.asarray(squeezed(moved) - squeezed(flow))) > 1e-9
        half = changed.shape[1] // 2
        if split_scales:
            assert changed[:, :half].any() and not changed[:, half:].any()
        else:
            assert changed.all(), changed.mean()
