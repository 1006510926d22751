"""``make_step`` (and so ``fit`` and ``fit_vi``) passes optax's extra arguments.

Each test compares the step with optax driven by hand, the way its documentation drives
that transformation, on the same flow and data.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
import pytest

import invjax as ij


def _flow_and_data():
    flow = ij.nets.RealNVP(in_channels=2, depth=2, hidden=8, key=jr.key(0))
    x = jr.normal(jr.key(1), (64, 2)) * jnp.array([2.0, 0.5]) + 1.0
    return flow, x


def _loss(f, x):
    return -jnp.mean(f.log_prob(x))


def _by_hand(optimizer, flow, x, steps, **extra):
    """optax's documented loop: update(grads, state, params, value=, grad=, value_fn=)."""
    params, rest = eqx.partition(flow, eqx.is_inexact_array)
    value_fn = lambda p: _loss(eqx.combine(p, rest), x)
    state = optimizer.init(params)
    values = []
    for _ in range(steps):
        value, grads = jax.value_and_grad(value_fn)(params)
        kwargs = {"value": value, "grad": grads, "value_fn": value_fn} if extra else {}
        updates, state = optimizer.update(grads, state, params, **kwargs)
        params = optax.apply_updates(params, updates)
        values.append(value)
    return eqx.combine(params, rest), state, jnp.stack(values)


def _by_step(optimizer, flow, x, steps):
    init, step = ij.make_step(_loss, optimizer)
    state = init(flow)
    values = []
    for _ in range(steps):
        flow, state, value = step(flow, state, x)
        values.append(value)
    return flow, state, jnp.stack(values)


def _assert_same(a, b, rtol):
    for u, v in zip(jax.tree.leaves(eqx.filter(a, eqx.is_inexact_array)),
                    jax.tree.leaves(eqx.filter(b, eqx.is_inexact_array)), strict=True):
        assert jnp.allclose(u, v, rtol=rtol, atol=rtol), float(jnp.max(jnp.abs(u - v)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adam", "reduce_on_plateau", "lbfgs"])
def test_step_equals_optax_by_hand(name):
    jax.config.update("jax_enable_x64", True)
    flow, x = _flow_and_data()
    flow = jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, flow)
    x = x.astype(jnp.float64)
    optimizer = {
        "adam": optax.adam(1e-2),
        # The loss falls at every step, so the rule must keep the scale at 1: a step that fed it
        # anything but the loss (a constant, the previous step's) would halve it every step.
        "reduce_on_plateau": optax.chain(optax.sgd(0.05), optax.contrib.reduce_on_plateau(patience=1, cooldown=0,
                                                                                         factor=0.5, accumulation_size=1)),
        "lbfgs": optax.lbfgs(),
    }[name]
    steps = 6
    ours, ours_state, ours_values = _by_step(optimizer, flow, x, steps)
    theirs, theirs_state, theirs_values = _by_hand(optimizer, flow, x, steps, extra=name != "adam")
    assert jnp.allclose(ours_values, theirs_values, rtol=1e-10), (ours_values, theirs_values)
    _assert_same(ours, theirs, 1e-9)
    if name == "reduce_on_plateau":
        assert ours_state[1].scale == theirs_state[1].scale == 1.0
    if name == "lbfgs":
        assert ours_values[-1] < ours_values[0] - 0.1  # the line search found descent


def test_fit_takes_a_transformation_that_needs_the_loss():
    flow, x = _flow_and_data()
    optimizer = optax.chain(optax.adam(1e-2), optax.contrib.reduce_on_plateau(patience=2, accumulation_size=2))
    trained, history = ij.fit(flow, x, key=jr.key(2), steps=6, batch_size=32, optimizer=optimizer, progress=False)
    assert len(history["train"]) == 6 and all(jnp.isfinite(jnp.asarray(history["train"])))


def test_fit_feeds_the_validation_loss_to_the_optimizer_when_asked(tmp_path):
    """With ``optimizer_value="validation"`` and no evaluation during the run, optax receives the
    starting flow's validation loss at every step: reduce_on_plateau sees no improvement and
    halves its scale at every step as it does by hand; with the batch losses, which improve now
    and then, it halves it less often."""
    from invjax._checkpoint import load_checkpoint

    flow, x = _flow_and_data()
    steps = 5

    def plateau():
        return optax.chain(optax.sgd(0.05), optax.contrib.reduce_on_plateau(patience=1, cooldown=0, factor=0.5,
                                                                            accumulation_size=1))

    scales = {}
    for told in ("train", "validation"):
        path = tmp_path / f"{told}.eqx"
        ij.fit(flow, x, key=jr.key(2), steps=steps, batch_size=32, optimizer=plateau(), validation=0.25,
               eval_every=100, progress=False, checkpoint=path, checkpoint_every=steps, optimizer_value=told)
        _, state, _, _ = load_checkpoint(path, flow, plateau().init(eqx.filter(flow, eqx.is_inexact_array)), steps)
        scales[told] = float(state[1].scale)
    by_hand, params = plateau(), eqx.filter(flow, eqx.is_inexact_array)
    state = by_hand.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    for _ in range(steps):
        _, state = by_hand.update(zeros, state, params, value=jnp.asarray(1.0))
    assert scales["validation"] == float(state[1].scale) < 1.0, scales
    assert scales["train"] > scales["validation"], scales


def test_fit_optimizer_value_errors():
    flow, x = _flow_and_data()
    with pytest.raises(ValueError, match="'train' or 'validation'"):
        ij.fit(flow, x, key=jr.key(0), steps=1, optimizer_value="val")
    with pytest.raises(ValueError, match="needs a validation set"):
        ij.fit(flow, x, key=jr.key(0), steps=1, optimizer_value="validation")
