"""Devices on one process (fast; the multi-device runs are in test_spatial.py and
test_distributed.py): the mesh's vocabulary, its errors, and the entry points that take a
mesh reducing to the plain call on one device."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import invjax as ij


def test_use_cpu_cores_after_jax_started_says_how_to_fix_it():
    import jax

    import invjax as ij

    jax.devices()  # JAX has started
    current = len(jax.devices("cpu"))
    assert ij.use_cpu_cores(current) == current  # already so: nothing to do
    with pytest.raises(ValueError, match=r"already started .* call ij.use_cpu_cores\(3\) right after `import jax`"):
        ij.use_cpu_cores(4, batch_size=6) if current != 3 else ij.use_cpu_cores(3, batch_size=9)
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        ij.use_cpu_cores(0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ij.use_cpu_cores(2, batch_size=0)


def test_device_mesh_errors_say_what_to_pass():
    import jax

    import invjax as ij

    with pytest.raises(ValueError, match="devices is empty; pass a list of devices, or None"):
        ij.device_mesh([])
    with pytest.raises(ValueError, match=r"space must be a positive integer .* or a pair \(a, b\) of them .*"
                                         r"got space=0"):
        ij.device_mesh(jax.devices()[:1], space=0)
    with pytest.raises(ValueError, match=r"got space=\(2, 0\)"):
        ij.device_mesh(jax.devices()[:1], space=(2, 0))
    with pytest.raises(ValueError, match=r"space must divide the number of devices \(1\).*got space=\(1, 2\)"):
        ij.device_mesh(jax.devices()[:1], space=(1, 2))
    assert ij.device_mesh(jax.devices()[:1]).shape == {"batch": 1, "space": 1, "space2": 1}


def test_one_process_feeds_the_whole_batch_and_local_placement_is_the_plain_one():
    mesh = ij.device_mesh(jax.devices()[:1], space=(1, 1))
    assert ij.process_part(mesh) == (0, 1)
    x = np.arange(24.0, dtype=np.float32).reshape(2, 1, 3, 4)
    np.testing.assert_array_equal(ij.shard_batch(x, mesh, local=True), ij.shard_batch(x, mesh))
    assert ij.shard_batch(x, mesh).sharding.spec == jax.sharding.PartitionSpec("batch", None, "space", "space2")
    assert ij.shard_batch(None, mesh) is None


def test_sampling_with_a_mesh_is_sampling_without_one_and_a_bad_mesh_is_named():
    flow = ij.nets.Glow(1, 2, 1, 4, key=jr.key(0)).initialize(jr.normal(jr.key(1), (4, 1, 8, 8)))
    mesh = ij.device_mesh(jax.devices()[:1], space=(1, 1))
    plain = flow.sample(jr.key(2), (2, 1, 8, 8))
    np.testing.assert_allclose(flow.sample(jr.key(2), (2, 1, 8, 8), mesh=mesh), plain, rtol=1e-6)
    x, log_q = flow.sample_and_log_prob(jr.key(2), (2, 1, 8, 8), mesh=mesh)
    np.testing.assert_allclose(x, plain, rtol=1e-6)
    np.testing.assert_allclose(log_q, flow.log_prob(x), rtol=1e-4)
    with pytest.raises(ValueError, match=r"sample: mesh must be an ij.device_mesh"):
        flow.sample(jr.key(2), (2, 1, 8, 8), mesh=jax.sharding.Mesh(jax.devices()[:1], ("data",)))
    draws = ij.diagnostics.posterior_draws
    cflow = ij.nets.RealNVP(2, 2, 8, cond_channels=2, key=jr.key(0))
    y = jnp.ones((3, 2))
    np.testing.assert_allclose(draws(cflow, y, 4, (2,), key=jr.key(1), mesh=mesh),
                               draws(cflow, y, 4, (2,), key=jr.key(1)), rtol=1e-6)


def test_fit_and_fit_vi_take_space_as_a_pair():
    flow = ij.nets.RealNVP(2, 2, 8, key=jr.key(0))
    one = jax.devices()[:1]
    _, plain = ij.fit(flow, jr.normal(jr.key(1), (16, 2)), key=jr.key(2), steps=2, batch_size=8, progress=False,
                      devices=one)
    _, grid = ij.fit(flow, jr.normal(jr.key(1), (16, 2)), key=jr.key(2), steps=2, batch_size=8, progress=False,
                     devices=one, space=(1, 1))
    assert plain["train"] == grid["train"]
    target = lambda x: -0.5 * jnp.sum(x**2, axis=1)
    _, history = ij.fit_vi(flow, target, (2,), key=jr.key(3), steps=2, batch_size=4, progress=False, devices=one,
                           space=(1, 1))
    assert len(history["train"]) == 2
    with pytest.raises(ValueError, match=r"fit_vi: space must be a positive integer .* got space=\(1, 1, 1\)"):
        ij.fit_vi(flow, target, (2,), key=jr.key(3), steps=1, progress=False, space=(1, 1, 1))
