"""The mixes users make: dtypes, forward-mode autodiff, stochastic and stateful summary networks."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from cases import NETWORKS
from helpers import cast, perturb

import invjax as ij
from invjax import layers as L


def test_an_input_dtype_other_than_the_parameters_is_named():
    flow = ij.nets.Glow(1, 2, 1, 4, key=jr.key(0))  # float64 (the tests enable x64)
    x = jnp.zeros((2, 1, 4, 4))
    mixes = [
        (flow, x.astype(jnp.float32), r"x has dtype float32 but the parameters are float64.*x\.astype\(jnp\.float64\)"),
        (cast(flow, jnp.float32), x.astype(jnp.float16), r"x has dtype float16 but the parameters are float32"),
        (cast(flow, jnp.bfloat16), x.astype(jnp.float32), r"x has dtype float32 but the parameters are bfloat16"),
    ]
    for model, data, match in mixes:
        for method in (model.log_prob, model.forward, model.inverse, model.initialize):
            with pytest.raises(ValueError, match=match):
                method(data)
    conditional = ij.nets.RealNVP(2, 1, 4, cond_channels=3, key=jr.key(0))
    with pytest.raises(ValueError, match=r"cond has dtype float32 but the parameters are float64"):
        conditional.log_prob(jnp.zeros((2, 2)), jnp.zeros((2, 3), jnp.float32))
    with pytest.raises(ValueError, match=r"x has dtype float32"):
        conditional.inverse(jnp.zeros((2, 2), jnp.float32), jnp.zeros((2, 3)))


def test_forward_mode_through_autodiff_and_hessian_vector_products_by_reverse_over_reverse():
    """The documented ways out of "can't apply forward-mode autodiff to a custom_vjp": both
    checked against references (the reverse-mode gradient; the autodiff Hessian)."""
    flow = perturb(ij.nets.RealNVP(2, 2, 8, key=jr.key(0)), jr.key(1))
    x, v = jr.normal(jr.key(2), (3, 2)), jr.normal(jr.key(3), (3, 2))
    total = lambda f, x: f.log_prob(x).sum()
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(lambda x: total(flow, x), (x,), (v,))  # JAX's own refusal under the invertible backward
    plain = ij.with_backprop(flow, ij.Autodiff())
    tangent = jax.jit(lambda x: jax.jvp(lambda x: total(plain, x), (x,), (v,))[1])(x)
    np.testing.assert_allclose(tangent, jnp.vdot(jax.jit(jax.grad(lambda x: total(flow, x)))(x), v), rtol=1e-10)
    hessian = jax.jit(jax.hessian(lambda x: total(plain, x)))(x)
    hvp = jax.jit(jax.grad(lambda x: jnp.vdot(jax.grad(lambda x: total(flow, x))(x), v)))(x)
    np.testing.assert_allclose(hvp, jnp.einsum("ijkl,kl->ij", hessian, v), rtol=1e-8, atol=1e-10)


def _dropout_summary(key):
    k1, k2 = jr.split(key)
    return eqx.nn.Sequential([eqx.nn.Linear(5, 16, key=k1), eqx.nn.Lambda(jax.nn.tanh), eqx.nn.Dropout(0.5),
                              eqx.nn.Linear(16, 3, key=k2)])


def test_a_stochastic_summary_network_gets_a_key_in_training_and_none_in_evaluation():
    flow = perturb(ij.nets.RealNVP(2, 2, 8, cond_channels=3, key=jr.key(0)), jr.key(1), 0.3)
    model = ij.nets.Summarized(flow, _dropout_summary(jr.key(2)))
    assert model.stochastic and not ij.nets.Summarized(flow, eqx.nn.MLP(5, 3, 8, 1, key=jr.key(2))).stochastic
    x, y = jr.normal(jr.key(3), (8, 2)), jr.normal(jr.key(4), (8, 5))
    # Without a key: inference mode (dropout off), deterministic.
    expected = flow.log_prob(x, jax.vmap(eqx.nn.inference_mode(model.summary))(y))
    np.testing.assert_allclose(model.log_prob(x, y), expected, rtol=1e-12)
    # With a key: dropout on, a different key a different condition, the same key the same.
    a, b = model.with_key(jr.key(5)).log_prob(x, y), model.with_key(jr.key(6)).log_prob(x, y)
    assert not np.allclose(a, b) and not np.allclose(a, expected)
    np.testing.assert_array_equal(a, model.with_key(jr.key(5)).log_prob(x, y))
    # fit draws a fresh key per step, so the training loss of a model that cannot learn
    # (learning rate 0) still varies from step to step; the returned model has no key.
    import optax

    trained, history = ij.fit(model, x, y, key=jr.key(7), steps=4, batch_size=8, optimizer=optax.sgd(0.0),
                              initialize=False, progress=False)
    assert trained.key is None and len(set(history["train"])) == 4
    assert history["train"][0] != pytest.approx(float(-expected.mean()))


def test_a_stateful_summary_network_is_refused_with_an_alternative():
    flow = ij.nets.RealNVP(2, 2, 8, cond_channels=3, key=jr.key(0))
    stateful = eqx.nn.Sequential([eqx.nn.Linear(5, 3, key=jr.key(1)), eqx.nn.BatchNorm(3, "batch", mode="batch")])
    with pytest.raises(ValueError, match=r"holds state \(BatchNorm\).*eqx\.nn\.LayerNorm"):
        ij.nets.Summarized(flow, stateful)


def test_an_empty_batch_gives_empty_results_in_every_network_and_initialize_refuses_it():
    """B = 0 is a batch like any other (as for a JAX function): empty latents, log-densities and
    samples of the right shapes; only the data initialisation, which takes statistics, refuses it.
    One network is also run (not only traced) end to end."""
    empty = jnp.zeros((0, 1, 8, 8))
    assert NETWORKS["glow"][0](1).log_prob(empty).shape == (0,)
    for name, (make, x_shape, cond_shape) in NETWORKS.items():
        flow = make(1)
        x = jnp.zeros((0, *x_shape[1:]))
        cond = None if cond_shape is None else jnp.zeros((0, *cond_shape[1:]))
        # Shapes are decided when tracing (where B = 0 used to fail): no need to compile.
        z, logdet = eqx.filter_eval_shape(lambda f, x, c: f.forward(x, c), flow, x, cond)
        assert (z.shape, logdet.shape) == (x.shape, (0,)), name
        assert eqx.filter_eval_shape(lambda f, x, c: f.log_prob(x, c), flow, x, cond).shape == (0,), name
        sample = eqx.filter_eval_shape(lambda f, c, shape=x.shape: f.sample(jr.key(1), shape, c), flow, cond)
        assert sample.shape == x.shape, name
        with pytest.raises(ValueError, match="initialize needs at least one sample"):
            flow.initialize(x, cond)
    for squeeze in (L.Squeeze, L.HaarSqueeze, L.CheckerboardSqueeze, L.ColumnSqueeze, L.PatchSqueeze):
        for shape in ((0, 2, 4, 4), (0, 2, 4, 4, 4)):
            expected = squeeze().forward(jnp.zeros((1, *shape[1:])))[0].shape[1:]
            y, logdet = squeeze().forward(jnp.zeros(shape))
            assert (y.shape, logdet.shape) == ((0, *expected), (0,)), squeeze
            assert squeeze().inverse(y).shape == shape, squeeze


def test_numpy_float64_data_is_taken_as_jax_takes_it_and_a_real_mix_is_still_named():
    """With x64 off (JAX's default) every JAX function turns NumPy float64 into float32, and so
    does every flow, fit included; with x64 on, float64 into float32 parameters is a real mix."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 2)), rng.normal(size=(16, 3))
    jax.config.update("jax_enable_x64", False)
    try:
        flow = perturb(ij.nets.RealNVP(2, 2, 8, cond_channels=3, key=jr.key(0)), jr.key(1), 0.3)
        model = ij.nets.Summarized(flow, eqx.nn.MLP(3, 3, 8, 1, key=jr.key(2)))
        x32, y32 = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
        assert flow.dtype == jnp.float32 and x.dtype == np.float64
        np.testing.assert_array_equal(flow.log_prob(x, y), flow.log_prob(x32, y32))
        np.testing.assert_array_equal(model.log_prob(x, y), model.log_prob(x32, y32))
        np.testing.assert_array_equal(flow.inverse(x, y), flow.inverse(x32, y32))
        run = lambda a, b: ij.fit(flow, a, b, key=jr.key(3), steps=2, batch_size=8, validation=(a[:4], b[:4]),
                                  eval_every=1, progress=False)[1]
        assert run(x, y) == run(x32, y32)
    finally:
        jax.config.update("jax_enable_x64", True)
    with pytest.raises(ValueError, match=r"x has dtype float64 but the parameters are float32"):
        flow.log_prob(x, y.astype(np.float32))


def test_nan_or_inf_in_the_data_that_initialises_actnorm_or_validates_is_named():
    flow = ij.nets.RealNVP(2, 2, 8, cond_channels=3, key=jr.key(0))
    x, y = jr.normal(jr.key(1), (8, 2)), jr.normal(jr.key(2), (8, 3))
    with pytest.raises(ValueError, match=r"RealNVP.initialize: x contains NaN or Inf"):
        flow.initialize(x.at[3, 1].set(jnp.nan), y)
    with pytest.raises(ValueError, match=r"RealNVP.initialize: cond contains NaN or Inf"):
        flow.initialize(x, y.at[0, 0].set(jnp.inf))
    with pytest.raises(ValueError, match=r"fit: cond in the validation set contains NaN or Inf"):
        ij.fit(flow, x, y, key=jr.key(3), steps=1, batch_size=4, validation=(x[:2], y[:2].at[1, 2].set(jnp.nan)),
               progress=False)
    with pytest.raises(ValueError, match=r"fit: in the validation set, x has shape \(2, 5\)"):
        ij.fit(flow, x, y, key=jr.key(3), steps=1, batch_size=4, validation=(jnp.zeros((2, 5)), y[:2]),
               progress=False)


def test_a_legacy_uint32_key_is_a_key():
    flow = ij.nets.RealNVP(2, 1, 8, key=jr.PRNGKey(0))
    legacy, typed = jr.PRNGKey(1), jr.wrap_key_data(jr.PRNGKey(1))
    np.testing.assert_array_equal(flow.sample(legacy, (3, 2)), flow.sample(typed, (3, 2)))


def test_a_volume_of_more_than_2_to_the_31_positions_traces():
    # ActNorm's and the 1x1 convolution's log-determinants scale by the number of positions,
    # 2**32 here (the first level, after its squeeze): as a Python int it overflowed JAX's
    # int32 conversion (found compiling a 3D Glow at 3584^3 for spatial_memory.py). Traced
    # only: nothing is allocated.
    with jax.enable_x64(False):  # as users run it: Python ints become int32
        flow = ij.nets.Glow(1, 1, 1, 4, spatial_dims=3, key=jax.random.key(0))
        x = jax.ShapeDtypeStruct((1, 1, 4096, 4096, 2048), jnp.float32)
        z, logdet = jax.eval_shape(flow.forward, x)
    assert z.shape == x.shape and logdet.shape == (1,) and logdet.dtype == jnp.float32


@pytest.mark.parametrize(("features", "depth", "seed"), [(2, 3, 0), (2, 3, 9), (2, 3, 22), (10, 5, 10015),
                                                        (10, 5, 100013), (5, 5, 10004)])
def test_every_feature_of_a_realnvp_sees_the_condition(features, depth, seed):
    # With a random order per step a RealNVP could leave a feature untransformed in every
    # step (two features: keys 9 and 22 drew the identity three times at depth 3; ten: the
    # sbibm benchmark's flows for gaussian_linear and bernoulli_glm, slcp's five): it never depended on
    # the condition, and its posterior was the prior. The halves now trade places.
    key = jr.split(jr.key(seed), 4)[2] if features > 2 else jr.key(seed)  # the benchmark's flow keys
    flow = ij.nets.RealNVP(features, depth, 8, cond_channels=1, key=key)
    flow = jax.tree.map(lambda a: a + 0.1 if eqx.is_inexact_array(a) else a, flow)  # away from the identity
    x, cond = jnp.linspace(-0.5, 0.5, features)[None], jnp.array([[0.5]])
    dz_dcond = jax.jacobian(lambda c: flow.forward(x, c)[0])(cond)[0, :, 0, 0]
    assert np.all(np.abs(dz_dcond) > 1e-6), dz_dcond
