"""Many devices: one sample split over 4 host CPU devices (spatial, or domain, parallelism),
and the batch split over them (data parallelism, the ``batch_glow`` case and ``fit`` on 4x1).

Each case runs in a fresh process (``tests/spatial_run.py``): the number of host devices is
fixed when JAX starts. References: the same step on one device (losses and gradients to
float32 round-off) and the one-device program's compiled memory.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import spatial_run

pytestmark = pytest.mark.slow  # subprocesses with 4 host devices: the full suite only

HERE = pathlib.Path(__file__).resolve().parent


def _run(name):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="0")  # 4 devices: ij.use_cpu_cores(4)
    out = subprocess.run([sys.executable, str(HERE / "spatial_run.py"), name], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])[name]


@pytest.mark.parametrize("name", list(spatial_run.CASES))
def test_a_step_split_over_space_equals_one_device_and_needs_a_quarter_of_the_memory(name):
    result = _run(name)
    one = result["1"]
    # One axis (slabs: space=4) and two (tiles, or pencils of a volume: space=(2, 2)); the
    # batch case splits the batch alone.
    splits = {"4": "('batch', None, 'space', 'space2')"} if name.startswith("batch_") else \
        {"4": "('batch', None, 'space', 'space2')", "2x2": "('batch', None, 'space', 'space2')"}
    for label, spec in splits.items():
        split = result[label]
        assert spec in result[f"x_sharding_{label}"]
        np.testing.assert_allclose(split["loss"], one["loss"], rtol=1e-5)
        scale = max(np.max(np.abs(g)) for g in one["grads"])
        for g1, g4 in zip(one["grads"], split["grads"], strict=True):
            # float32 round-off of sums taken in another order, relative to the largest
            # gradient (in float64 the two agree to 3e-13: run spatial_run.py with
            # JAX_ENABLE_X64=1); a missing halo or a wrong split is off by O(1).
            np.testing.assert_allclose(g4, g1, rtol=1e-3, atol=1e-3 * scale)
        # No activation is gathered whole: an all-gather may move a parameter (none does
        # today) or a halo of at most one row of the input, never a feature map.
        limit = max(result["largest_parameter"], result["row"])
        assert all(size <= limit for size in split["gathers"]), (label, split["gathers"], limit)
        assert split["temp"] <= spatial_run.MEMORY_LIMIT.get(name, 0.3) * one["temp"], (label, split["temp"],
                                                                                         one["temp"])


def test_sampling_posterior_draws_and_vi_split_over_space_equal_one_device():
    result = _run("sampling")
    one = result["1"]
    for label in ("4", "2x2"):
        split = result[label]
        # The same random numbers whatever the layout: equal samples, not just close.
        np.testing.assert_allclose(split["sample"], one["sample"], rtol=1e-5, atol=1e-5)
        assert "'space'" in split["sample_spec"] and ("'space2'" in split["sample_spec"]) == (label == "2x2")
        assert split["sample_gathers"] == [] and split["posterior_gathers"] == []
        assert split["sample_temp"] <= 0.3 * one["sample_temp"], (split["sample_temp"], one["sample_temp"])
        np.testing.assert_allclose(split["posterior"], one["posterior"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(split["vi"], one["vi"], rtol=1e-5)


def test_the_cpu_kernel_gradient_loop_steps_aside_where_space_is_split():
    result = _run("pencils")
    for label in ("4", "2x2"):
        assert result[label]["gathers"] == [], result[label]["gathers"]
        assert result[label]["error"] < 1e-5
        assert result[label]["gathers_without_mesh"], "the counter-check: the loop runs and gathers its slices"


def test_fit_splits_the_batch_and_space_with_one_argument():
    result = _run("fit")
    runs = result["runs"]
    for mesh in ("4x1", "2x2", "1x4", "1x2x2"):
        # The first loss to round-off. Later ones to 3e-3: Adam divides by sqrt(v), which
        # turns round-off in near-zero gradients (sums taken in another order, here and in
        # ActNorm's initialisation on the split first batch) into visible update differences.
        np.testing.assert_allclose(runs[mesh][0], runs["1"][0], rtol=1e-5)
        np.testing.assert_allclose(runs[mesh], runs["1"], rtol=3e-3)
    # A simulator's pairs are split the same way (and differ from the arrays' pairs).
    np.testing.assert_allclose(runs["simulator_2x2"][0], runs["simulator_1"][0], rtol=1e-5)
    np.testing.assert_allclose(runs["simulator_2x2"], runs["simulator_1"], rtol=3e-3)
    assert not np.allclose(runs["simulator_1"], runs["1"])
    space_error, batch_error, size_error = result["errors"]
    assert "space must divide the number of devices (4)" in space_error and "got space=3" in space_error
    assert "batch_size (5) must be a multiple of the number of devices (2 = 4 / space)" in batch_error
    assert "first spatial size must be a multiple of 4 (space=4)" in size_error and "(6, 1, 6, 8)" in size_error
