"""Standardized: z-scoring of parameters and observations inside the model, in closed form,
through gradients, under fit (never trained), with Summarized models, saved and loaded."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from helpers import flat, perturb
from jax.scipy.stats import norm

import invjax as ij

MEAN, STD = np.array([300.0, -2.0, 0.01]), np.array([50.0, 0.5, 1e-3])


def test_log_prob_and_sample_are_those_of_the_data_gaussian_around_an_identity_flow():
    """Around ``Flow(ActNorm)`` (the identity, a standard normal), the model is ``N(mean, std^2)``
    exactly: ``log_prob`` includes ``-sum(log std)``, per element of a sample (per channel of
    an image: ``H * W`` times)."""
    model = ij.nets.Standardized(ij.nets.Flow(ij.layers.ActNorm(3)), MEAN, STD)
    x = MEAN + STD * jr.normal(jr.key(0), (4, 3), jnp.float64) * 2
    np.testing.assert_allclose(model.log_prob(x), norm.logpdf(x, MEAN, STD).sum(1), rtol=1e-12)
    sample, log_q = model.sample_and_log_prob(jr.key(1), (4, 3))
    np.testing.assert_allclose(log_q, norm.logpdf(sample, MEAN, STD).sum(1), rtol=1e-12)
    np.testing.assert_allclose(sample, MEAN + STD * ij.nets.Flow(ij.layers.ActNorm(3)).sample(jr.key(1), (4, 3)))

    mean, std = np.array([1.0, -4.0])[:, None, None], np.array([3.0, 0.2])[:, None, None]
    image = ij.nets.Standardized(ij.nets.Flow(ij.layers.ActNorm(2)), mean, std)
    x = jr.normal(jr.key(2), (2, 2, 4, 5), jnp.float64)
    np.testing.assert_allclose(image.log_prob(x), norm.logpdf(x, mean, std).sum((1, 2, 3)), rtol=1e-12)


def _conditional(key):
    flow = ij.nets.RealNVP(3, depth=2, hidden=8, cond_channels=2, key=key)
    return perturb(flow, jr.fold_in(key, 1))


def test_log_prob_is_the_standardized_models_plus_the_jacobian_and_inverts():
    flow = _conditional(jr.key(0))
    y_mean, y_std = np.array([1e3, -1.0]), np.array([1e2, 0.1])
    model = ij.nets.Standardized(flow, MEAN, STD, y_mean, y_std)
    x = MEAN + STD * jr.normal(jr.key(1), (5, 3), jnp.float64)
    y = y_mean + y_std * jr.normal(jr.key(2), (5, 2), jnp.float64)
    expected = flow.log_prob((x - MEAN) / STD, (y - y_mean) / y_std) - np.log(STD).sum()
    np.testing.assert_allclose(model.log_prob(x, y), expected, rtol=1e-12)
    z, logdet = model.forward(x, y)
    x_back, logdet_inverse = model.inverse_and_log_det(z, y)
    np.testing.assert_allclose(x_back, x, rtol=1e-12)
    np.testing.assert_allclose(logdet_inverse, -logdet, rtol=1e-10)
    # The condition really is standardized: the raw y gives another density.
    assert np.max(np.abs(flow.log_prob((x - MEAN) / STD, y) - np.log(STD).sum() - expected)) > 1e-3


def test_gradients_match_plain_autodiff_and_the_statistics_have_none():
    model = ij.nets.Standardized(_conditional(jr.key(0)), MEAN, STD, [5.0, 0.0], [2.0, 1.0])
    x = MEAN + STD * jr.normal(jr.key(1), (6, 3), jnp.float64)
    y = jr.normal(jr.key(2), (6, 2), jnp.float64)
    loss = lambda m, x: -jnp.mean(jnp.sin(m.log_prob(x, y)))
    grad = eqx.filter_grad(loss)
    g, g_plain = grad(model, x), grad(ij.with_backprop(model, ij.Autodiff()), x)
    np.testing.assert_allclose(flat(g), flat(g_plain), rtol=1e-8, atol=1e-12)
    plain = ij.with_backprop(model, ij.Autodiff())
    np.testing.assert_allclose(jax.grad(lambda x: loss(model, x))(x), jax.grad(lambda x: loss(plain, x))(x), rtol=1e-8)
    # The statistics are not leaves: the model's arrays are exactly the flow's.
    assert flat(model).size == flat(model.flow).size and flat(g).size == flat(model.flow).size


def test_fit_never_moves_the_statistics_and_samples_take_the_datas_mean_and_std():
    """Data of scales 1e3 and 1e-3, correlated; weight decay (which would shrink any leaf)."""
    u = jr.normal(jr.key(0), (4000, 2))
    x = jnp.stack([1000.0 + 200.0 * u[:, 0], 1e-3 * (0.8 * u[:, 0] + 0.6 * u[:, 1])], axis=1)
    model = ij.nets.Standardized.from_data(ij.nets.RealNVP(2, depth=4, hidden=16, key=jr.key(1)), x)
    before = (model.x_mean, model.x_std)
    np.testing.assert_allclose(model.x_mean, np.asarray(x, np.float64).mean(0), rtol=1e-12)
    model, history = ij.fit(model, x, key=jr.key(2), steps=150, batch_size=256, progress=False,
                            optimizer=optax.adamw(3e-3, weight_decay=0.5))
    assert (model.x_mean, model.x_std) == before
    assert np.isfinite(history["train"]).all()
    samples = np.asarray(model.sample(jr.key(3), (4000, 2)))
    data = np.asarray(x)
    assert np.all(np.abs(samples.mean(0) - data.mean(0)) < 0.1 * data.std(0)), (samples.mean(0), data.mean(0))
    np.testing.assert_allclose(samples.std(0), data.std(0), rtol=0.15)
    assert abs(np.corrcoef(samples.T)[0, 1] - 0.8) < 0.15


def test_from_data_pools_over_axes_skips_padding_and_keeps_constant_features():
    flow = ij.nets.RealNVP(2, depth=1, hidden=4, cond_channels=3, key=jr.key(0))
    x = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])  # the second feature is constant
    model = ij.nets.Standardized.from_data(flow, x, np.arange(9.0).reshape(3, 3))
    assert model.x_mean == (3.0, 5.0) and model.x_std == (np.sqrt(8 / 3), 1.0)
    np.testing.assert_allclose(model.y_mean, [3.0, 4.0, 5.0])
    images = np.arange(24.0).reshape(3, 2, 2, 2)
    per_channel = ij.nets.Standardized.from_data(ij.nets.Flow(ij.layers.ActNorm(2)), images, x_axes=(0, 2, 3))
    np.testing.assert_allclose(np.ravel(per_channel.x_mean), [images[:, 0].mean(), images[:, 1].mean()])
    assert np.shape(per_channel.x_std) == (2, 1, 1)
    # A masked set network: one statistic per feature, over the elements that are there.
    sets = [np.random.default_rng(i).normal(10.0, 3.0, (n, 2)) for i, n in enumerate((4, 1, 6))]
    y = ij.nets.pad_sets(sets)
    summarized = ij.nets.Summarized(flow, ij.nets.DeepSet(2, 3, 8, 1, masked=True, key=jr.key(1)))
    model = ij.nets.Standardized.from_data(summarized, x, y)
    present = np.concatenate(sets)
    np.testing.assert_allclose(np.asarray(model.y_mean), [[*present.mean(0), 0.0]], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(model.y_std), [[*present.std(0), 1.0]], rtol=1e-12)
    standardized = np.asarray(model.condition(jnp.asarray(y)))
    np.testing.assert_array_equal(standardized[..., -1], y[..., -1])  # the mask column is untouched


def _sets(n=6, scale=1e3):
    """``mu ~ N(0, I_2)`` in units of ``scale``; 6 trials ``y_j ~ N(mu, I)`` in the same units."""

    def simulate(key, b):
        k1, k2 = jr.split(key)
        mu = jr.normal(k1, (b, 2))
        return scale * mu, scale * (mu[:, None] + jr.normal(k2, (b, n, 2)))

    return jax.jit(simulate, static_argnums=1)


def test_a_standardized_summarized_model_trains_in_user_units():
    k1, k2 = jr.split(jr.key(0))
    summarized = ij.nets.Summarized(
        ij.nets.Glow(2, 1, 2, 16, spatial_dims=0, split_scales=False, cond_channels=4, key=k1),
        ij.nets.DeepSet(2, 4, width=16, depth=1, key=k2))
    simulate = _sets()
    model = ij.nets.Standardized.from_simulator(summarized, simulate, key=jr.key(1), n=2000)
    assert np.asarray(model.x_std).shape == (2,) and np.asarray(model.y_std).shape == (1, 2)  # pooled over trials
    np.testing.assert_allclose(np.asarray(model.x_std), 1e3, rtol=0.1)
    x, y = simulate(jr.key(2), 4)
    expected = model.flow.log_prob((x - np.asarray(model.x_mean)) / np.asarray(model.x_std),
                                   (y - np.asarray(model.y_mean)) / np.asarray(model.y_std)) - np.log(model.x_std).sum()
    np.testing.assert_allclose(model.log_prob(x, y), expected, rtol=1e-10)
    model, history = ij.fit(model, simulate, key=jr.key(3), steps=150, batch_size=128, progress=False,
                            optimizer=optax.adam(3e-3))
    loss = np.asarray(history["train"])
    assert np.isfinite(loss).all() and loss[-20:].mean() < loss[:20].mean() - 1.0
    # The posterior mean of mu (in units of 1e3) is near 6 / 7 of the trials' mean.
    draws = model.sample(jr.key(4), (2000, 2), jnp.repeat(y[:1], 2000, axis=0))
    exact = 6 / 7 * np.asarray(y[0]).mean(0)
    assert np.all(np.abs(np.asarray(draws).mean(0) - exact) < 0.5 * 1e3 / np.sqrt(7))


def test_a_stochastic_summary_network_gets_its_key_through_standardized():
    summary = eqx.nn.Sequential([eqx.nn.Linear(3, 2, key=jr.key(0)), eqx.nn.Dropout(0.5)])
    flow = perturb(ij.nets.RealNVP(2, depth=1, hidden=4, cond_channels=2, key=jr.key(1)), jr.key(3))
    model = ij.nets.Standardized(ij.nets.Summarized(flow, summary), y_mean=1.0, y_std=2.0)
    assert model.stochastic and not ij.nets.Standardized(flow).stochastic
    x, y = jnp.zeros((4, 2)), jnp.ones((4, 3))
    keyed = model.with_key(jr.key(2))
    assert keyed.flow.key is not None
    assert not np.allclose(keyed.log_prob(x, y), model.log_prob(x, y))  # dropout on with a key, off without


def test_save_and_load_keep_the_statistics(tmp_path):
    model = ij.nets.Standardized(_conditional(jr.key(0)), MEAN, STD, [5.0, 0.0], [2.0, 1.0])
    ij.save(tmp_path / "m.eqx", model)
    again = ij.load(tmp_path / "m.eqx")
    assert again.x_std == model.x_std and again.y_mean == model.y_mean
    x, y = jnp.asarray(MEAN)[None].repeat(2, 0), jnp.ones((2, 2))
    np.testing.assert_array_equal(again.log_prob(x, y), model.log_prob(x, y))


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda f: ij.nets.Standardized(f, MEAN, [1.0, 0.0, 1.0]), r"x_std must be > 0 everywhere, got a minimum of 0"),
        (lambda f: ij.nets.Standardized(f, MEAN, -STD), r"x_std must be > 0 everywhere"),
        (lambda f: ij.nets.Standardized(f, [np.nan, 0.0, 0.0], STD), r"x_mean must be finite, got 1 NaN or Inf"),
        (lambda f: ij.nets.Standardized(f, y_mean=0.0, y_std=[1.0, -1.0]), r"y_std must be > 0"),
        (lambda f: ij.nets.Standardized(f.flow if hasattr(f, "flow") else "flow"), r"flow must be an invjax flow"),
        (lambda f: ij.nets.Standardized(f, np.zeros(4), np.ones(4)).log_prob(jnp.zeros((2, 3)), jnp.zeros((2, 2))),
         r"x statistics of shape \(4,\) do not broadcast to one sample of x, of shape \(3,\)"),
        (lambda f: ij.nets.Standardized(f, y_mean=np.zeros(3), y_std=1).log_prob(jnp.zeros((2, 3)), jnp.zeros((2, 2))),
         r"y statistics of shape \(3,\) do not broadcast to one sample of y, of shape \(2,\)"),
        (lambda f: ij.nets.Standardized(f, y_mean=0.0, y_std=1.0).log_prob(jnp.zeros((2, 3))),
         r"standardizes the condition y, but y is None"),
        (lambda f: jax.jit(lambda m: ij.nets.Standardized(f, m, 1.0))(jnp.zeros(3)), r"x_mean must be numbers known"),
        (lambda f: ij.nets.Standardized.from_simulator(f, _sets(), key=0), r"key must be one JAX PRNG key"),
    ],
)
def test_bad_statistics_and_inputs_name_what_was_expected(build, match):
    with pytest.raises(ValueError, match=match):
        build(_conditional(jr.key(0)))
