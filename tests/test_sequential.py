"""``fit_sequential`` (truncated proposals, TSNPE) against a closed-form posterior."""

import jax.numpy as jnp
import jax.random as jr
import pytest

import invjax as ij


@pytest.mark.slow
def test_sequential_rounds_draw_from_the_highest_density_region_and_recover_the_posterior():
    """theta ~ N(0, 9 I_2), x = theta + 0.3 eps: the posterior is N(mean, var I) in closed form."""
    noise, x_o = 0.3, jnp.array([1.0, -2.0])
    var = 1 / (1 / 9 + 1 / noise**2)
    mean, std = var * x_o / noise**2, jnp.sqrt(var)
    rounds = []

    def simulator(key, theta):
        rounds.append(theta)
        return theta + noise * jr.normal(key, theta.shape)

    posterior = ij.fit_sequential(simulator, x_o, prior=ij.Normal([0.0, 0.0], 3.0), key=jr.key(0), budget=2000,
                                  rounds=2, members=1, depth=2, hidden=32, rates=(1e-3, 2e-4), max_epochs=40,
                                  patience=(8, 4))
    assert [len(t) for t in rounds] == [1000, 1000]
    # Round 2 draws from the prior restricted to round 1's region holding 1 - 1e-4 of its mass
    # (round 1's posterior is wider than the exact one, and a flow's density far from its
    # training data can pass the threshold): far more of them near the exact posterior than
    # of the prior's draws in round 1. A threshold on the wrong side puts fewer there.
    distance = jnp.max(jnp.abs(rounds[1] - mean) / std, axis=1)
    prior_distance = jnp.max(jnp.abs(rounds[0] - mean) / std, axis=1)
    for radius in (5, 10):
        near, prior_near = float(jnp.mean(distance < radius)), float(jnp.mean(prior_distance < radius))
        assert near > min(1.5 * prior_near, 0.9), (radius, near, prior_near)
    draws = posterior.sample(jr.key(1), 20_000, x_o)
    assert bool(jnp.all(jnp.abs(draws.mean(0) - mean) < 0.25 * std)), (draws.mean(0), mean)
    assert bool(jnp.all(jnp.abs(draws.std(0) / std - 1) < 0.25)), (draws.std(0), std)


@pytest.mark.parametrize("kwargs, match", [
    ({"budget": 3}, "too small"),
    ({"rounds": 0}, "rounds must be"),
    ({"quantile": 1.0}, "quantile"),
    ({"members": 1, "theta": jnp.zeros((4, 2))}, "set by fit_sequential"),
])
def test_fit_sequential_errors(kwargs, match):
    args = {"prior": ij.Normal([0.0, 0.0], 1.0), "key": jr.key(0), "budget": 100, **kwargs}
    with pytest.raises(ValueError, match=match):
        ij.fit_sequential(lambda key, theta: theta, jnp.zeros(2), **args)
