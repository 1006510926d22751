"""Bad-input checks, reconstruction health and resuming after SIGKILL (data-parallel fit: test_spatial.py)."""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import invjax as ij

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _flow():
    return ij.nets.RealNVP(4, depth=2, hidden=8, key=jr.key(0))


def _data(n=64):
    return jr.normal(jr.key(1), (n, 4)) * jnp.array([1.0, 2.0, 0.5, 1.0])


class _Leaky:
    """Duck-typed flow whose inverse is off by 1%."""

    def forward(self, x, cond=None):
        return 2 * x, jnp.zeros(x.shape[0])

    def inverse(self, z, cond=None):
        return 1.01 * z / 2


def test_reconstruction_error_is_small_and_measures_a_broken_inverse():
    assert float(ij.reconstruction_error(_flow(), _data(8))) < 1e-6
    np.testing.assert_allclose(float(ij.reconstruction_error(_Leaky(), _data(8))), 0.01, rtol=1e-5)


def test_fit_warns_when_the_reconstruction_passes_the_tolerance():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, history = ij.fit(_flow(), _data(), key=jr.key(2), steps=4, batch_size=16, progress=False,
                            check_reconstruction_every=2, reconstruction_tol=0.0)
    assert [s for s, _ in history["reconstruction"]] == [2, 4]
    assert any("reconstruction error" in str(w.message) and "at step 2" in str(w.message) for w in caught)


@pytest.mark.parametrize(
    ("batches", "match"),
    [
        ([jnp.ones((8, 4)), jnp.ones((8, 4)).at[3, 1].set(jnp.nan)], r"x at step 1 contains NaN or Inf"),
        ([jnp.ones((8, 4)), jnp.ones((8, 4)).at[0, 0].set(jnp.inf)], r"x at step 1 contains NaN or Inf"),
        ([jnp.ones((8, 4)), jnp.ones((8, 5))], r"at step 1, x has shape \(8, 5\).*\(B, 4\)"),
        ([jnp.ones((8, 4)), jnp.ones((8, 4), jnp.float16)], r"at step 1, x has .* dtype float16"),
        ([jnp.ones((8, 4)), jnp.ones((0, 4))], r"the batch at step 1 is empty"),
        ([(jnp.ones((8, 4)), jnp.ones((8, 2))), (jnp.ones((8, 4)), jnp.ones((6, 2)))],
         r"at step 1, x and cond have different batch sizes \[6, 8\]"),
    ],
)
def test_fit_rejects_bad_batches_naming_the_step(batches, match):
    conditional = isinstance(batches[0], tuple)
    flow = ij.nets.RealNVP(4, depth=1, hidden=4, cond_channels=2, key=jr.key(0)) if conditional else _flow()
    with pytest.raises(ValueError, match=match):
        ij.fit(flow, iter(batches + batches), key=jr.key(0), steps=3, progress=False)


def test_fit_rejects_a_batch_size_the_devices_cannot_split():
    import jax

    with pytest.raises(ValueError, match=r"multiple of the number of devices \(2\)"):
        ij.fit(_flow(), _data(), key=jr.key(0), steps=1, batch_size=15, devices=[jax.devices()[0]] * 2,
               progress=False)


@pytest.mark.slow
def test_resume_after_sigkill_loses_at_most_checkpoint_every_steps(tmp_path):
    # Training runs in subprocesses (float32, as users run it): one is killed mid-run,
    # resumed, and compared with an uninterrupted run of the same length.
    script = textwrap.dedent("""
        import sys, jax.random as jr
        import invjax as ij
        x = jr.normal(jr.key(1), (64, 4))
        flow = ij.nets.RealNVP(4, depth=2, hidden=8, key=jr.key(0))
        ij.fit(flow, x, key=jr.key(2), steps=int(sys.argv[1]), batch_size=16, progress=False,
               checkpoint=sys.argv[2], checkpoint_every=5)
    """)
    env = dict(os.environ, JAX_ENABLE_X64="0")
    run = lambda steps, path: [sys.executable, "-c", script, str(steps), str(path)]
    ckpt = tmp_path / "killed" / "run.eqx"
    ckpt.parent.mkdir()
    proc = subprocess.Popen(run(100000, ckpt), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and not (ckpt.exists() and ij.load_metadata(ckpt)["step"] >= 20):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    step = ij.load_metadata(ckpt)["step"]
    assert step >= 20 and step % 5 == 0  # at most checkpoint_every steps were lost
    # The checkpoint is whole (it loaded above); a kill during a write may leave that
    # write's temporary file, which the next save removes.
    assert {p.name for p in ckpt.parent.iterdir()} - {"run.eqx"} <= {p.name for p in ckpt.parent.glob(".run.eqx.*.tmp")}
    subprocess.run(run(step + 7, ckpt), check=True, capture_output=True, timeout=300, env=env)
    assert [p.name for p in ckpt.parent.iterdir()] == ["run.eqx"]
    resumed = ij.load_metadata(ckpt)
    assert resumed["step"] == step + 7 and len(resumed["train"]) == step + 7
    reference = tmp_path / "reference.eqx"
    subprocess.run(run(step + 7, reference), check=True, capture_output=True, timeout=300, env=env)
    np.testing.assert_allclose(resumed["train"], ij.load_metadata(reference)["train"], rtol=1e-5)
