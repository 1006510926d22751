"""The mixes users make: dtypes, forward-mode autodiff, stochastic and stateful summary networks."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from helpers import cast, perturb

import invjax as ij


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
