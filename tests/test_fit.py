"""The training workflow: Summarized models, fit, save / load and checkpoints."""

import ast
import inspect
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from helpers import flat, perturb, rel_err

import invjax as ij


def _summarized(seed=0):
    k1, k2 = jr.split(jr.key(seed))
    flow = ij.nets.RealNVP(2, depth=2, hidden=8, cond_channels=3, key=k1)
    return ij.nets.Summarized(flow, eqx.nn.MLP(5, 3, width_size=8, depth=1, key=k2))


def _pairs(n, seed=1):
    kx, kn = jr.split(jr.key(seed))
    x = jr.normal(kx, (n, 2))
    y = jnp.concatenate([x, x[:, :1] * x[:, 1:], x**2], axis=1) + 0.1 * jr.normal(kn, (n, 5))
    return x, y


def test_summarized_trains_summary_and_flow_through_one_grad():
    model = _summarized()
    x, y = _pairs(6)
    model = perturb(model, jr.key(7), 0.1)  # couplings start as the identity, which ignores cond
    loss = lambda m: -jnp.mean(m.log_prob(x, y))
    grads = eqx.filter_grad(loss)(model)
    reference = eqx.filter_grad(loss)(ij.with_backprop(model, ij.Autodiff()))
    assert float(jnp.abs(grads.summary.layers[0].weight).max()) > 0  # the summary network receives gradients
    assert rel_err(grads, reference) < 1e-8
    samples, log_q = model.sample_and_log_prob(jr.key(2), (6, 2), y)
    np.testing.assert_allclose(log_q, model.log_prob(samples, y), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m, x, y: m.log_prob(x, None), r"y is required"),
        (lambda m, x, y: m.log_prob(x, y[:4]), r"y has batch size 4, x has 6"),
        # A summary whose output does not fit the flow's condition: the flow's check names it.
        # (An observation the summary network itself rejects, e.g. y[:, :4] for an MLP that
        # takes 5 features, fails inside that network with JAX's TypeError; invjax cannot
        # know the summary's input shape.)
        (lambda m, x, y: ij.nets.Summarized(m.flow, lambda v: v[:4]).log_prob(x, y), r"expected cond with 3 channels"),
        (lambda m, x, y: ij.nets.Summarized(m.flow, 3), r"summary must be callable"),
    ],
)
def test_summarized_errors(call, match):
    x, y = _pairs(6)
    with pytest.raises(ValueError, match=match):
        call(_summarized(), x, y)


def test_fit_lowers_the_loss_with_validation_and_early_stopping():
    x, y = _pairs(256)
    model, history = ij.fit(_summarized(), x, y, key=jr.key(3), steps=120, batch_size=32, validation=0.25,
                            eval_every=20, patience=100, progress=False)
    assert len(history["train"]) == 120 and [s for s, _ in history["val"]] == [20, 40, 60, 80, 100, 120]
    assert history["val"][-1][1] < history["val"][0][1] - 0.3  # it learns
    assert np.mean(history["train"][-20:]) < np.mean(history["train"][:20])
    # patience=0 stops at the first evaluation that does not improve, returning the best flow
    _, short = ij.fit(_summarized(), x, y, key=jr.key(3), steps=60, batch_size=32, validation=(x[:32], y[:32]),
                      eval_every=1, patience=0, progress=False, optimizer=optax.sgd(0.5))
    assert len(short["train"]) < 60


def test_fit_stops_on_a_non_finite_loss_and_keeps_the_last_good_flow():
    x, y = _pairs(8)
    bad = x.at[0, 0].set(jnp.nan)
    batches = [(x, y), (x, y), (bad, y), (x, y)]
    # check_inputs=False: the NaN reaches the loss (with the default, fit rejects the batch
    # before its step; tests/test_scale.py).
    with pytest.warns(RuntimeWarning, match=r"at step 2"):
        model, history = ij.fit(_summarized(), batches, key=jr.key(4), steps=4, progress=False, check_inputs=False)
    assert len(history["train"]) == 2
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
    assert bool(jnp.isfinite(model.log_prob(x, y)).all())


def test_fit_rejects_bad_arguments():
    x, y = _pairs(8)
    with pytest.raises(ValueError, match=r"batch size of x \(8\)"):
        ij.fit(_summarized(), x, y[:5], key=jr.key(0), steps=1, progress=False)
    with pytest.raises(ValueError, match=r"validation must be a fraction"):
        ij.fit(_summarized(), x, y, key=jr.key(0), steps=1, validation=1.5, progress=False)
    with pytest.raises(ValueError, match=r"steps >= 0"):
        ij.fit(_summarized(), x, y, key=jr.key(0), steps=1, batch_size=0, progress=False)


def test_checkpoints_resume_where_training_stopped(tmp_path):
    x, y = _pairs(64)
    ckpt = tmp_path / "run.ckpt"
    kwargs = dict(key=jr.key(5), batch_size=16, progress=False, checkpoint=ckpt, checkpoint_every=5)
    full, full_history = ij.fit(_summarized(), x, y, steps=15, **kwargs)
    ckpt.unlink()
    _, first = ij.fit(_summarized(), x, y, steps=10, **kwargs)  # "interrupted" after 10 steps
    resumed, history = ij.fit(_summarized(), x, y, steps=15, **kwargs)
    assert history["train"][:10] == first["train"]
    np.testing.assert_allclose(history["train"], full_history["train"], rtol=1e-6)
    np.testing.assert_allclose(resumed.log_prob(x, y), full.log_prob(x, y), rtol=1e-6)


# The transform hook: a tiny unconditional flow whose couplings start as the identity, so
# after ActNorm's data initialisation it is the affine map z = P (x - mean) / std.
def _realnvp():
    return ij.nets.RealNVP(2, depth=1, hidden=4, key=jr.key(0))


def _standardised_nll(x):
    """Closed-form NLL of x under the affine flow that ActNorm fits to x itself."""
    mean, std = jnp.mean(x, 0), jnp.std(x, 0)
    z = (x - mean) / std
    return float(jnp.mean(0.5 * jnp.sum(z**2, 1) + jnp.log(2 * jnp.pi) + jnp.sum(jnp.log(std))))


def test_fit_transform_is_applied_and_initialize_sees_the_transformed_batch():
    x = jr.normal(jr.key(1), (16, 2)) * jnp.array([1.0, 0.5])
    shift = lambda key, x, cond: (3.0 * x + 5.0, cond)
    initialized, _ = ij.fit(_realnvp(), x, key=jr.key(2), steps=0, batch_size=16, transform=shift, progress=False)
    # ActNorm standardised the transformed data (the first batch is all of x, shuffled)
    z, _ = initialized.forward(3.0 * x + 5.0)
    np.testing.assert_allclose(jnp.mean(z, 0), 0.0, atol=1e-10)
    np.testing.assert_allclose(jnp.std(z, 0), 1.0, rtol=1e-5)
    _, history = ij.fit(_realnvp(), x, key=jr.key(2), steps=1, batch_size=16, transform=shift, progress=False)
    # the step's loss is the loss of the transformed batch, by hand and in closed form
    np.testing.assert_allclose(history["train"][0], float(ij.negative_log_likelihood(initialized, 3.0 * x + 5.0)),
                               rtol=1e-12)
    np.testing.assert_allclose(history["train"][0], _standardised_nll(3.0 * x + 5.0), rtol=1e-5)


def test_fit_transform_gets_a_fresh_key_every_step_and_a_fixed_one_for_validation():
    x, x_val = jr.normal(jr.key(1), (8, 2)), jr.normal(jr.key(3), (8, 2))
    noisy = lambda key, x, cond: (x + jr.normal(key, x.shape), cond)
    flow, key = _realnvp(), jr.key(4)
    # learning rate 0: the flow stays put, so the losses differ only by the noise
    _, history = ij.fit(flow, [x] * 3, key=key, steps=3, transform=noisy, initialize=False, progress=False,
                        optimizer=optax.sgd(0.0), validation=(x_val, None), eval_every=1)
    nll = lambda k, data: float(ij.negative_log_likelihood(flow, noisy(k, data, None)[0]))
    step_keys = [jr.fold_in(jr.fold_in(key, 1), i) for i in range(3)]  # the keys fit's docstring promises
    np.testing.assert_allclose(history["train"], [nll(k, x) for k in step_keys], rtol=1e-12)
    assert len(set(history["train"])) == 3  # every step saw other noise
    assert [v for _, v in history["val"]] == [nll(jr.fold_in(key, 2), x_val)] * 3  # one fixed validation key


def test_make_step_in_a_hand_written_loop_matches_fit():
    x = jr.normal(jr.key(1), (8, 2))
    flow = perturb(_realnvp(), jr.key(5), 0.1)
    _, history = ij.fit(flow, [x] * 3, key=jr.key(0), steps=3, initialize=False, progress=False)
    init, step = ij.make_step(ij.negative_log_likelihood)
    opt_state, losses = init(flow), []
    for _ in range(3):
        flow, opt_state, value = step(flow, opt_state, x)
        losses.append(float(value))
    np.testing.assert_allclose(losses, history["train"], rtol=1e-12)


def test_resume_with_a_transform_continues_like_an_uninterrupted_run(tmp_path):
    x = jnp.floor(jr.uniform(jr.key(1), (32, 2)) * 17)  # integer "pixels", dequantised by the transform
    dequantize = lambda key, x, cond: ((x + jr.uniform(key, x.shape)) / 17 - 0.5, cond)
    ckpt = tmp_path / "run.ckpt"
    kwargs = dict(key=jr.key(6), batch_size=8, progress=False, transform=dequantize, checkpoint_every=2)
    full, full_history = ij.fit(_realnvp(), x, steps=6, **kwargs)
    ij.fit(_realnvp(), x, steps=4, checkpoint=ckpt, **kwargs)  # "interrupted" after 4 steps
    resumed, history = ij.fit(_realnvp(), x, steps=6, checkpoint=ckpt, **kwargs)
    np.testing.assert_allclose(history["train"], full_history["train"], rtol=1e-10)
    np.testing.assert_allclose(resumed.log_prob(x / 17 - 0.5), full.log_prob(x / 17 - 0.5), rtol=1e-10)


def test_fit_with_patience_returns_the_flow_of_the_best_validation_loss():
    x = jr.normal(jr.key(1), (16, 2)) * jnp.array([1.0, 0.5]) + 1.0
    flow = perturb(_realnvp(), jr.key(5), 0.1)
    # Descent for three steps, then ascent: the validation loss (on the training data) falls,
    # then rises, so the best flow is neither the first nor the last one validated.
    rate = lambda count: jnp.where(count < 3, 0.05, -0.05)
    best, history = ij.fit(flow, x, key=jr.key(2), steps=20, batch_size=16, initialize=False, progress=False,
                           optimizer=optax.sgd(rate), validation=(x, None), eval_every=1, patience=3)
    losses = [v for _, v in history["val"]]
    assert [s for s, _ in history["val"]] == [1, 2, 3, 4, 5, 6] and len(history["train"]) == 6  # stopped early
    assert int(np.argmin(losses)) == 2 and losses[-1] > losses[2]
    np.testing.assert_allclose(float(ij.negative_log_likelihood(best, x)), min(losses), rtol=1e-12)


def test_fit_initialize_runs_actnorm_initialisation_only_when_asked():
    x = 3.0 + 2.0 * jr.normal(jr.key(1), (16, 2))
    flow = perturb(_realnvp(), jr.key(5), 0.1)
    untouched, _ = ij.fit(flow, x, key=jr.key(2), steps=0, batch_size=16, initialize=False, progress=False)
    np.testing.assert_array_equal(flat(untouched), flat(flow))
    initialized, _ = ij.fit(flow, x, key=jr.key(2), steps=0, batch_size=16, initialize=True, progress=False)
    # The first batch is all of x (shuffled): ActNorm's statistics do not see the order.
    np.testing.assert_allclose(flat(initialized), flat(flow.initialize(x)), rtol=1e-12, atol=1e-12)
    assert not np.allclose(flat(initialized), flat(flow))


def _linear_gaussian(key, n):
    """x ~ N(0, I_2), y = x + N(0, 0.5 I_2): a jittable simulator."""
    kx, ky = jr.split(key)
    x = jr.normal(kx, (n, 2))
    return x, x + jnp.sqrt(0.5) * jr.normal(ky, (n, 2))


def test_fit_from_a_simulator_draws_fresh_pairs_every_step_and_resumes_the_stream(tmp_path):
    seen = []

    def simulate(key, n):  # a plain Python function that records what it drew
        x, y = _linear_gaussian(key, n)
        seen.append(np.asarray(x))
        return x, y

    flow = ij.nets.RealNVP(2, depth=2, hidden=8, cond_channels=2, key=jr.key(0))
    kwargs = dict(key=jr.key(1), steps=6, batch_size=16, progress=False, initialize=False)
    _, full = ij.fit(flow, simulate, **kwargs)
    first_run = list(seen)
    assert len(first_run) == 6 and not np.allclose(first_run[0], first_run[1])  # fresh pairs each step
    # Interrupted at step 3 and resumed: the simulator's stream continues where it stopped.
    seen.clear()
    ckpt = tmp_path / "run.eqx"
    ij.fit(flow, simulate, checkpoint=ckpt, checkpoint_every=3, **{**kwargs, "steps": 3})
    _, resumed = ij.fit(flow, simulate, checkpoint=ckpt, checkpoint_every=3, **kwargs)
    # (the resumed run draws step 0 once more for its shapes, then steps 3 to 5)
    for drawn, expected in zip(seen[-3:], first_run[3:], strict=True):
        np.testing.assert_array_equal(drawn, expected)
    np.testing.assert_allclose(resumed["train"], full["train"], rtol=1e-5)
    # A jitted simulator and a validation set drawn once.
    sim = jax.jit(_linear_gaussian, static_argnums=1)
    _, history = ij.fit(flow, sim, validation=64, eval_every=3, **kwargs)
    assert [s for s, _ in history["val"]] == [3, 6]


def test_fit_from_a_simulator_rejects_bad_arguments():
    flow = ij.nets.RealNVP(2, depth=1, hidden=4, cond_channels=2, key=jr.key(0))
    kwargs = dict(key=jr.key(1), steps=1, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="with a simulator, cond comes from it"):
        ij.fit(flow, _linear_gaussian, jnp.zeros((8, 2)), **kwargs)
    with pytest.raises(ValueError, match=r"validation is a number of pairs drawn once \(an int\).*got 0.2"):
        ij.fit(flow, _linear_gaussian, validation=0.2, **kwargs)
    with pytest.raises(ValueError, match=r"simulate\(key, 8\) at step 0 must return .* 8 rows; its cond is \(4, 2\)"):
        ij.fit(flow, lambda k, n: (jnp.zeros((n, 2)), jnp.zeros((4, 2))), **kwargs)


def test_fit_stays_a_short_composition_of_named_parts():
    # fit composes named parts (arguments, data, placement, resume, monitors, loop); a body
    # that grows past one screen again should be split, not let through silently.
    source = textwrap.dedent(inspect.getsource(ij.fit))
    docstring = ast.parse(source).body[0].body[0]
    assert isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant)
    lines = len(source.splitlines()) - (docstring.end_lineno - docstring.lineno + 1)
    assert lines <= 80, f"fit is {lines} lines without its docstring; move a part into a named function"
