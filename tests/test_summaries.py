"""Summary networks (DeepSet, SetTransformer, TimeSeriesNetwork): invariances, masks,
causality, errors, and training inside Summarized with a known posterior."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import invjax as ij

SETS = {
    "deepset": lambda masked, key: ij.nets.DeepSet(3, 4, width=8, depth=1, pooling=("mean", "max", "sum"),
                                                   masked=masked, key=key),
    "sab": lambda masked, key: ij.nets.SetTransformer(3, 4, width=8, heads=2, masked=masked, key=key),
    "isab": lambda masked, key: ij.nets.SetTransformer(3, 4, width=8, heads=2, inducing=3, seeds=2,
                                                       masked=masked, key=key),
}


def _with_mask(values, mask):
    return jnp.concatenate([values, jnp.asarray(mask, values.dtype)[:, None]], axis=1)


@pytest.mark.parametrize("name", sorted(SETS))
def test_set_networks_are_permutation_invariant_and_honour_masks(name):
    net = SETS[name](True, jr.key(0))
    values = jr.normal(jr.key(1), (5, 3), jnp.float64)
    junk = 50.0 * jr.normal(jr.key(2), (4, 3), jnp.float64)  # padding rows: any finite values
    unpadded = _with_mask(values, np.ones(5))
    padded = _with_mask(jnp.concatenate([values, junk]), np.r_[np.ones(5), np.zeros(4)])
    order = np.asarray(jr.permutation(jr.key(3), 9))  # padding interleaved with the elements
    outputs = eqx.filter_jit(eqx.filter_vmap(net))(jnp.stack([padded, padded[order]]))
    reference = eqx.filter_jit(net)(unpadded)
    assert reference.dtype == jnp.float64
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-6, rtol=0)  # permutation
    np.testing.assert_allclose(outputs[0], reference, atol=1e-6, rtol=0)  # padding ignored
    # The mask matters: the same rows, all marked present, give another summary.
    assert np.max(np.abs(eqx.filter_jit(net)(_with_mask(padded[:, :3], np.ones(9))) - reference)) > 1e-3
    # Unmasked networks: permutation invariance of plain sets.
    plain = eqx.filter_jit(eqx.filter_vmap(SETS[name](False, jr.key(0))))
    both = plain(jnp.stack([values, values[order[order < 5]]]))
    np.testing.assert_allclose(both[1], both[0], atol=1e-6, rtol=0)


def test_pad_sets_and_summarized_give_each_sets_own_summary():
    net = SETS["deepset"](True, jr.key(0))
    sets = [np.random.default_rng(i).standard_normal((n, 3)) for i, n in enumerate((2, 5, 1))]
    y = ij.nets.pad_sets(sets, size=6)
    assert y.shape == (3, 6, 4) and y[0, :, -1].tolist() == [1, 1, 0, 0, 0, 0]
    flow = ij.nets.RealNVP(2, depth=1, hidden=4, cond_channels=4, key=jr.key(1))
    cond = ij.nets.Summarized(flow, net).condition(jnp.asarray(y))
    for c, s in zip(cond, sets, strict=True):
        np.testing.assert_allclose(c, net(_with_mask(jnp.asarray(s), np.ones(len(s)))), atol=1e-10)


def test_time_series_is_causal_and_end_padding_is_ignored():
    net = ij.nets.TimeSeriesNetwork(2, 3, width=6, kernel_size=3, masked=True, key=jr.key(0))
    series = jr.normal(jr.key(1), (12, 2), jnp.float64)
    y = _with_mask(series, np.ones(12))
    t0 = 7
    states, perturbed = eqx.filter_jit(eqx.filter_vmap(net.states))(jnp.stack([y, y.at[t0, 0].add(1.0)]))
    assert states.shape == (12, 6) and net(y).shape == (3,)
    np.testing.assert_array_equal(perturbed[:t0], states[:t0])  # the past does not see the future
    assert np.all(np.max(np.abs(perturbed[t0:] - states[t0:]), axis=1) > 1e-8)  # every later step does
    # A series of 8 steps padded to 12 (junk after the end) has the summary of the 8 steps.
    short = _with_mask(series[:8], np.ones(8))
    padded = _with_mask(series.at[8:].set(9.0), np.r_[np.ones(8), np.zeros(4)])
    np.testing.assert_allclose(net(padded), net(short), atol=1e-10, rtol=0)
    # Summarized over a batch (B, T, in_size + 1): one summary per series.
    flow = ij.nets.RealNVP(2, depth=1, hidden=4, cond_channels=3, key=jr.key(2))
    assert ij.nets.Summarized(flow, net).condition(jnp.stack([y, padded])).shape == (2, 3)


@pytest.mark.parametrize(
    "build, y, match",
    [
        (lambda k: ij.nets.DeepSet(3, 4, 8, 1, key=k), jnp.zeros((5, 4)), r"DeepSet: one observation must be a set of "
         r"shape \(N, 3\), got \(5, 4\)"),
        (lambda k: ij.nets.DeepSet(3, 4, 8, 1, masked=True, key=k), jnp.zeros((5, 3)),
         r"shape \(N, 4\) \(3 features and a last column of 0/1 mask, as masked=True\), got \(5, 3\)"),
        (lambda k: ij.nets.SetTransformer(3, 4, 8, 2, key=k), jnp.zeros((2, 5, 3)), r"SetTransformer: .* got "
         r"\(2, 5, 3\)"),
        (lambda k: ij.nets.TimeSeriesNetwork(2, 4, 8, key=k), jnp.zeros((5,)), r"a series of shape \(T, 2\)"),
        (lambda k: ij.nets.SetTransformer(3, 4, 10, 4, key=k), None, r"width must be a multiple of heads \(4\)"),
        (lambda k: ij.nets.DeepSet(3, 4, 8, 1, pooling=("mean", "median"), key=k), None, r"pooling must be names"),
        (lambda k: ij.nets.DeepSet(3, 0, 8, 1, key=k), None, r"out_size must be an integer >= 1, got 0"),
        (lambda k: ij.nets.TimeSeriesNetwork(2, 4, 8, conv_layers=-1, key=k), None, r"conv_layers must be"),
        (lambda k: ij.nets.pad_sets([np.ones((2, 3)), np.ones((2, 2))]), None, r"one in_size"),
        (lambda k: ij.nets.pad_sets([np.ones((4, 3))], size=2), None, r"size must be >= the largest set \(4\)"),
    ],
)
def test_wrong_shapes_and_options_name_what_was_expected(build, y, match):
    with pytest.raises(ValueError, match=match):
        net = build(jr.key(0))
        net(y)


def test_summarized_names_the_set_shape_it_expected():
    flow = ij.nets.RealNVP(2, depth=1, hidden=4, cond_channels=4, key=jr.key(0))
    model = ij.nets.Summarized(flow, ij.nets.DeepSet(3, 4, 8, 1, key=jr.key(1)))
    with pytest.raises(ValueError, match=r"Summarized: .*DeepSet: one observation must be a set of shape \(N, 3\)"):
        model.log_prob(jnp.zeros((2, 2)), jnp.zeros((2, 6, 2)))


def _gaussian_mean(n_max, masked):
    """``mu ~ N(0, I_2)``, ``n`` trials ``y_j ~ N(mu, I_2)`` (``n`` uniform in 1..n_max when
    masked, else ``n_max``): the posterior is ``N(sum(y) / (n + 1), I / (n + 1))``."""

    def simulate(key, b):
        k1, k2, k3 = jr.split(key, 3)
        mu = jr.normal(k1, (b, 2))
        y = mu[:, None] + jr.normal(k2, (b, n_max, 2))
        if not masked:
            return mu, y
        n = jr.randint(k3, (b, 1), 1, n_max + 1)
        mask = (jnp.arange(n_max) < n).astype(y.dtype)
        return mu, jnp.concatenate([y * mask[..., None], mask[..., None]], axis=-1)

    return jax.jit(simulate, static_argnums=1)


@pytest.mark.parametrize("name", ["deepset", "set_transformer", "time_series"])
def test_each_summary_trains_inside_summarized_with_fit(name):
    k1, k2 = jr.split(jr.key(0))
    summary = {
        "deepset": lambda: ij.nets.DeepSet(2, 4, width=16, depth=1, key=k1),
        "set_transformer": lambda: ij.nets.SetTransformer(2, 4, width=16, heads=2, blocks=1, key=k1),
        "time_series": lambda: ij.nets.TimeSeriesNetwork(2, 4, width=16, conv_layers=1, key=k1),
    }[name]()
    model = ij.nets.Summarized(ij.nets.RealNVP(2, depth=2, hidden=16, cond_channels=4, key=k2), summary)
    model, history = ij.fit(model, _gaussian_mean(6, False), key=jr.key(1), steps=60, batch_size=64,
                            optimizer=optax.adam(3e-3), progress=False)
    loss = np.asarray(history["train"])
    assert np.isfinite(loss).all() and loss[-15:].mean() < loss[:15].mean() - 0.1


def test_a_masked_deepset_learns_the_posterior_of_a_gaussian_mean():
    """Sets of 1 to 8 trials, one array with a mask column: after a short online training,
    the posterior mean and width follow the closed form, and grow narrower with ``n``.

    The flow is a vector Glow (learned 1x1 mixing): a 2-D RealNVP's random permutations can
    leave one coordinate untransformed by every coupling (so independent of the condition),
    as RealNVP(2, depth=3) does for some keys."""
    k1, k2 = jr.split(jr.key(0))
    summary = ij.nets.DeepSet(2, 8, width=32, depth=1, pooling=("mean", "sum"), masked=True, key=k1)
    flow = ij.nets.Glow(2, 1, 3, 32, spatial_dims=0, split_scales=False, cond_channels=8, key=k2)
    model = ij.nets.Summarized(flow, summary)
    optimizer = optax.adam(optax.cosine_decay_schedule(3e-3, 500))
    model, _ = ij.fit(model, _gaussian_mean(8, True), key=jr.key(1), steps=500, batch_size=128,
                      optimizer=optimizer, progress=False)
    sets = [np.random.default_rng(n).normal(0.7, 1.0, (n, 2)) for n in (1, 3, 8)]
    y = jnp.asarray(ij.nets.pad_sets(sets, size=8), model.dtype)
    draws = jax.vmap(lambda y_i, k: model.sample(k, (2000, 2), jnp.broadcast_to(y_i, (2000, *y_i.shape))))(
        y, jr.split(jr.key(2), 3))
    for s, d in zip(sets, np.asarray(draws), strict=True):
        exact_mean, exact_std = s.sum(0) / (len(s) + 1), 1 / np.sqrt(len(s) + 1)
        assert np.all(np.abs(d.mean(0) - exact_mean) < 0.35 * exact_std + 0.05), (len(s), d.mean(0), exact_mean)
        assert np.all(np.abs(d.std(0) / exact_std - 1) < 0.25), (len(s), d.std(0), exact_std)


def test_summary_networks_save_and_load_without_like(tmp_path):
    flow = ij.nets.RealNVP(2, depth=1, hidden=4, cond_channels=4, key=jr.key(0))
    nets = [SETS["isab"](True, jr.key(1)), ij.nets.TimeSeriesNetwork(3, 4, 8, masked=True, key=jr.key(2))]
    y = _with_mask(jr.normal(jr.key(3), (6, 3), jnp.float64), np.r_[np.ones(4), np.zeros(2)])[None]
    for i, net in enumerate(nets):
        model = ij.nets.Summarized(flow, net)
        ij.save(tmp_path / f"{i}.eqx", model)
        again = ij.load(tmp_path / f"{i}.eqx")
        assert type(again.summary) is type(net)
        np.testing.assert_array_equal(again.condition(y), model.condition(y))
